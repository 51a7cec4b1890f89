//! Per-CPU magazines in front of the heap's small allocations: a short
//! LIFO of free slots per size class per CPU, refilled and flushed a
//! batch at a time under the heap's lock, so the common allocation and
//! free of a small object take no lock (Bonwick's magazines, without a
//! depot: the slab pages' recent lists and the quick lists play its
//! part).
//!
//! The classes ([`class_size`]) are 16 bytes apart up to 512 bytes and
//! 32 apart up to [`MAGAZINE_LIMIT`] (1,536; request plus debug
//! overhead): up to the slab limit (256 bytes) they hold slab slots,
//! above it TLSF blocks of one exact size each ([`block_size`]), taken
//! from and given back to the heap like any block (its quick lists
//! first).
//!
//! Pieces, all plain types the kernel composes:
//!
//! * [`Magazines`]: one CPU's LIFOs, [`ROUNDS`] slots per slab class,
//!   fewer for the larger block classes, and at most [`BLOCK_BUDGET`]
//!   bytes of blocks in all.
//! * [`CpuMagazines`]: a CPU's magazines behind a try-lock flag (`busy`)
//!   and the counters other CPUs read. Its owner takes the flag for each
//!   operation (uncontended: one atomic swap in its own cache line); a
//!   CPU that finds the heap exhausted takes the other CPUs' flags to
//!   drain their magazines, and skips a CPU that holds its own.
//! * [`SlotStates`] (`magazine/states.rs`): one atomic byte per granule
//!   saying "handed out by a magazine" or "in a magazine" and the class,
//!   which checks a free without the heap's lock.
//! * [`Machine`]: how the front end reaches the heap's lock and the other
//!   CPUs' magazines (the kernel: `IrqMutex` and the per-CPU records; the
//!   host tests: a `std` mutex and a slice).
//!
//! A slot or block in a magazine is *used* for the heap (its live bit is
//! set and the heap's counters count it as used); [`combined_stats`]
//! moves it to free. Debug checks work in the magazines as in the heap:
//! red zone armed on allocation and checked on free, the memory poisoned,
//! in the heap's own layout, so an allocation may be freed by either
//! path.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::checks::{arm_at, intact_at, poison_at};
use super::slab::SLAB_LIMIT;
use super::tlsf::{GRANULE, HEADER};
use super::{DebugChecks, Grow, Heap, HeapStats, Live, DEBUG_OVERHEAD};
use crate::MmError;
use states::Claim;
pub use states::{state_bytes, SlotStates};

mod states;

/// Classes are 16 bytes apart up to this request size, 32 above it.
const FINE_LIMIT: usize = 512;
/// Classes 16 bytes apart.
const FINE_CLASSES: usize = FINE_LIMIT / GRANULE;
/// Size classes the magazines serve: the slab classes, then the block
/// classes, as many as a state byte can name.
const CLASSES: usize = 64;
/// Largest request (bytes, debug overhead included) the magazines serve:
/// 1,536 (so a debug build's 1 KiB request, 1,048 bytes with its red
/// zone and size record, is one).
pub const MAGAZINE_LIMIT: usize = class_size(CLASSES - 1);
/// Classes below this one hold slab slots.
const SLAB_CLASSES: usize = SLAB_LIMIT / GRANULE;
/// Slots one slab class's magazine holds.
pub const ROUNDS: usize = 32;
/// Slots a refill of a slab class brings and a flush takes back.
pub const BATCH: usize = ROUNDS / 2;
/// Bytes one block class's magazine holds at most (so the 1,024-byte
/// class holds 15 blocks, the 1,536-byte one 10).
const CLASS_BYTES: usize = 16 * 1024;
/// Bytes of blocks one CPU's magazines hold at most, all block classes
/// together; a refill still brings at least one block, so one more block
/// per class may be held.
pub const BLOCK_BUDGET: usize = 64 * 1024;

const _: () = assert!(BATCH <= ROUNDS && ROUNDS <= u8::MAX as usize);
const _: () = assert!(SLAB_CLASSES <= FINE_CLASSES && class_size(SLAB_CLASSES - 1) == SLAB_LIMIT);
const _: () = assert!(
    CLASSES <= states::CLASS_LIMIT,
    "every class fits a state byte"
);

/// The largest request (debug overhead included) `class` serves: 16,
/// 32, ... 512, then 544, 576, ... 1,536.
pub const fn class_size(class: usize) -> usize {
    if class < FINE_CLASSES {
        (class + 1) * GRANULE
    } else {
        FINE_LIMIT + (class + 1 - FINE_CLASSES) * 2 * GRANULE
    }
}

/// The class of a request of `bytes` (1..=MAGAZINE_LIMIT; 0 counts as 1).
#[inline(always)]
fn class_of(bytes: usize) -> usize {
    debug_assert!(bytes <= MAGAZINE_LIMIT);
    if bytes <= FINE_LIMIT {
        bytes.max(1).div_ceil(GRANULE) - 1
    } else {
        FINE_CLASSES - 1 + (bytes - FINE_LIMIT).div_ceil(2 * GRANULE)
    }
}

/// The TLSF block (header included) a magazine of block class `class`
/// holds: exactly what the heap gives a request of the class's size.
pub const fn block_size(class: usize) -> usize {
    class_size(class) + GRANULE
}

/// The block class whose blocks are `size` bytes, if any.
fn class_of_block(size: usize) -> Option<usize> {
    let bytes = size
        .checked_sub(GRANULE)
        .filter(|&b| b > 0 && b <= MAGAZINE_LIMIT)?;
    let class = class_of(bytes);
    (is_block_class(class) && block_size(class) == size).then_some(class)
}

/// Whether `class` holds TLSF blocks (not slab slots).
#[inline(always)]
const fn is_block_class(class: usize) -> bool {
    class >= SLAB_CLASSES
}

/// Bytes of the heap one round of `class` stands for (what the heap
/// counts as used for it).
#[inline(always)]
const fn held_size(class: usize) -> usize {
    if is_block_class(class) {
        block_size(class)
    } else {
        class_size(class)
    }
}

/// Bytes a round of `class` can hold: its payload.
#[inline(always)]
const fn capacity(class: usize) -> usize {
    if is_block_class(class) {
        block_size(class) - HEADER
    } else {
        class_size(class)
    }
}

/// Rounds the magazine of `class` holds, computed once.
const ROUNDS_OF: [u8; CLASSES] = {
    let mut table = [0; CLASSES];
    let mut class = 0;
    while class < CLASSES {
        let rounds = if is_block_class(class) {
            let fit = CLASS_BYTES / block_size(class);
            if fit < ROUNDS {
                fit
            } else {
                ROUNDS
            }
        } else {
            ROUNDS
        };
        table[class] = rounds as u8;
        class += 1;
    }
    table
};

/// Rounds the magazine of `class` holds.
#[inline(always)]
fn rounds(class: usize) -> usize {
    ROUNDS_OF[class] as usize
}

/// Rounds a refill of `class` brings and a flush takes back.
fn batch(class: usize) -> usize {
    rounds(class).div_ceil(2)
}

/// One CPU's magazines: per class a LIFO of free slots or blocks
/// (payload pointers with the heap's provenance), newest last.
pub struct Magazines {
    rounds: [[*mut u8; ROUNDS]; CLASSES],
    count: [u8; CLASSES],
    /// Bytes (as the heap counts them) of slab slots, and of blocks
    /// (all block classes: [`BLOCK_BUDGET`]).
    slab_bytes: usize,
    block_bytes: usize,
    /// Rounds in all classes.
    slots: usize,
    /// Allocations served from the magazines.
    allocations: u64,
    checks: DebugChecks,
}

impl Magazines {
    /// Empty magazines for a heap with `checks`.
    pub const fn new(checks: DebugChecks) -> Self {
        Self {
            rounds: [[core::ptr::null_mut(); ROUNDS]; CLASSES],
            count: [0; CLASSES],
            slab_bytes: 0,
            block_bytes: 0,
            slots: 0,
            allocations: 0,
            checks,
        }
    }

    /// Slots held, all classes.
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Counts `count` rounds of `class` in (`true`) or out.
    #[inline(always)]
    fn book(&mut self, class: usize, count: usize, coming: bool) {
        let bytes = count * held_size(class);
        let total = if is_block_class(class) {
            &mut self.block_bytes
        } else {
            &mut self.slab_bytes
        };
        if coming {
            *total += bytes;
            self.slots += count;
        } else {
            *total -= bytes;
            self.slots -= count;
        }
    }

    #[inline(always)]
    fn pop(&mut self, class: usize) -> Option<*mut u8> {
        let count = self.count[class].checked_sub(1)?;
        self.count[class] = count;
        self.book(class, 1, false);
        Some(self.rounds[class][count as usize])
    }

    /// Whether `class`'s magazine takes one more round: not full, and for
    /// a block class, within the budget.
    #[inline(always)]
    fn has_room(&self, class: usize) -> bool {
        (self.count[class] as usize) < rounds(class)
            && (!is_block_class(class) || self.block_bytes + block_size(class) <= BLOCK_BUDGET)
    }

    /// Pushes `slot` of `class`, for which there is room (`has_room`, or
    /// a refill's first block over the budget).
    #[inline(always)]
    fn put(&mut self, class: usize, slot: *mut u8) {
        let count = self.count[class] as usize;
        debug_assert!(count < rounds(class));
        self.rounds[class][count] = slot;
        self.count[class] += 1;
        self.book(class, 1, true);
    }

    /// Takes the oldest `count` slots of `class` (at most all), oldest
    /// first, keeping the newest (cache-warm) ones.
    fn take_oldest(&mut self, class: usize, count: usize, mut take: impl FnMut(*mut u8)) {
        let held = self.count[class] as usize;
        let count = count.min(held);
        for &slot in &self.rounds[class][..count] {
            take(slot);
        }
        self.rounds[class].copy_within(count..held, 0);
        self.count[class] = (held - count) as u8;
        self.book(class, count, false);
    }

    /// The lock-free allocation of `size` bytes of `class`: the newest
    /// slot, armed if debug checks are on.
    #[inline(always)]
    fn alloc(&mut self, states: &SlotStates<'_>, class: usize, size: usize) -> Option<NonNull<u8>> {
        let slot = self.pop(class)?;
        states.hand_out(slot.addr(), class);
        self.allocations += 1;
        if self.checks.on() {
            // SAFETY: a slot of `class` the magazine held, now the
            // caller's; size + DEBUG_OVERHEAD fits it (`class_for`).
            unsafe { arm_at(slot, size, capacity(class)) };
        }
        // SAFETY: slots are inside the heap, never null.
        Some(unsafe { NonNull::new_unchecked(slot) })
    }
}

/// The class a request of `layout` takes through the magazines, if any.
#[inline(always)]
fn class_for(layout: Layout, checks: DebugChecks) -> Option<usize> {
    if layout.align() > GRANULE {
        return None;
    }
    let bytes = if checks.on() {
        layout.size().checked_add(DEBUG_OVERHEAD)?
    } else {
        layout.size()
    };
    (bytes <= MAGAZINE_LIMIT).then(|| class_of(bytes))
}

/// One CPU's magazines and the counters others read, on cache lines of
/// their own (two CPUs' records side by side in an array must not share
/// a line: the flag and counters are written on every operation).
#[repr(align(128))]
pub struct CpuMagazines {
    magazines: UnsafeCell<Magazines>,
    /// Held by whoever works on `magazines`: their owner for each
    /// operation, or a CPU draining them.
    busy: AtomicBool,
    /// Published at the end of each operation, for [`combined_stats`].
    slab_bytes: AtomicUsize,
    block_bytes: AtomicUsize,
    slots: AtomicUsize,
    allocations: AtomicU64,
    /// Red zones found overwritten by frees into these magazines.
    violations: AtomicU64,
    checks: DebugChecks,
}

// SAFETY: the magazines in the UnsafeCell are reached only inside
// `try_with`, by the one caller that swapped `busy` from false to true,
// so no two references to them exist at once; the raw pointers they hold
// are slots of the heap that nobody else uses while they are held.
// Everything else is atomic.
unsafe impl Sync for CpuMagazines {}
// SAFETY: as above: the slots belong to the heap, not to a thread.
unsafe impl Send for CpuMagazines {}

impl CpuMagazines {
    /// Empty magazines for a heap with `checks` (which must be the
    /// heap's own).
    pub const fn new(checks: DebugChecks) -> Self {
        Self {
            magazines: UnsafeCell::new(Magazines::new(checks)),
            busy: AtomicBool::new(false),
            slab_bytes: AtomicUsize::new(0),
            block_bytes: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            checks,
        }
    }

    /// Runs `f` on the magazines unless someone else works on them (then
    /// `None`, nothing runs), and publishes their counters.
    #[inline(always)]
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Magazines) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: `busy` was clear and is now ours: this is the only
        // reference to the magazines (see the Sync impl).
        let magazines = unsafe { &mut *self.magazines.get() };
        let result = f(magazines);
        self.slab_bytes
            .store(magazines.slab_bytes, Ordering::Relaxed);
        self.block_bytes
            .store(magazines.block_bytes, Ordering::Relaxed);
        self.slots.store(magazines.slots, Ordering::Relaxed);
        self.allocations
            .store(magazines.allocations, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        Some(result)
    }

    /// Slots held now (as last published).
    pub fn cached(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }

    /// Red zones found overwritten by frees into these magazines.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }
}

/// How the magazine front end reaches the shared heap and the other CPUs.
pub trait Machine<'a, G: Grow> {
    /// Runs `f` on the heap with its lock held.
    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<'a, G>) -> R) -> R;
    /// Calls `f` with the magazines of every other CPU.
    fn for_each_other(&self, f: impl FnMut(&CpuMagazines));
    /// Called under the lock after slots went back to the heap (the
    /// kernel gives whole free pages at the heap's end back here).
    fn after_free(&self, heap: &mut Heap<'a, G>) {
        let _ = heap;
    }
}

/// Allocates for `layout` on the CPU owning `me`: from its magazine
/// without a lock when the request is at most [`MAGAZINE_LIMIT`] bytes
/// (alignment up to 16), else from the heap under its lock. Magazines are drained (this CPU's
/// and every other CPU's not busy with its own) before the heap grows or
/// fails.
#[inline]
pub fn alloc<'a, G: Grow>(
    me: &CpuMagazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    layout: Layout,
) -> Result<NonNull<u8>, MmError> {
    let Some(class) = class_for(layout, me.checks) else {
        return alloc_from_heap(me, states, machine, layout);
    };
    match me.try_with(|magazines| {
        magazines
            .alloc(states, class, layout.size())
            .ok_or(MmError::HeapExhausted)
    }) {
        Some(Ok(pointer)) => Ok(pointer),
        _ => refill_and_alloc(me, states, machine, class, layout),
    }
}

/// A request the magazines do not serve, under the heap lock.
#[inline(never)]
fn alloc_from_heap<'a, G: Grow>(
    me: &CpuMagazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    layout: Layout,
) -> Result<NonNull<u8>, MmError> {
    machine.with_heap(|heap| {
        heap.hold_growth = true;
        let first = heap.alloc(layout);
        heap.hold_growth = false;
        if first.is_ok() {
            return first;
        }
        // Not a failure yet: drain the magazines, then let it grow.
        heap.stats.failed_allocations -= 1;
        drain_all(heap, me, states, machine);
        heap.alloc(layout)
    })
}

/// The magazine of `class` was empty (or in use): refill it from the heap
/// and allocate, or allocate from the heap directly.
#[inline(never)]
fn refill_and_alloc<'a, G: Grow>(
    me: &CpuMagazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    class: usize,
    layout: Layout,
) -> Result<NonNull<u8>, MmError> {
    let result = me.try_with(|magazines| {
        machine.with_heap(|heap| {
            if refill(heap, magazines, states, class, false) == 0 {
                drain_local(heap, magazines, states);
                drain_others(heap, states, machine);
                refill(heap, magazines, states, class, true);
            }
            magazines.alloc(states, class, layout.size())
        })
    });
    // `None`: our magazines are being drained by another CPU, or no
    // round of the class came (the heap is exhausted, or it had blocks
    // of other sizes only): the heap decides, and counts a failure.
    match result {
        Some(Some(pointer)) => Ok(pointer),
        _ => alloc_from_heap(me, states, machine, layout),
    }
}

/// Fills `class`'s magazine with up to a batch of rounds from `heap`
/// (growing it only if `may_grow`), a block class's within the budget
/// except for the first; returns how many came.
fn refill<G: Grow>(
    heap: &mut Heap<'_, G>,
    magazines: &mut Magazines,
    states: &SlotStates<'_>,
    class: usize,
    may_grow: bool,
) -> usize {
    debug_assert_eq!(heap.checks, magazines.checks);
    heap.hold_growth = !may_grow;
    let mut taken = 0;
    // A block class may see rounds that belong to the next class: the
    // loop is bounded by twice the batch.
    for _ in 0..2 * batch(class) {
        let room = (magazines.count[class] as usize) < rounds(class)
            && (taken == 0 || magazines.has_room(class));
        if taken == batch(class) || !room {
            break;
        }
        let Some((round, home)) = take_round(heap, class) else {
            break;
        };
        match home {
            Some(home) if home == class || magazines.has_room(home) => {
                states.cache(round.addr(), home);
                magazines.put(home, round);
                taken += usize::from(home == class);
            }
            _ => return_live(heap, round.addr(), None),
        }
    }
    heap.hold_growth = false;
    taken
}

/// One live round for a refill of `class` and the class it belongs to: a
/// slab slot of `class`, or a block of [`block_size`]. A block the heap
/// hands out larger (16 bytes more, when the tail was too small to split
/// off) is a block of the next class, and one beyond the last class is
/// no class's (`None`: it goes back).
fn take_round<G: Grow>(heap: &mut Heap<'_, G>, class: usize) -> Option<(*mut u8, Option<usize>)> {
    if !is_block_class(class) {
        return Some((heap.take_slot(class).ok()?.as_ptr(), Some(class)));
    }
    let block = heap.take_block(block_size(class)).ok()?.as_ptr();
    let home = class_of_block(heap.tlsf.size_of(block.addr() - HEADER));
    Some((block, home))
}

/// Gives a slot or block of `class` that left a magazine back to `heap`.
fn give_back<G: Grow>(
    heap: &mut Heap<'_, G>,
    states: &SlotStates<'_>,
    slot: *mut u8,
    class: usize,
) {
    let payload = slot.addr();
    debug_assert!(heap.is_live(payload) && holds(heap, payload, class));
    states.release(payload);
    return_live(heap, payload, (!is_block_class(class)).then_some(class));
}

/// Frees the live allocation at `payload` (a slot of slab class
/// `slab_class`, or a TLSF block) in `heap`, past its checks: it is one
/// the heap handed to the magazines.
fn return_live<G: Grow>(heap: &mut Heap<'_, G>, payload: usize, slab_class: Option<usize>) {
    let at = heap.live_bit(payload);
    heap.give_back(Live {
        payload,
        class: slab_class,
        at,
    });
}

/// Whether the live allocation at `payload` is a round of `class`: a slab
/// slot of the class, or a TLSF block of its block size.
fn holds<G: Grow>(heap: &Heap<'_, G>, payload: usize, class: usize) -> bool {
    let slab_class = heap.slabs.class_at(payload);
    if is_block_class(class) {
        slab_class.is_none() && heap.tlsf.size_of(payload - HEADER) == block_size(class)
    } else {
        slab_class == Some(class)
    }
}

/// Gives every slot of `magazines` back to `heap`.
fn drain_local<G: Grow>(
    heap: &mut Heap<'_, G>,
    magazines: &mut Magazines,
    states: &SlotStates<'_>,
) {
    for class in 0..CLASSES {
        magazines.take_oldest(class, ROUNDS, |slot| give_back(heap, states, slot, class));
    }
}

/// Drains the magazines of every other CPU that is not using them.
fn drain_others<'a, G: Grow>(
    heap: &mut Heap<'a, G>,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
) {
    machine.for_each_other(|cpu| {
        cpu.try_with(|magazines| drain_local(heap, magazines, states));
    });
}

/// Drains `me`'s magazines (if not in use) and every other CPU's.
fn drain_all<'a, G: Grow>(
    heap: &mut Heap<'a, G>,
    me: &CpuMagazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
) {
    me.try_with(|magazines| drain_local(heap, magazines, states));
    drain_others(heap, states, machine);
}

/// Frees `pointer` on the CPU owning `me`: a slot a magazine handed out
/// goes into this CPU's magazine without a lock (wherever it was
/// allocated); a slot already in a magazine is a `DoubleFree` and
/// changes nothing; anything else goes to the heap under its lock, whose
/// checks decide. `Ok(true)`: freed, but its red zone was found
/// overwritten (debug checks; counted in the red-zone violations).
#[inline]
pub fn free<'a, G: Grow>(
    me: &CpuMagazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    pointer: *mut u8,
) -> Result<bool, MmError> {
    let class = match states.claim(pointer.addr()) {
        Claim::Ours(class) => class,
        Claim::Cached => return Err(MmError::DoubleFree),
        Claim::Heap => return free_to_heap(states, machine, pointer),
    };
    // The slot is ours now (no other free can claim it).
    let overrun = me.checks.on() && check_and_poison(me, pointer, class);
    let pushed = me.try_with(|magazines| {
        if !magazines.has_room(class) {
            // Full, or the blocks' budget is spent: a batch of the class
            // goes back, unless the budget is in other classes' blocks.
            if magazines.count[class] == 0 {
                return false;
            }
            flush(magazines, states, machine, class);
        }
        magazines.put(class, pointer);
        true
    });
    if pushed != Some(true) {
        machine.with_heap(|heap| {
            give_back(heap, states, pointer, class);
            machine.after_free(heap);
        });
    }
    Ok(overrun)
}

/// Checks the red zone of the claimed slot `pointer` of `class` (a
/// violation is counted: `true`) and poisons it.
#[cold]
#[inline(never)]
fn check_and_poison(me: &CpuMagazines, pointer: *mut u8, class: usize) -> bool {
    let capacity = capacity(class);
    // SAFETY: a slot of `class` just claimed from the HANDED state: ours,
    // `capacity` bytes, armed by `Magazines::alloc` (or by the heap, in the
    // same layout).
    let overrun = !unsafe { intact_at(pointer, capacity) };
    if overrun {
        me.violations.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: as above.
    unsafe { poison_at(pointer, capacity) };
    overrun
}

/// Moves the oldest batch of `class`'s full magazine back to the heap.
#[inline(never)]
fn flush<'a, G: Grow>(
    magazines: &mut Magazines,
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    class: usize,
) {
    machine.with_heap(|heap| {
        magazines.take_oldest(class, batch(class), |slot| {
            give_back(heap, states, slot, class)
        });
        machine.after_free(heap);
    });
}

/// A free no magazine takes, under the heap lock: a slot in a magazine is
/// a `DoubleFree`; one a magazine handed out (freed here because this
/// CPU's magazines were in use) or anything else goes to `Heap::free`.
#[inline(never)]
fn free_to_heap<'a, G: Grow>(
    states: &SlotStates<'_>,
    machine: &impl Machine<'a, G>,
    pointer: *mut u8,
) -> Result<bool, MmError> {
    machine.with_heap(|heap| {
        claim_for_heap(states, pointer)?;
        let before = heap.stats.red_zone_violations;
        heap.free(pointer)?;
        machine.after_free(heap);
        Ok(heap.stats.red_zone_violations != before)
    })
}

/// Prepares `pointer` for a heap operation that takes or moves it
/// (`free`, `realloc`), called under the heap lock: a slot a magazine
/// handed out becomes the heap's alone; one in a magazine is a
/// `DoubleFree`.
pub fn claim_for_heap(states: &SlotStates<'_>, pointer: *mut u8) -> Result<(), MmError> {
    states
        .claim_for_heap(pointer.addr())
        .map_err(|()| MmError::DoubleFree)
}

/// Gives every slot in `cpu`'s magazines back to `heap` (under its lock);
/// `false` if they are in use (nothing done).
pub fn drain<G: Grow>(heap: &mut Heap<'_, G>, cpu: &CpuMagazines, states: &SlotStates<'_>) -> bool {
    cpu.try_with(|magazines| drain_local(heap, magazines, states))
        .is_some()
}

/// Checks `cpu`'s magazines against `heap` (under its lock): every round
/// a live slab slot of its class in the heap, or a live block of its
/// class's block size, marked as cached, none twice; returns how many
/// rounds they hold, `None` if they are in use.
pub fn verify<G: Grow>(
    heap: &Heap<'_, G>,
    cpu: &CpuMagazines,
    states: &SlotStates<'_>,
) -> Option<Result<usize, &'static str>> {
    cpu.try_with(|magazines| {
        let (mut slab_bytes, mut block_bytes) = (0, 0);
        for class in 0..CLASSES {
            let held = &magazines.rounds[class][..magazines.count[class] as usize];
            for (index, &slot) in held.iter().enumerate() {
                let payload = slot.addr();
                let (start, end) = heap.range();
                if payload < start || payload >= end {
                    return Err("a magazine slot lies outside the heap");
                }
                // The live bit first: it says a header or a slot is there.
                if !heap.is_live(payload)
                    || !holds(heap, payload, class)
                    || !states.is_cached(payload, class)
                {
                    return Err("a magazine slot is not a cached slot of its class");
                }
                if held[..index].contains(&slot) {
                    return Err("a magazine holds a slot twice");
                }
                if is_block_class(class) {
                    block_bytes += held_size(class);
                } else {
                    slab_bytes += held_size(class);
                }
            }
        }
        if slab_bytes != magazines.slab_bytes
            || block_bytes != magazines.block_bytes
            || magazines.count.iter().map(|&c| c as usize).sum::<usize>() != magazines.slots
        {
            return Err("magazine counters disagree with their slots");
        }
        Ok(magazines.slots)
    })
}

/// The heap's counters with the magazines of `cpus` taken into account:
/// their rounds count as free (slab slots as free slab slots too), not as
/// used or live;
/// their allocations and red-zone violations are added. Exact when no
/// CPU is in the middle of an operation.
pub fn combined_stats<'c>(
    heap: HeapStats,
    cpus: impl IntoIterator<Item = &'c CpuMagazines>,
) -> HeapStats {
    cpus.into_iter().fold(heap, |stats, cpu| {
        let slab_bytes = cpu.slab_bytes.load(Ordering::Relaxed);
        let bytes = slab_bytes + cpu.block_bytes.load(Ordering::Relaxed);
        HeapStats {
            used: stats.used.saturating_sub(bytes),
            free: stats.free + bytes,
            slab_free: stats.slab_free + slab_bytes,
            live_allocations: stats
                .live_allocations
                .saturating_sub(cpu.slots.load(Ordering::Relaxed)),
            total_allocations: stats.total_allocations + cpu.allocations.load(Ordering::Relaxed),
            red_zone_violations: stats.red_zone_violations + cpu.violations.load(Ordering::Relaxed),
            ..stats
        }
    })
}

#[cfg(test)]
mod tests;
