//! The kernel heap: `kmalloc`/`kfree` and Rust's `alloc` (Box, Vec, ...)
//! on the TLSF allocator, at virtual 0x10000000, 1 MiB mapped at start and
//! grown page by page (frames from the PMM, mapped NX through the VMM) up
//! to 16 MiB; pages at its end and inside large free blocks go back to
//! the PMM after frees.
//!
//! Small objects (up to 1.5 KiB with debug overhead, alignment up to 16) go through per-CPU
//! magazines (`mm::heap::magazine`, where the logic is, host-tested with
//! threads): each CPU's record holds its magazines, used with interrupts
//! off and no lock; the heap lock is taken only to refill or flush a
//! batch, for everything else, and to drain every CPU's magazines before
//! the heap grows or fails. One state byte per 16 bytes of heap (1 MiB
//! for 16 MiB, from the PMM) checks frees without the lock; if those
//! frames cannot be had, or the machine is near the kernel's minimum
//! memory (fewer free frames than twice the heap's cap plus the states),
//! every request takes the lock as before.
//!
//! Lock order: a CPU's magazine flag, then the heap lock; growth then takes
//! the VMM and PMM locks. Neither of those ever allocates from the heap, so
//! growth cannot deadlock; a CPU holding the heap lock only tries other
//! CPUs' magazine flags, never waits for one.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use spin::Once;
use x86_64::instructions::interrupts;
use x86_64::{PhysAddr, VirtAddr};

use super::{phys_to_virt, pmm, vmm};
use crate::arch::x86_64::smp;
use crate::sync::IrqMutex;
use crate::units::HumanSize;
use mm::heap::magazine::{self, CpuMagazines, Machine, SlotStates};
use mm::heap::{DebugChecks, Grow, Heap, HeapStats};
use mm::layout::{HEAP_INITIAL_SIZE, HEAP_MAX_SIZE, HEAP_START, PAGE_SIZE};
use mm::paging::{NX, WRITABLE};
use mm::MmError;

/// Maps fresh frames after the heap's end.
pub struct KernelGrow;

impl Grow for KernelGrow {
    fn grow(&mut self, end: usize, bytes: usize) -> bool {
        let mapped = map_for_heap(end, bytes);
        if let Err(error) = mapped {
            log::warn!("heap: cannot grow to {:#x}: {error}", end + bytes);
        }
        mapped.is_ok()
    }

    fn can_ungrow(&self) -> bool {
        true
    }

    fn short_of_memory(&self, bytes: usize) -> bool {
        // An injected failure leaves plenty free.
        super::reclaim::frames_short((bytes as u64).div_ceil(PAGE_SIZE))
    }

    fn ungrow(&mut self, start: usize, bytes: usize) {
        // The heap took these pages out of its range again, untouched
        // since the growth mapped them.
        unmap_given_back(start, bytes + start);
    }

    fn remap(&mut self, start: usize, bytes: usize) -> bool {
        let mapped = map_for_heap(start, bytes);
        if let Err(error) = mapped {
            // Like a failed growth, but the request that needed it fails
            // (and says so) with the heap unchanged: no warning of its own.
            log::info!(
                "heap: cannot map given-back pages {:#x}..{:#x} again: {error}",
                start,
                start + bytes
            );
        }
        mapped.is_ok()
    }
}

/// Maps `[start, start + bytes)` of the heap's window to fresh frames;
/// the heap keeps them until it hands pages back (`give_back_tail`,
/// `give_back_inside`).
fn map_for_heap(start: usize, bytes: usize) -> Result<(), MmError> {
    vmm::map_fresh(VirtAddr::new(start as u64), bytes as u64, WRITABLE | NX).map(|mapping| {
        mapping.keep();
    })
}

static HEAP: IrqMutex<Option<Heap<'static, KernelGrow>>> = IrqMutex::new(None);

/// Maps the first 1 MiB and builds the heap. Needs the PMM and the VMM.
pub fn init() -> Result<HeapStats, MmError> {
    let words = Heap::<KernelGrow>::bitmap_words(HEAP_MAX_SIZE as usize);
    let frames = (words * 8).div_ceil(PAGE_SIZE as usize);
    let bitmaps = pmm::alloc_contiguous(frames, 1)?;
    let pointer = phys_to_virt(bitmaps.start_address()).as_mut_ptr::<u64>();
    // SAFETY: the frames were just allocated for the heap's bitmaps alone,
    // are RAM reachable through the direct map, and are never freed.
    let bitmaps = unsafe { core::slice::from_raw_parts_mut(pointer, words) };
    if !KernelGrow.grow(HEAP_START as usize, HEAP_INITIAL_SIZE as usize) {
        return Err(MmError::OutOfFrames);
    }
    // The heap's window is no Rust allocation: its pointer comes from the
    // address (exposed provenance, as for any memory the kernel maps).
    let memory =
        core::ptr::NonNull::new(ptr::with_exposed_provenance_mut::<u8>(HEAP_START as usize))
            .ok_or(MmError::InvalidArgument)?;
    // SAFETY: [HEAP_START, +1 MiB) was just mapped writable for the heap
    // alone; KernelGrow maps every further range before reporting success;
    // the heap's virtual range is used by nothing else.
    let heap = unsafe {
        Heap::new(
            memory,
            HEAP_INITIAL_SIZE as usize,
            HEAP_MAX_SIZE as usize,
            KernelGrow,
            bitmaps,
            DebugChecks::for_this_build(),
        )
    }?;
    let stats = heap.stats();
    *HEAP.lock() = Some(heap);
    enable_magazines();
    Ok(stats)
}

/// The heap's state bytes, once magazines are on.
static STATES: Once<SlotStates<'static>> = Once::new();

/// Allocates the state bytes (one per 16 bytes of the heap's maximum
/// size, from the PMM, never freed) and turns the magazines on; without
/// the frames every request keeps going through the lock.
fn enable_magazines() {
    let bytes = magazine::state_bytes(HEAP_MAX_SIZE as usize);
    let frames = bytes.div_ceil(PAGE_SIZE as usize);
    // The PMM's minimum (the heap's 16 MiB plus page tables) leaves no
    // room for them: near it, the 1 MiB would keep the heap from its
    // cap. They go on only if the heap could still grow to its cap twice
    // over once they have their frames.
    let free = pmm::stats().free;
    let heap_frames = HEAP_MAX_SIZE / PAGE_SIZE;
    if free < 2 * heap_frames + frames as u64 {
        log::info!(
            "heap: magazines off: {free} free frames, fewer than twice the heap's {heap_frames} and their {frames}"
        );
        return;
    }
    let Ok(first) = pmm::alloc_contiguous(frames, 1) else {
        log::info!("heap: magazines off: no {frames} contiguous frames for their state bytes");
        return;
    };
    let pointer = phys_to_virt(first.start_address()).as_mut_ptr::<AtomicU8>();
    // SAFETY: the frames were just allocated for the state bytes alone,
    // are RAM reachable through the direct map, and are never freed;
    // AtomicU8 has the size and alignment of a byte and `SlotStates::new`
    // initialises every one.
    let states = unsafe { core::slice::from_raw_parts(pointer, bytes) };
    STATES.call_once(|| SlotStates::new(states, HEAP_START as usize));
}

fn with<R>(f: impl FnOnce(&mut Heap<'static, KernelGrow>) -> R) -> Option<R> {
    HEAP.lock().as_mut().map(f)
}

/// The heap lock and every CPU's magazines, as the magazines see them
/// from CPU `me`.
struct Cpus {
    me: usize,
}

/// Times the magazine front end took the heap lock (refills, flushes,
/// requests it does not serve, frees it does not take).
static MAGAZINE_LOCKS: AtomicU64 = AtomicU64::new(0);

/// How often the magazine front end took the heap lock since boot.
pub fn magazine_locks() -> u64 {
    MAGAZINE_LOCKS.load(Ordering::Relaxed)
}

impl Machine<'static, KernelGrow> for Cpus {
    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<'static, KernelGrow>) -> R) -> R {
        MAGAZINE_LOCKS.fetch_add(1, Ordering::Relaxed);
        let mut heap = HEAP.lock();
        // The magazines are on only after `init` put the heap in.
        let heap = heap.as_mut().expect("heap magazines on before the heap");
        f(heap)
    }

    fn for_each_other(&self, mut f: impl FnMut(&CpuMagazines)) {
        (0..smp::MAX_CPUS)
            .filter(|&index| index != self.me)
            .filter_map(smp::cpu)
            .for_each(|cpu| f(&cpu.heap));
    }

    fn after_free(&self, heap: &mut Heap<'static, KernelGrow>) {
        give_back(heap);
    }
}

/// Runs `f` with this CPU's magazines, the state bytes and the machine,
/// interrupts off; `None` before magazines are on or without a per-CPU
/// record.
#[inline]
fn with_magazines<R>(f: impl FnOnce(&CpuMagazines, &SlotStates<'static>, &Cpus) -> R) -> Option<R> {
    let states = STATES.get()?;
    interrupts::without_interrupts(|| {
        let cpu = smp::current()?;
        // Only this CPU writes its count, with interrupts off: no atomic
        // read-modify-write on the fast path.
        let ops = cpu.magazine_ops.load(Ordering::Relaxed);
        cpu.magazine_ops.store(ops + 1, Ordering::Relaxed);
        Some(f(&cpu.heap, states, &Cpus { me: cpu.index }))
    })
}

/// Heap requests and frees the magazines took since boot (every CPU's),
/// and how many of them took the heap lock (refills, flushes, requests
/// they do not serve): the hit rate is the share that did not.
pub fn magazine_stats() -> (u64, u64) {
    let ops = (0..smp::MAX_CPUS)
        .filter_map(smp::cpu)
        .map(|cpu| cpu.magazine_ops.load(Ordering::Relaxed))
        .sum();
    (ops, magazine_locks())
}

/// Every CPU's magazines.
fn all_magazines() -> impl Iterator<Item = &'static CpuMagazines> {
    (0..smp::MAX_CPUS).filter_map(smp::cpu).map(|cpu| &cpu.heap)
}

/// Allocates `size` bytes, 16-byte aligned; null on failure (the design's
/// `kmalloc`).
pub fn kmalloc(size: usize) -> *mut u8 {
    match Layout::from_size_align(size, 16) {
        Ok(layout) => alloc(layout).unwrap_or(ptr::null_mut()),
        // Counted as the heap counts it.
        Err(_) => match with(|heap| heap.kmalloc(size)) {
            Some(Ok(pointer)) => pointer.as_ptr(),
            _ => ptr::null_mut(),
        },
    }
}

/// Frees `kfree` refused (double, foreign or interior pointers), for the
/// test runner's error accounting.
static REFUSED_FREES: AtomicU64 = AtomicU64::new(0);

/// How many frees `kfree` has refused since boot.
pub fn refused_frees() -> u64 {
    REFUSED_FREES.load(Ordering::Relaxed)
}

/// Frees what `kmalloc` returned (the design's `kfree`). Null is a no-op.
/// A pointer the heap never returned, or already freed, is refused: the
/// error says why, nothing changes, and the caller reports it (the shell
/// prints it; [`kfree_or_log`] logs it for callers that cannot). A red
/// zone found overwritten is logged here: no caller could tell.
pub fn kfree(pointer: *mut u8) -> Result<(), MmError> {
    if pointer.is_null() {
        return Ok(());
    }
    let (result, overflowed) = if let Some(result) =
        with_magazines(|cpu, states, cpus| magazine::free(cpu, states, cpus, pointer))
    {
        (result.map(|_| ()), result.unwrap_or(false))
    } else {
        free_through_lock(pointer)
    };
    if result.is_err() {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
    }
    if overflowed {
        report_overflow(pointer);
    }
    result
}

/// `kfree` without magazines: under the heap lock.
fn free_through_lock(pointer: *mut u8) -> (Result<(), MmError>, bool) {
    with_red_zone_watch(|heap| {
        // A slot a magazine handed out (if magazines are on) becomes the
        // heap's, or is refused if it sits in a magazine.
        if let Some(states) = STATES.get() {
            magazine::claim_for_heap(states, pointer)?;
        }
        let result = heap.free(pointer);
        if result.is_ok() {
            give_back(heap);
        }
        result
    })
    .unwrap_or((Err(MmError::InvalidFree), false))
}

/// Free bytes the heap keeps at its end when it gives pages back.
const KEEP_FREE: usize = 256 * 1024;
/// Pages given back to the PMM since boot.
static PAGES_RELEASED: AtomicU64 = AtomicU64::new(0);

/// Pages the heap has given back to the PMM since boot.
pub fn pages_released() -> u64 {
    PAGES_RELEASED.load(Ordering::Relaxed)
}

/// After frees: the pages at the heap's end, then those inside large free
/// blocks, that may go back to the PMM ([`give_back_tail`],
/// [`give_back_inside`]).
fn give_back(heap: &mut Heap<'static, KernelGrow>) {
    give_back_tail(heap);
    give_back_inside(heap);
}

/// After a free: once the heap's end has [`KEEP_FREE`] + 256 KiB free,
/// unmaps the whole pages past the first `KEEP_FREE` (never below the
/// initial 1 MiB) and gives their frames back to the PMM, with the TLB
/// shootdown. Runs under the heap lock (lock order: heap, then VMM, then
/// PMM); O(1) when there is nothing to give back.
fn give_back_tail(heap: &mut Heap<'static, KernelGrow>) {
    let Some((start, end)) = heap.release_tail(KEEP_FREE, HEAP_INITIAL_SIZE as usize) else {
        return;
    };
    // Release_tail took them out of the heap: no block lies there.
    unmap_given_back(start, end);
}

/// Free bytes the heap keeps mapped when it gives back pages inside it.
pub const KEEP_MAPPED_FREE: usize = 1024 * 1024;
/// Frees of blocks at least this large give back pages inside the heap.
pub const LARGE_FREE: usize = 1024 * 1024;

/// After a free of a block of at least [`LARGE_FREE`] bytes: the whole
/// pages inside the free block it made (all but its first and last page)
/// are unmapped and their frames given back to the PMM, with the TLB
/// shootdown, as long as [`KEEP_MAPPED_FREE`] free bytes stay mapped;
/// the heap maps fresh frames there again (`KernelGrow::remap`) before
/// it reuses them. Runs under the heap lock (lock order: heap, then VMM,
/// then PMM); O(1) when the free made no such block.
fn give_back_inside(heap: &mut Heap<'static, KernelGrow>) {
    while let Some((start, end)) = heap.release_inside(LARGE_FREE, KEEP_MAPPED_FREE) {
        unmap_given_back(start, end);
    }
}

/// Unmaps `[start, end)`, which the heap has just given back, and hands
/// its frames to the PMM.
fn unmap_given_back(start: usize, end: usize) {
    let len = (end - start) as u64;
    // SAFETY: the heap mapped these pages with map_fresh and kept them
    // (KernelGrow), and has just given them back: it touches them no more
    // until it remaps them, and nothing else refers to them.
    drop(unsafe { vmm::Mapping::reclaim_fresh(VirtAddr::new(start as u64), len) });
    PAGES_RELEASED.fetch_add(len / PAGE_SIZE, Ordering::Relaxed);
}

/// [`kfree`] for callers that get no error back (the C interface, Rust's
/// `dealloc`): a refused free is logged with its address.
pub fn kfree_or_log(pointer: *mut u8) {
    if let Err(error) = kfree(pointer) {
        log::error!("heap: kfree({pointer:p}) refused: {error}");
    }
}

/// Runs `f` on the heap (`None` before `init`) and tells whether it found
/// a red zone overwritten (debug builds check them in free and realloc).
fn with_red_zone_watch<R>(
    f: impl FnOnce(&mut Heap<'static, KernelGrow>) -> R,
) -> Option<(R, bool)> {
    with(|heap| {
        let before = heap.stats().red_zone_violations;
        let result = f(heap);
        (result, heap.stats().red_zone_violations != before)
    })
}

/// Logs a buffer overflow found in a block's red zone (debug builds).
fn report_overflow(pointer: *mut u8) {
    log::error!("heap: block {pointer:p} was written past its end (red zone overwritten)");
}

/// Allocates for a `Layout` (alignment up to 4096).
pub fn alloc(layout: Layout) -> Result<*mut u8, MmError> {
    with_magazines(|cpu, states, cpus| magazine::alloc(cpu, states, cpus, layout))
        .unwrap_or_else(|| with(|heap| heap.alloc(layout)).unwrap_or(Err(MmError::HeapExhausted)))
        .map(|pointer| pointer.as_ptr())
}

/// Counters (zero before `init`); slots in magazines count as free. Exact
/// when no other CPU is allocating or freeing meanwhile.
pub fn stats() -> HeapStats {
    with(|heap| magazine::combined_stats(heap.stats(), all_magazines())).unwrap_or_default()
}

/// Gives every slot in every CPU's magazines back to the heap (a CPU in
/// the middle of its own heap operation keeps its own), then the heap's
/// own caches (`Heap::trim`), and the free pages at its end back to the
/// PMM: for callers that need the heap's free space exact or its memory
/// back (after filling it with small objects, a spare slab page or a
/// cached slot near the end would keep it from shrinking). Returns how
/// many slots stayed in magazines.
pub fn drain_magazines() -> usize {
    with(|heap| {
        if let Some(states) = STATES.get() {
            for cpu in all_magazines() {
                magazine::drain(heap, cpu, states);
            }
        }
        heap.trim();
        give_back(heap);
    });
    cached_slots()
}

/// Whether small objects go through the magazines (off: no frames for
/// their state bytes).
pub fn magazines_on() -> bool {
    STATES.get().is_some()
}

/// Slots in every CPU's magazines now (as last published).
pub fn cached_slots() -> usize {
    all_magazines().map(CpuMagazines::cached).sum()
}

/// Bytes in use (the design's `heap_get_used`).
pub fn used() -> usize {
    stats().used
}

/// Bytes free in the mapped heap (the design's `heap_get_free`).
pub fn free() -> usize {
    stats().free
}

/// Largest free block in bytes.
pub fn largest_free_block() -> usize {
    with(|heap| heap.largest_free_block()).unwrap_or(0)
}

/// Checks the heap's consistency, and every CPU's magazines against it
/// (those not in use at the moment).
pub fn verify() -> Result<(), &'static str> {
    with(|heap| {
        heap.verify()?;
        if let Some(states) = STATES.get() {
            for cpu in all_magazines() {
                magazine::verify(heap, cpu, states).unwrap_or(Ok(0))?;
            }
        }
        Ok(())
    })
    .unwrap_or(Err("heap not initialised"))
}

/// Rust's `alloc` on the kernel heap.
pub struct KernelAllocator;

// SAFETY: alloc returns blocks of at least the layout's size and alignment,
// disjoint from every other live block, or null; dealloc and realloc only
// act on blocks the heap checks are live.
unsafe impl GlobalAlloc for KernelAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match alloc(layout) {
            Ok(pointer) => pointer,
            Err(error) => {
                let stats = stats();
                log::error!(
                    "heap: out of memory: {} bytes ({}) aligned to {} ({error}); {} used of {} mapped, cap {}, largest free block {}",
                    layout.size(),
                    HumanSize(layout.size() as u64),
                    layout.align(),
                    HumanSize(stats.used as u64),
                    HumanSize(stats.mapped as u64),
                    HumanSize(HEAP_MAX_SIZE),
                    HumanSize(largest_free_block() as u64)
                );
                ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        kfree_or_log(pointer);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let result = with_red_zone_watch(|heap| {
            // A slot a magazine handed out becomes the heap's to move.
            if let Some(states) = STATES.get() {
                magazine::claim_for_heap(states, pointer)?;
            }
            heap.realloc(pointer, layout, new_size)
        });
        if let Some((_, true)) = result {
            report_overflow(pointer);
        }
        match result {
            Some((Ok(moved), _)) => moved.as_ptr(),
            _ => ptr::null_mut(),
        }
    }
}

#[global_allocator]
static ALLOCATOR: KernelAllocator = KernelAllocator;

/// Physical address behind a heap address (for tests and the shell).
pub fn physical(address: VirtAddr) -> Option<PhysAddr> {
    vmm::translate(address).map(|t| t.phys)
}

/// Heap memory that stays mapped under memory pressure: the start of the
/// heap, which the kernel's own long-lived data fills first.
const PRESSURE_FLOOR: usize = 256 * 1024;

/// Under memory pressure: every idle CPU's magazines and the heap's own
/// caches go back to the heap, then every whole free page at its end
/// (down to its first `PRESSURE_FLOOR` bytes, past the usual
/// `KEEP_FREE` and the initial 1 MiB) and inside every free block back
/// to the PMM. Call with no
/// lock held (it takes the heap lock, then the VMM's and the PMM's).
/// Returns the pages given back.
pub fn release_under_pressure() -> u64 {
    let before = pages_released();
    drain_magazines();
    with(|heap| {
        heap.trim();
        if let Some((start, end)) = heap.release_tail_all(PRESSURE_FLOOR) {
            unmap_given_back(start, end);
        }
        while let Some((start, end)) = heap.release_any_inside(PAGE_SIZE as usize) {
            unmap_given_back(start, end);
        }
    });
    pages_released() - before
}

/// Maps every page given back inside the heap again, then makes sure it
/// has at least `bytes` free and mapped, growing it if need be. For the
/// in-kernel test runner, which starts every test like this: tests compare
/// exact frame counts while using the heap on the side, and after memory
/// pressure (which leaves almost nothing mapped free, and the record of
/// given-back ranges full) the heap would take frames under them. Best
/// effort: with the PMM short of frames it maps what it can. Returns the
/// bytes free and mapped afterwards.
pub fn settle(bytes: usize) -> usize {
    let free = |heap: &Heap<'static, KernelGrow>| heap.stats().free;
    let Some(short) = with(|heap| {
        heap.remap_released(usize::MAX);
        bytes.saturating_sub(free(heap))
    }) else {
        return 0;
    };
    if short > 0 {
        // Whatever large block the heap hands out now comes from its end
        // (nothing free and mapped that large is left inside), so freeing
        // it without the usual give-back leaves the end grown.
        let pointer = with(|heap| heap.kmalloc(short).ok()).flatten();
        if let Some(pointer) = pointer {
            // Just allocated above and freed once, under the lock.
            let _ = with(|heap| heap.free(pointer.as_ptr()));
        }
    }
    with(|heap| free(heap)).unwrap_or(0)
}
