//! Per-CPU frame caches in front of the frame allocator: a short LIFO of
//! single frames per CPU, refilled and drained in batches under the
//! allocator's lock, so the common single-frame allocation and free take
//! no lock at all (Linux's per-CPU page lists are the model).
//!
//! Three pieces, all plain types the kernel composes:
//!
//! * [`FrameCache`]: the LIFO itself, with a high watermark and a batch
//!   size; its owner reaches it with interrupts off.
//! * [`FrameStates`]: one byte per frame saying "handed out as a single
//!   frame" or "sitting in a cache", so a free that reaches a cache is
//!   checked without the allocator's lock: freeing a frame that is in a
//!   cache is a double free, and a frame that was never handed out alone
//!   goes to the allocator, whose exact checks name the error. The bytes
//!   are atomics read and written with plain loads and stores: only a
//!   double free racing with the frame's reuse could slip through, and
//!   that is a bug no allocator can tell from a correct free.
//! * [`Donation`]: a slot another CPU asks this CPU to empty its cache
//!   into, so a CPU that finds the allocator empty can collect every
//!   cached frame in the machine before it reports exhaustion.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::layout::PAGE_SIZE;
use crate::MmError;

/// Frames a cache holds at most.
pub const CACHE_CAPACITY: usize = 128;

/// A per-CPU LIFO of free single frames (physical addresses).
pub struct FrameCache {
    frames: [u64; CACHE_CAPACITY],
    count: usize,
    /// Above this many frames, a free drains `batch` of them.
    high: usize,
    /// Frames moved per refill or drain.
    batch: usize,
}

impl FrameCache {
    /// An empty cache draining above `high` frames, `batch` at a time
    /// (both clamped so a drain always makes room: `batch <= high <
    /// CACHE_CAPACITY`).
    pub const fn new(high: usize, batch: usize) -> Self {
        let high = if high >= CACHE_CAPACITY {
            CACHE_CAPACITY - 1
        } else {
            high
        };
        let batch = if batch == 0 {
            1
        } else if batch > high {
            high
        } else {
            batch
        };
        Self {
            frames: [0; CACHE_CAPACITY],
            count: 0,
            high,
            batch,
        }
    }

    /// Frames in the cache.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frames moved per refill or drain.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The most recently cached frame.
    #[inline]
    pub fn pop(&mut self) -> Option<u64> {
        self.count = self.count.checked_sub(1)?;
        Some(self.frames[self.count])
    }

    /// Caches a frame; true if the cache is now above its high watermark
    /// (the caller drains a batch). A full cache gives the frame back.
    #[inline]
    pub fn push(&mut self, frame: u64) -> Result<bool, u64> {
        if self.count == CACHE_CAPACITY {
            return Err(frame);
        }
        self.frames[self.count] = frame;
        self.count += 1;
        Ok(self.count > self.high)
    }

    /// Fills the cache with up to a batch of frames from `take` (which
    /// returns `None` when it has no more); returns how many came.
    pub fn refill(&mut self, mut take: impl FnMut() -> Option<u64>) -> usize {
        let room = (CACHE_CAPACITY - self.count).min(self.batch);
        let mut taken = 0;
        while taken < room {
            let Some(frame) = take() else { break };
            self.frames[self.count] = frame;
            self.count += 1;
            taken += 1;
        }
        taken
    }

    /// Hands the oldest `count` frames (at most all) to `give`, oldest
    /// first, keeping the recently freed (cache-warm) ones.
    pub fn drain(&mut self, count: usize, mut give: impl FnMut(u64)) {
        let count = count.min(self.count);
        for &frame in &self.frames[..count] {
            give(frame);
        }
        self.frames.copy_within(count..self.count, 0);
        self.count -= count;
    }
}

/// The state byte of a frame no cache knows about (free in the allocator,
/// part of a block, reserved, or handed out by the allocator directly).
const OTHER: u8 = 0;
/// Handed out alone through a cache.
const SINGLE: u8 = 1;
/// In some CPU's cache (free).
const CACHED: u8 = 2;

/// Frames whose state bytes share one cache line (64 bytes).
pub const FRAMES_PER_LINE: usize = 64;

/// One state byte per frame of the managed span (see the module doc).
pub struct FrameStates<'a> {
    states: &'a [AtomicU8],
    /// Physical address of the first frame.
    base: u64,
}

impl<'a> FrameStates<'a> {
    /// States for the frames from `base`, one per byte of `states`, all
    /// `OTHER` (held by no cache) initially.
    ///
    /// `Err(Misaligned)` unless `states` starts a cache line and `base` is
    /// aligned to [`FRAMES_PER_LINE`] frames: then each aligned refill run
    /// (see [`REFILL_RUN_ORDER`]) has its bytes on lines of its own.
    /// Otherwise a run's bytes straddle two lines, each shared with a
    /// neighbouring run another CPU may own, and every cached free or
    /// allocation on one CPU steals a line the other is writing (this
    /// cost the host benchmark a third of its two-thread throughput:
    /// docs/pmm.md, "Two CPUs").
    pub fn new(states: &'a [AtomicU8], base: u64) -> Result<Self, MmError> {
        if !states.as_ptr().addr().is_multiple_of(FRAMES_PER_LINE)
            || !base.is_multiple_of(FRAMES_PER_LINE as u64 * PAGE_SIZE)
        {
            return Err(MmError::Misaligned);
        }
        for state in states {
            state.store(OTHER, Ordering::Relaxed);
        }
        Ok(Self { states, base })
    }

    fn state(&self, frame: u64) -> Option<&AtomicU8> {
        let index = frame.checked_sub(self.base)? / PAGE_SIZE;
        self.states.get(usize::try_from(index).ok()?)
    }

    /// A frame the allocator handed to a cache (state: cached).
    #[inline]
    pub fn cached(&self, frame: u64) {
        if let Some(state) = self.state(frame) {
            state.store(CACHED, Ordering::Relaxed);
        }
    }

    /// A frame a cache hands out (cached -> single).
    #[inline]
    pub fn handed_out(&self, frame: u64) {
        if let Some(state) = self.state(frame) {
            state.store(SINGLE, Ordering::Relaxed);
        }
    }

    /// A frame going back from a cache to the allocator.
    #[inline]
    pub fn returned(&self, frame: u64) {
        if let Some(state) = self.state(frame) {
            state.store(OTHER, Ordering::Relaxed);
        }
    }

    /// Checks a free on its way into a cache: `Ok` if the frame was handed
    /// out alone through a cache (now cached); `Err(FrameAlreadyFree)` if
    /// it is in a cache already (a double free); `Err(Misaligned)` or
    /// `Err(OutOfRange)` for what is not a frame of the span; and
    /// `Err(InvalidFree)` for anything else, which the caller passes to
    /// the allocator for its exact verdict.
    #[inline]
    pub fn take_back(&self, frame: u64) -> Result<(), MmError> {
        if !frame.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        let state = self.state(frame).ok_or(MmError::OutOfRange)?;
        match state.load(Ordering::Relaxed) {
            SINGLE => {
                state.store(CACHED, Ordering::Relaxed);
                Ok(())
            }
            CACHED => Err(MmError::FrameAlreadyFree),
            _ => Err(MmError::InvalidFree),
        }
    }
}

/// No request pending.
const IDLE: usize = 0;
/// A collector asked for this CPU's cache.
const REQUESTED: usize = 1;
/// The frames are in the slot.
const DONATED: usize = 2;

/// Where a CPU puts its cached frames when another CPU asks for them.
///
/// The collector calls [`Donation::request`], interrupts the owner, and
/// waits for [`Donation::collect`] to return the frames; the owner, in its
/// interrupt handler (or while it spins for a lock), calls
/// [`Donation::serve`] with its cache. No lock is involved, so a CPU that
/// waits for a lock the collector holds still serves.
pub struct Donation {
    frames: [AtomicU64; CACHE_CAPACITY],
    count: AtomicUsize,
    phase: AtomicUsize,
}

impl Default for Donation {
    fn default() -> Self {
        Self::new()
    }
}

impl Donation {
    /// An idle slot.
    pub const fn new() -> Self {
        Self {
            frames: [const { AtomicU64::new(0) }; CACHE_CAPACITY],
            count: AtomicUsize::new(0),
            phase: AtomicUsize::new(IDLE),
        }
    }

    /// Asks the owner for its frames (one collector at a time: the caller
    /// serialises collectors). False if a request is already pending.
    pub fn request(&self) -> bool {
        self.phase
            .compare_exchange(IDLE, REQUESTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether a request waits for the owner.
    pub fn requested(&self) -> bool {
        self.phase.load(Ordering::Acquire) == REQUESTED
    }

    /// The owner's side: if asked, moves every frame of `cache` into the
    /// slot. Returns how many it gave.
    pub fn serve(&self, cache: &mut FrameCache) -> usize {
        if self.phase.load(Ordering::Acquire) != REQUESTED {
            return 0;
        }
        let mut given = 0;
        cache.drain(CACHE_CAPACITY, |frame| {
            self.frames[given].store(frame, Ordering::Relaxed);
            given += 1;
        });
        self.count.store(given, Ordering::Relaxed);
        self.phase.store(DONATED, Ordering::Release);
        given
    }

    /// The collector's side: the donated frames, if the owner has served
    /// (then the slot is idle again); `None` while it has not.
    pub fn collect(&self, mut take: impl FnMut(u64)) -> Option<usize> {
        if self.phase.load(Ordering::Acquire) != DONATED {
            return None;
        }
        let count = self.count.load(Ordering::Relaxed);
        for frame in &self.frames[..count] {
            take(frame.load(Ordering::Relaxed));
        }
        self.phase.store(IDLE, Ordering::Release);
        Some(count)
    }

    /// Withdraws a request the owner never served (the collector gave up
    /// waiting); if the owner served meanwhile, the frames go to `take`.
    pub fn withdraw(&self, take: impl FnMut(u64)) -> usize {
        if self
            .phase
            .compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return 0;
        }
        self.collect(take).unwrap_or(0)
    }
}

/// Frames a refill takes as one aligned run when it can: 64 frames, whose
/// 64 state bytes fill one cache line (so no two CPUs' fresh frames share
/// a line of state bytes; `FrameStates::new` sees to the alignment).
pub const REFILL_RUN_ORDER: u32 = 6;

const _: () = assert!((1usize << REFILL_RUN_ORDER).is_multiple_of(FRAMES_PER_LINE));

/// The allocator behind the caches, under its lock while these run.
pub trait FrameSource {
    /// One free frame, if there is one.
    fn take_frame(&mut self) -> Option<u64>;
    /// 2^`order` contiguous frames, each freed on its own later; `None` if
    /// no such run is free (the caller falls back to single frames).
    fn take_run(&mut self, order: u32) -> Option<u64> {
        let _ = order;
        None
    }
    /// Gives a frame back; the allocator's exact checks apply.
    fn give_frame(&mut self, frame: u64) -> Result<(), MmError>;
}

/// A frame allocator as a source, allocating near `node` (unmovable: a
/// cache may hand its frames to anyone).
pub struct Near<'b, 'a> {
    /// The allocator (locked by the caller).
    pub allocator: &'b mut super::FrameAllocator<'a>,
    /// The node to allocate from first.
    pub node: usize,
}

impl FrameSource for Near<'_, '_> {
    #[inline]
    fn take_frame(&mut self) -> Option<u64> {
        self.allocator
            .alloc_near(self.node, 0, super::Mobility::Unmovable)
            .ok()
            .map(|frame| frame.start_address().as_u64())
    }

    #[inline]
    fn give_frame(&mut self, frame: u64) -> Result<(), MmError> {
        self.allocator.free_page(x86_64::PhysAddr::new(frame))
    }

    fn take_run(&mut self, order: u32) -> Option<u64> {
        self.allocator
            .alloc_split(self.node, order, super::Mobility::Unmovable)
            .ok()
            .map(|frame| frame.start_address().as_u64())
    }
}

/// The lock-free allocation: the cache's newest frame, if any.
#[inline]
pub fn take(cache: &mut FrameCache, states: &FrameStates<'_>) -> Option<u64> {
    let frame = cache.pop()?;
    states.handed_out(frame);
    Some(frame)
}

/// Refills an empty cache with a batch from `source` (under its lock):
/// one aligned run of 2^[`REFILL_RUN_ORDER`] frames when the batch is that
/// big and the source has one, else single frames; returns how many came.
pub fn refill(
    cache: &mut FrameCache,
    states: &FrameStates<'_>,
    source: &mut impl FrameSource,
) -> usize {
    let run = 1usize << REFILL_RUN_ORDER;
    if cache.batch() >= run && CACHE_CAPACITY - cache.len() >= run {
        if let Some(first) = source.take_run(REFILL_RUN_ORDER) {
            // Highest first, so the cache hands the run out in order.
            let mut next = run as u64;
            return cache.refill(|| {
                next = next.checked_sub(1)?;
                let frame = first + next * PAGE_SIZE;
                states.cached(frame);
                Some(frame)
            });
        }
    }
    cache.refill(|| {
        let frame = source.take_frame()?;
        states.cached(frame);
        Some(frame)
    })
}

/// What became of a freed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Given {
    /// In the cache; `true`: it is above its watermark, drain a batch.
    Cached(bool),
    /// Not a frame a cache handed out: give it to the allocator (under its
    /// lock), whose checks decide.
    ToAllocator,
}

/// The lock-free free: into the cache if the frame was handed out alone
/// through a cache; a double free of a cached frame (or an address that
/// is no frame) is refused here and changes nothing.
#[inline]
pub fn give(
    cache: &mut FrameCache,
    states: &FrameStates<'_>,
    frame: u64,
) -> Result<Given, MmError> {
    match states.take_back(frame) {
        Ok(()) => match cache.push(frame) {
            Ok(over) => Ok(Given::Cached(over)),
            Err(frame) => {
                // Cannot happen with drains at the watermark; be exact.
                states.handed_out(frame);
                Ok(Given::ToAllocator)
            }
        },
        Err(MmError::InvalidFree) => Ok(Given::ToAllocator),
        Err(error) => Err(error),
    }
}

/// Moves `count` of the cache's oldest frames back to `source` (under
/// its lock).
pub fn drain(
    cache: &mut FrameCache,
    states: &FrameStates<'_>,
    source: &mut impl FrameSource,
    count: usize,
) {
    cache.drain(count, |frame| {
        states.returned(frame);
        // A cached frame was handed out by the allocator and freed once:
        // the allocator takes it back.
        let returned = source.give_frame(frame);
        debug_assert_eq!(returned, Ok(()));
    });
}

#[cfg(test)]
mod tests;
