//! The global physical memory manager: a [`FrameAllocator`] over all usable
//! RAM at or above 0x400000, behind an interrupt-safe lock.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use super::frame_cache::{self, Given, Near};
use super::phys_to_virt;
use crate::boot::BootInfo;
use crate::sync::IrqMutex;
use crate::units::HumanSize;
use mm::fail::FailPlan;
use mm::layout::{HEAP_MAX_SIZE, PAGE_SIZE, PMM_START};
use mm::pmm::{
    find_free_space, usable_ranges, FrameAllocator, InitError, Mobility, NodeStats, PhysRange,
    ReservationKind, ReservationList, ReservationsFull, Stats, MAX_RANGES,
};
use mm::MmError;

/// The kernel refuses to run with fewer free bytes than this once every
/// reservation (kernel image, boot data, the PMM's own bitmap) is taken
/// out: the heap may grow to its 16 MiB cap, and 4 MiB more cover its side
/// tables, the page tables of everything mapped later, and the 2 MiB runs
/// the in-kernel suite takes; 1 MiB more holds the kernel half's PDPTs
/// every address space shares (`vmm::share_kernel_half`) and the frame
/// metadata of a machine this small. So a machine the kernel accepts runs
/// the whole suite (the `min-memory-*` boots check exactly this).
pub const MIN_FREE_BYTES: u64 = HEAP_MAX_SIZE + (5 << 20);

static PMM: IrqMutex<Option<FrameAllocator<'static>>> = IrqMutex::new(None);

/// Frees `free_page`/`free_contiguous` refused, for the test runner's
/// error accounting.
static REFUSED_FREES: AtomicU64 = AtomicU64::new(0);

/// How many frees the PMM has refused since boot.
pub fn refused_frees() -> u64 {
    REFUSED_FREES.load(Ordering::Relaxed)
}

/// Why the PMM could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmmInitError {
    /// Fewer than [`MIN_FREE_BYTES`] free once reservations are out.
    NotEnoughMemory {
        /// Usable bytes found at or above 0x400000 (in the `pmm.max` window).
        usable: u64,
        /// Of those, the bytes free after reservations (`None`: too few
        /// usable bytes to look further).
        free: Option<u64>,
    },
    /// The memory map needs more than `MAX_RANGES` usable ranges.
    TooFragmented,
    /// No room for the bitmap outside the reservations.
    NoRoomForBitmap,
    /// More reservations than the allocator tracks: this one did not fit.
    TooManyReservations(ReservationsFull),
    /// The allocator refused what it was given.
    Allocator(InitError),
}

impl fmt::Display for PmmInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmmInitError::NotEnoughMemory { usable, free } => {
                write!(
                    f,
                    "not enough memory: {} usable at or above 0x400000",
                    HumanSize(*usable)
                )?;
                if let Some(free) = free {
                    write!(f, ", {} of it free after reservations", HumanSize(*free))?;
                }
                write!(
                    f,
                    "; the kernel needs {} free (heap up to {}, plus page tables)",
                    HumanSize(MIN_FREE_BYTES),
                    HumanSize(HEAP_MAX_SIZE)
                )
            }
            PmmInitError::TooFragmented => write!(
                f,
                "memory map too fragmented: more than {MAX_RANGES} usable ranges"
            ),
            PmmInitError::NoRoomForBitmap => f.write_str("no free space for the PMM bitmap"),
            PmmInitError::TooManyReservations(full) => full.fmt(f),
            PmmInitError::Allocator(error) => {
                write!(f, "frame allocator refused its set-up: {error:?}")
            }
        }
    }
}

/// Builds the PMM from the memory map. `limit` is `pmm.max`: manage at most
/// that many bytes. Needs the direct map (the bitmap is reached through it).
pub fn init(
    info: &BootInfo<'_>,
    reservations: &ReservationList,
    limit: Option<u64>,
) -> Result<Stats, PmmInitError> {
    let entries = super::map_entries(info, super::is_available);
    let window = PhysRange {
        start: PMM_START,
        end: u64::MAX,
    };
    let mut usable =
        usable_ranges::<MAX_RANGES>(entries, window).map_err(|_| PmmInitError::TooFragmented)?;
    if let Some(limit) = limit {
        usable.keep_lowest(limit - limit % PAGE_SIZE);
    }
    let usable_bytes = usable.total();
    let not_enough = |free| PmmInitError::NotEnoughMemory {
        usable: usable_bytes,
        free,
    };
    if usable.total() < MIN_FREE_BYTES {
        return Err(not_enough(None));
    }

    let mut list = reservations.clone();
    let words = FrameAllocator::storage_words_for(&usable);
    let bitmap = find_free_space(&usable, list.as_slice(), words as u64 * 8)
        .ok_or(PmmInitError::NoRoomForBitmap)?;
    list.push(bitmap, ReservationKind::PmmBitmap)
        .map_err(PmmInitError::TooManyReservations)?;

    let pointer = phys_to_virt(PhysAddr::new(bitmap.start)).as_mut_ptr::<u64>();
    // SAFETY: `bitmap` is usable RAM (inside `usable`), overlaps no other
    // reservation, is mapped through the direct map, and is reserved in the
    // allocator built here, so nothing else will ever be given these bytes.
    let storage = unsafe { core::slice::from_raw_parts_mut(pointer, words) };
    let allocator =
        FrameAllocator::new(usable, list.as_slice(), storage).map_err(PmmInitError::Allocator)?;
    let stats = allocator.stats();
    if stats.free * PAGE_SIZE < MIN_FREE_BYTES {
        return Err(not_enough(Some(stats.free * PAGE_SIZE)));
    }
    *PMM.lock() = Some(allocator);
    Ok(stats)
}

/// Runs `f` on the allocator, under its lock. `None` before `init`.
pub fn with<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> Option<R> {
    PMM.lock().as_mut().map(f)
}

/// The NUMA node of the calling CPU (0 before SMP and NUMA set-up).
pub fn local_node() -> usize {
    crate::arch::x86_64::smp::current().map_or(0, |cpu| cpu.node())
}

/// Allocates a frame (the design's `pmm_alloc_page`), unmovable: from
/// this CPU's frame cache, refilled from the PMM (the CPU's node first);
/// when the PMM is empty, after collecting every other CPU's cache.
pub fn alloc_page() -> Option<PhysFrame<Size4KiB>> {
    let node = local_node();
    let cached = frame_cache::with_cache(|cache, states| {
        frame_cache::take(cache, states).or_else(|| {
            with(|pmm| {
                let mut source = Near {
                    allocator: pmm,
                    node,
                };
                frame_cache::refill(cache, states, &mut source)
            });
            frame_cache::take(cache, states)
        })
    });
    match cached {
        Some(Some(frame)) => return Some(frame_of(frame)),
        // Caches are on and empty everywhere near: collect the others.
        Some(None) => {
            frame_cache::collect_others(|frame| {
                let returned = with(|pmm| pmm.free_page(PhysAddr::new(frame)));
                debug_assert_eq!(returned, Some(Ok(())));
            });
        }
        None => {}
    }
    alloc_order(0, Mobility::Unmovable).ok()
}

fn frame_of(address: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(address))
}

/// Allocates a block of 2^`order` frames, aligned to its size, from the
/// calling CPU's node first, then the nearest others.
pub fn alloc_order(order: u32, mobility: Mobility) -> Result<PhysFrame<Size4KiB>, MmError> {
    let node = local_node();
    with(|pmm| pmm.alloc_near(node, order, mobility)).unwrap_or(Err(MmError::OutOfFrames))
}

/// Allocates a block of 2^`order` frames on `node` only.
pub fn alloc_on(
    node: usize,
    order: u32,
    mobility: Mobility,
) -> Result<PhysFrame<Size4KiB>, MmError> {
    with(|pmm| pmm.alloc_on(node, order, mobility)).unwrap_or(Err(MmError::OutOfFrames))
}

/// Allocates a block of 2^`order` frames from `node` first, then the
/// nearest others.
pub fn alloc_near(
    node: usize,
    order: u32,
    mobility: Mobility,
) -> Result<PhysFrame<Size4KiB>, MmError> {
    with(|pmm| pmm.alloc_near(node, order, mobility)).unwrap_or(Err(MmError::OutOfFrames))
}

/// Returns a block from `alloc_order`/`alloc_on`. Misuse (wrong order,
/// partly free, ...) is logged and returned as an error; nothing changes.
pub fn free_order(address: PhysAddr, order: u32) -> Result<(), MmError> {
    let result = with(|pmm| pmm.free_order(address, order)).unwrap_or(Err(MmError::OutOfRange));
    if let Err(error) = result {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "pmm: free_order({:#x}, order {order}) refused: {error}",
            address.as_u64()
        );
    }
    result
}

/// Nodes the PMM keeps apart (1 without a usable SRAT).
pub fn nodes() -> usize {
    with(|pmm| pmm.nodes()).unwrap_or(1)
}

/// Counters of one node.
pub fn node_stats(node: usize) -> Option<NodeStats> {
    with(|pmm| (node < pmm.nodes()).then(|| pmm.node_stats(node))).flatten()
}

/// The node a managed physical address belongs to.
pub fn node_of(address: PhysAddr) -> Option<usize> {
    with(|pmm| pmm.node_of(address.as_u64())).flatten()
}

/// Allocates a frame filled with zeros.
pub fn alloc_zeroed() -> Option<PhysFrame<Size4KiB>> {
    let frame = alloc_page()?;
    // SAFETY: the frame is RAM, mapped by the direct map, and was just
    // handed to us exclusively.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(),
            0,
            PAGE_SIZE as usize,
        )
    };
    Some(frame)
}

/// Returns a frame (the design's `pmm_free_page`): into this CPU's frame
/// cache if it came from one (a batch goes back to the PMM above the
/// high watermark), else to the PMM. Misuse is logged and returned as an
/// error; nothing changes.
pub fn free_page(address: PhysAddr) -> Result<(), MmError> {
    let node = local_node();
    let cached = frame_cache::with_cache(|cache, states| {
        match frame_cache::give(cache, states, address.as_u64())? {
            Given::Cached(false) => Ok(true),
            Given::Cached(true) => {
                with(|pmm| {
                    let mut source = Near {
                        allocator: pmm,
                        node,
                    };
                    let batch = cache.batch();
                    frame_cache::drain(cache, states, &mut source, batch);
                });
                Ok(true)
            }
            Given::ToAllocator => Ok(false),
        }
    });
    let result = match cached {
        Some(Ok(true)) => return Ok(()),
        Some(Err(error)) => Err(error),
        Some(Ok(false)) | None => {
            let freed = with(|pmm| pmm.free_page(address)).unwrap_or(Err(MmError::OutOfRange));
            if freed.is_ok() {
                // Freed around the caches (bypassed while failures are
                // injected): no stale "handed out alone" state stays.
                frame_cache::forget(address.as_u64());
            }
            freed
        }
    };
    if let Err(error) = result {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
        log::warn!("pmm: free_page({:#x}) refused: {error}", address.as_u64());
    }
    result
}

/// Allocates `count` contiguous frames aligned to `align` frames.
pub fn alloc_contiguous(count: usize, align: usize) -> Result<PhysFrame<Size4KiB>, MmError> {
    with(|pmm| pmm.alloc_contiguous(count, align)).unwrap_or(Err(MmError::OutOfFrames))
}

/// Returns `count` contiguous frames.
pub fn free_contiguous(first: PhysAddr, count: usize) -> Result<(), MmError> {
    let result = with(|pmm| pmm.free_contiguous(first, count)).unwrap_or(Err(MmError::OutOfRange));
    if let Err(error) = result {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "pmm: free_contiguous({:#x}, {count}) refused: {error}",
            first.as_u64()
        );
    }
    result
}

/// Arms the PMM's failure-injection point (see `mm::fail`): from now on
/// the frame allocations `plan` names fail as if memory were exhausted.
/// Page tables, heap growth and `map_fresh` all take their frames here.
pub fn arm_failures(plan: FailPlan) {
    // Every allocation must meet the failure point: none from a cache.
    frame_cache::bypass(plan != FailPlan::Off);
    with(|pmm| pmm.fail_point().arm(plan));
}

/// Turns the per-CPU frame caches on: their state bytes (one per frame
/// the PMM spans) come from the PMM itself, zeroed, and stay allocated.
pub fn enable_frame_caches() -> Result<(), MmError> {
    let (base, frames) = with(|pmm| {
        let span = pmm.span();
        (span.start, span.pages() as usize)
    })
    .ok_or(MmError::OutOfRange)?;
    let pages = frames.div_ceil(PAGE_SIZE as usize);
    let run = alloc_contiguous(pages, 1)?;
    let pointer = phys_to_virt(run.start_address()).as_mut_ptr::<u8>();
    // SAFETY: the run was just allocated, is mapped by the direct map and
    // is never freed; its bytes become the state array (zeroed first:
    // AtomicU8 has u8's layout).
    let states = unsafe {
        core::ptr::write_bytes(pointer, 0, pages * PAGE_SIZE as usize);
        core::slice::from_raw_parts(pointer.cast::<AtomicU8>(), frames)
    };
    // Page-aligned, so on cache lines; the span's base is 1 GiB-aligned.
    frame_cache::enable(states, base)
}

/// The failure-injection point's (plan, calls counted, failures injected).
pub fn failures() -> (FailPlan, u64, u64) {
    with(|pmm| {
        let point = pmm.fail_point();
        (point.plan(), point.calls(), point.injected())
    })
    .unwrap_or((FailPlan::Off, 0, 0))
}

/// Calls `visit` with every run of free frames, in address order, read
/// from the allocator's bitmap under its lock (nothing changes); returns
/// how many frames are free, or `None` before `init`. `visit` runs under
/// the lock and must not allocate frames (nor heap memory, which may grow
/// through the PMM).
pub fn free_runs(mut visit: impl FnMut(PhysRange)) -> Option<u64> {
    // This CPU's cached frames are free: show them so. (Other CPUs'
    // caches, at most 64 frames each, look allocated.)
    frame_cache::drain_local();
    with(|pmm| {
        pmm.free_runs().for_each(&mut visit);
        pmm.stats().free
    })
}

/// The PMM's own counters, in which frames sitting in per-CPU caches are
/// used (handed out to the caches); what its bitmap and node counters
/// add up to.
pub fn allocator_stats() -> Stats {
    with(|pmm| pmm.stats()).unwrap_or_default()
}

/// Counters (zero before `init`). Frames in the per-CPU caches are free
/// (the PMM counts them used: it handed them out to the caches).
pub fn stats() -> Stats {
    let cached = frame_cache::cached_frames();
    with(|pmm| {
        let mut stats = pmm.stats();
        // Racing a drain, the count may be a batch ahead: never below 0.
        let cached = cached.min(stats.used);
        stats.free += cached;
        stats.used -= cached;
        stats
    })
    .unwrap_or_default()
}
