//! Per-CPU frame caches in the kernel: the glue around
//! `mm::pmm::cache` (where the logic is, host-tested with threads).
//!
//! Each CPU's record holds a [`CpuFrames`]: its cache, touched only by
//! that CPU with interrupts off, and its donation slot. Single-frame
//! allocations and frees go through the calling CPU's cache and take the
//! PMM lock only to refill or drain a batch. When the PMM is empty, the
//! allocating CPU collects every other CPU's cache through the donation
//! slots (one IPI each, the shootdown vector, whose handler and every
//! lock wait serve donation requests) before it reports exhaustion, so
//! exhaustion still hands out every frame in the machine.
//!
//! While failure injection is armed, allocations bypass the caches, so
//! every one of them meets the PMM's failure point.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use spin::Once;
use x86_64::instructions::interrupts;

use crate::arch::x86_64::{clock, smp};
use mm::pmm::cache::{self, Donation, FrameCache, FrameStates};
use mm::MmError;

/// Drain above this many cached frames...
const HIGH: usize = 96;
/// ...this many at a time; refills bring as many (one aligned run of 64
/// when the PMM has one: see `mm::pmm::cache::REFILL_RUN_ORDER`).
const BATCH: usize = 64;
/// How long a collector waits for a CPU to hand over its cache.
const COLLECT_TIMEOUT_US: u64 = 100_000;

/// One CPU's frame cache and donation slot.
pub struct CpuFrames {
    cache: UnsafeCell<FrameCache>,
    /// Set while this CPU works on its cache (then a donation request
    /// waits until it is done, instead of touching the cache under it).
    busy: AtomicBool,
    /// Frames in the cache, for the counters other CPUs read.
    cached: AtomicUsize,
    donation: Donation,
}

// SAFETY: the cache in the UnsafeCell is reached only by `with_cache` on
// the CPU that owns the record, with interrupts off and `busy` set, so no
// two references to it ever exist; everything else is atomic.
unsafe impl Sync for CpuFrames {}

impl CpuFrames {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            cache: UnsafeCell::new(FrameCache::new(HIGH, BATCH)),
            busy: AtomicBool::new(false),
            cached: AtomicUsize::new(0),
            donation: Donation::new(),
        }
    }

    /// Frames in the cache now.
    pub fn cached(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }
}

impl Default for CpuFrames {
    fn default() -> Self {
        Self::new()
    }
}

/// The state bytes of every frame the PMM manages (set once caches are on).
static STATES: Once<FrameStates<'static>> = Once::new();
/// Set while failure injection is armed: caches are bypassed.
static BYPASS: AtomicBool = AtomicBool::new(false);
/// One collector at a time.
static COLLECTING: AtomicBool = AtomicBool::new(false);

/// Turns the caches on, with `states` (one byte per frame from `base`,
/// zeroed, owned for the kernel's life; both aligned as
/// `FrameStates::new` asks).
pub fn enable(states: &'static [AtomicU8], base: u64) -> Result<(), MmError> {
    let states = FrameStates::new(states, base)?;
    STATES.call_once(|| states);
    Ok(())
}

/// Routes every allocation around the caches (`true`) or through them.
pub fn bypass(on: bool) {
    BYPASS.store(on, Ordering::SeqCst);
}

/// The state bytes, if caches are on and not bypassed.
fn states() -> Option<&'static FrameStates<'static>> {
    if BYPASS.load(Ordering::Relaxed) {
        return None;
    }
    STATES.get()
}

/// Runs `f` on this CPU's cache with interrupts off; `None` without a
/// per-CPU record or caches. Serves a donation request that arrived
/// meanwhile before it returns.
pub fn with_cache<R>(f: impl FnOnce(&mut FrameCache, &FrameStates<'static>) -> R) -> Option<R> {
    let states = states()?;
    interrupts::without_interrupts(|| {
        // Re-entered on this CPU (cannot happen with interrupts off; be
        // safe): `None`, so the caller goes around the cache.
        enter(&smp::current()?.frames, |cache| f(cache, states))
    })
}

/// Serves a donation request aimed at this CPU, if one is waiting and the
/// cache is not in use (the IPI handler and every lock wait call this,
/// with interrupts off).
pub fn serve_donation() {
    if let Some(cpu) = smp::current() {
        if cpu.frames.donation.requested() {
            // `enter` serves the request on its way out.
            enter(&cpu.frames, |_| ());
        }
    }
}

/// Runs `f` on the cache of `frames`, this CPU's, which the caller
/// reaches with interrupts off; then serves a pending donation request
/// and publishes the cache's count. `None` if the cache is in use
/// already (then nothing runs).
fn enter<R>(frames: &CpuFrames, f: impl FnOnce(&mut FrameCache) -> R) -> Option<R> {
    if frames.busy.swap(true, Ordering::Acquire) {
        return None;
    }
    // SAFETY: the record is this CPU's, interrupts are off and `busy` was
    // clear and is now ours, so this is the only reference to the cache
    // (see `CpuFrames`).
    let cache = unsafe { &mut *frames.cache.get() };
    let result = f(cache);
    frames.donation.serve(cache);
    frames.cached.store(cache.len(), Ordering::Relaxed);
    frames.busy.store(false, Ordering::Release);
    Some(result)
}

/// Gives every frame of this CPU's cache back to the PMM (for views of
/// the PMM's bitmap, where cached frames look allocated).
pub fn drain_local() {
    let node = crate::kernel_mm::pmm::local_node();
    with_cache(|cache, states| {
        crate::kernel_mm::pmm::with(|pmm| {
            let mut source = Near {
                allocator: pmm,
                node,
            };
            drain(cache, states, &mut source, mm::pmm::cache::CACHE_CAPACITY);
        })
    });
}

/// A frame going to the PMM directly (caches bypassed, or one no cache
/// handed out): it has no cache state any more.
pub fn forget(frame: u64) {
    if let Some(states) = STATES.get() {
        states.returned(frame);
    }
}

/// Frames in every CPU's cache (exact when nothing runs on the others).
pub fn cached_frames() -> u64 {
    (0..smp::MAX_CPUS)
        .filter_map(smp::cpu)
        .map(|cpu| cpu.frames.cached() as u64)
        .sum()
}

/// Collects the cache of every other CPU, handing each frame to `give`
/// (which returns it to the PMM); returns how many came. Waits at most
/// `COLLECT_TIMEOUT_US` per CPU; a CPU that does not answer keeps its
/// frames. Call with no lock held.
pub fn collect_others(mut give: impl FnMut(u64)) -> usize {
    let (Some(me), Some(states)) = (smp::current(), STATES.get()) else {
        return 0;
    };
    if smp::online() <= 1 {
        return 0;
    }
    // Collected frames leave the caches: no longer cached.
    let mut give = |frame: u64| {
        states.returned(frame);
        give(frame);
    };
    if COLLECTING.swap(true, Ordering::Acquire) {
        // Another CPU is collecting (ours too): let it finish, serving.
        clock::wait_us(COLLECT_TIMEOUT_US * smp::MAX_CPUS as u64, || {
            serve_donation();
            !COLLECTING.load(Ordering::Acquire)
        });
        return 0;
    }
    let others = (0..smp::MAX_CPUS)
        .filter(|&index| index != me.index)
        .filter_map(smp::cpu);
    for cpu in others.clone() {
        if cpu.frames.donation.request() {
            smp::poke(cpu);
        }
    }
    let mut collected = 0;
    for cpu in others {
        let donation = &cpu.frames.donation;
        let served = clock::wait_us(COLLECT_TIMEOUT_US, || {
            serve_donation();
            !donation.requested()
        });
        collected += if served {
            donation.collect(&mut give).unwrap_or(0)
        } else {
            log::warn!(
                "pmm: CPU {} did not hand over its frame cache within {} ms",
                cpu.index,
                COLLECT_TIMEOUT_US / 1000
            );
            donation.withdraw(&mut give)
        };
    }
    COLLECTING.store(false, Ordering::Release);
    collected
}

/// The cache fast paths, re-exported for the PMM glue.
pub use cache::{drain, give, refill, take, Given, Near};
