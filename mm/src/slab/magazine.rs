//! Per-CPU magazines in front of an object cache: a short LIFO of free
//! objects per CPU per cache, so the common allocation and free take no
//! lock (Bonwick's magazine layer, without a depot: the slabs' partial
//! list plays its part). Refills and flushes move a [`BATCH`] under the
//! cache's lock.
//!
//! An object in a magazine is held by its slab (not free there) and not
//! live, so both frees of a double free cannot succeed: each free clears
//! the object's live bit in its slab header with one atomic
//! `fetch_and`, and only the one that found it set goes on.
//!
//! A lock-free free must find the object's slab without the cache's index
//! (which moves under the lock). It asks the page source's [`SlabTags`]
//! (the kernel: the frame metadata of the object's frame), which says
//! "a slab of the cache tagged `t`" for every frame of a published slab.
//! Then it reads the slab's header. The *retire protocol* keeps that read
//! safe when a slab goes back to the page source at the same time:
//!
//! ```text
//! lock-free free (holds its magazine's busy flag)   retire (cache lock held)
//! busy.swap(true)          SeqCst                  untag every frame  SeqCst
//! tag == t ?               SeqCst load             for every magazine:
//! header's live word: fetch_and                        wait for busy == false
//! busy.store(false)                                 free the frames
//! ```
//!
//! Either the free's tag load comes after the untag in the single order of
//! SeqCst operations (it sees no tag and takes the locked path), or its
//! busy swap comes before retire's look at the flag (retire waits for it).
//! A busy flag is held only for a handful of instructions that wait for
//! nothing, and the paths under the cache's lock take a magazine's flag
//! only after the lock and drop it before any slab can be released: lock
//! order "cache lock, then a magazine's flag", and no waiting while a flag
//! is held, so retire's wait always ends.
//!
//! A magazine is opened for one cache ([`Key`]: the cache's tag and its
//! registry generation) by the locked paths, and closed, empty, when the
//! cache is destroyed; a call with a stale key never matches it.

use core::cell::UnsafeCell;
use core::num::NonZeroU32;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::cache::{Home, SlabCache};
use super::geometry::Geometry;
use super::header::{self, SlabHeader};
use super::pages::SlabPages;
use super::stats::CacheStats;
use crate::MmError;

/// Objects one magazine holds at most (of small objects).
pub const ROUNDS: usize = 32;
/// Objects a refill brings and a flush takes back at most.
pub const BATCH: usize = 16;
/// Bytes of objects (strides) one magazine holds at most: larger objects
/// get fewer rounds (Bonwick sizes magazines by object size too), so a
/// cache of 8 KiB objects does not keep 256 KiB per CPU.
pub const MAGAZINE_BYTES: usize = 16 * 1024;
/// Rounds even the largest objects get.
const MIN_ROUNDS: usize = 2;

const _: () = assert!(BATCH <= ROUNDS && 2 * BATCH == ROUNDS);

/// The rounds a magazine of objects of `stride` bytes holds, and its
/// batch (half of them).
pub const fn rounds_for(stride: usize) -> (usize, usize) {
    let rounds = match MAGAZINE_BYTES / stride {
        n if n > ROUNDS => ROUNDS,
        n if n < MIN_ROUNDS => MIN_ROUNDS,
        n => n,
    };
    (rounds, rounds / 2)
}

/// Which cache a magazine serves: the tag its slabs' frames carry, and
/// the generation of the registry slot (so a destroyed cache's handle
/// never matches a magazine of its successor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Non-zero; the same for every generation of a slot.
    pub tag: NonZeroU32,
    /// The slot's generation.
    pub generation: u32,
}

impl Key {
    /// The key as one non-zero word (for the published copy).
    fn pack(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.tag.get())
    }
}

/// Where a lock-free free learns which cache's slab an address lies in.
///
/// # Safety
/// `tag_of(address)` returns `Some(t)` only while `address` lies in a
/// slab a page source published for the cache tagged `t` (its header and
/// bitmaps written) and did not retire; it reads the tag with a SeqCst
/// load, and the page source's `retire` removes the tag with a SeqCst
/// store and then calls [`quiesce`] over every magazine of that cache
/// before the slab's memory is reused.
pub unsafe trait SlabTags {
    /// The tag of the published slab holding `address`, if any.
    fn tag_of(&self, address: usize) -> Option<NonZeroU32>;
}

/// What the lock-free paths need of a cache's geometry.
#[derive(Clone, Copy, Debug)]
struct Shape {
    slab_mask: usize,
    header_offset: usize,
    stride: u32,
    objects: u32,
    words: u32,
    /// Rounds for this object size (`rounds_for`).
    rounds: u8,
}

impl Shape {
    fn of(g: Geometry) -> Shape {
        Shape {
            slab_mask: g.slab_bytes() - 1,
            header_offset: g.header_offset,
            stride: g.stride as u32,
            objects: g.objects as u32,
            words: g.bitmap_words as u32,
            rounds: rounds_for(g.stride).0 as u8,
        }
    }

    /// The header of the slab `address` would lie in, and the object
    /// index, if `address` is an object's first byte in that layout.
    #[inline(always)]
    fn locate(&self, address: usize) -> Option<(*const SlabHeader, usize)> {
        let base = address & !self.slab_mask;
        let offset = (address - base) as u32;
        let index = offset / self.stride;
        if !offset.is_multiple_of(self.stride) || index >= self.objects {
            return None;
        }
        let header = ptr::with_exposed_provenance::<SlabHeader>(base + self.header_offset);
        Some((header, index as usize))
    }

    /// The live word and bit of object `index` of the slab at `header`.
    ///
    /// # Safety
    /// `header` heads a slab of this shape that stays live while the
    /// reference does.
    #[inline(always)]
    unsafe fn live_bit<'a>(&self, header: *const SlabHeader, index: usize) -> (&'a AtomicU64, u64) {
        // SAFETY: the caller's contract.
        let live = unsafe { header::live(header, self.words as usize) };
        header::live_bit(live, index)
    }
}

/// A magazine's contents, reached only by the holder of its busy flag.
struct Rounds {
    /// The cache it serves or last served (the counters are its).
    key: Option<Key>,
    /// Its shape while open (`None`: closed, empty).
    shape: Option<Shape>,
    count: usize,
    objects: [*mut u8; ROUNDS],
    allocations: u64,
    frees: u64,
}

impl Rounds {
    /// Opens the magazine for `key` if it is closed (then it is empty);
    /// whether it serves `key` now.
    fn open_for(&mut self, key: Key, geometry: Geometry) -> bool {
        if self.shape.is_some() {
            return self.key == Some(key);
        }
        debug_assert_eq!(self.count, 0);
        if self.key != Some(key) {
            // Another cache's counters: start this one's.
            *self = Rounds::CLOSED;
            self.key = Some(key);
        }
        self.shape = Some(Shape::of(geometry));
        true
    }

    const CLOSED: Rounds = Rounds {
        key: None,
        shape: None,
        count: 0,
        objects: [ptr::null_mut(); ROUNDS],
        allocations: 0,
        frees: 0,
    };

    /// The shape, if the magazine serves `key`.
    #[inline(always)]
    fn shape_for(&self, key: Key) -> Option<Shape> {
        if self.key == Some(key) {
            self.shape
        } else {
            None
        }
    }

    /// Moves the oldest `count` objects (at most all) to `out`, keeping
    /// the newest (cache-warm) ones; returns how many moved.
    fn take_oldest(&mut self, count: usize, out: &mut [*mut u8]) -> usize {
        let count = count.min(self.count).min(out.len());
        out[..count].copy_from_slice(&self.objects[..count]);
        self.objects.copy_within(count..self.count, 0);
        self.count -= count;
        count
    }
}

/// One CPU's magazine for one cache, on a cache line of its own (its flag
/// and counters are written on every operation).
#[repr(align(64))]
pub struct Magazine {
    /// Held by whoever works on `rounds`: the owning CPU for each
    /// operation, or a locked path of the cache it serves.
    busy: AtomicBool,
    /// Set by a locked path waiting for `busy`: the lock-free paths step
    /// aside (take the locked path) until it has had its turn, so a CPU
    /// running calls back to back cannot starve it.
    wanted: AtomicBool,
    /// How many times a holder let go of `busy` (written by the holder
    /// alone): `quiesce` waits for the section it saw to end, not for a
    /// moment with no section.
    exits: AtomicU64,
    rounds: UnsafeCell<Rounds>,
    /// The base of its home slab (`SlabCache`'s `Home`), read and written
    /// only under the cache's lock.
    home: AtomicUsize,
    /// Published at the end of each operation, for [`combined_stats`].
    key: AtomicU64,
    count: AtomicUsize,
    allocations: AtomicU64,
    frees: AtomicU64,
}

// SAFETY: `rounds` is reached only inside `take` (behind `enter` and
// `enter_waiting`), by the one caller that swapped `busy` from false to
// true, so no two references to it exist at once; its pointers are
// objects held by slabs of the cache it serves, which nobody else uses
// while they are held. Everything else is atomic.
unsafe impl Sync for Magazine {}
// SAFETY: as above: the objects belong to the cache, not to a thread.
unsafe impl Send for Magazine {}

impl Magazine {
    /// A closed, empty magazine.
    pub const fn new() -> Self {
        Self {
            busy: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            exits: AtomicU64::new(0),
            rounds: UnsafeCell::new(Rounds::CLOSED),
            home: AtomicUsize::new(0),
            key: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }

    /// For the lock-free paths: runs `f` on the rounds unless someone
    /// holds or wants them (then `None`).
    #[inline(always)]
    fn enter<R>(&self, f: impl FnOnce(&mut Rounds) -> R) -> Option<R> {
        if self.wanted.load(Ordering::Relaxed) {
            return None;
        }
        self.take(f)
    }

    /// Runs `f` on the rounds if the flag is free, and publishes the
    /// counters. SeqCst on the swap: the retire protocol (module doc).
    #[inline(always)]
    fn take<R>(&self, f: impl FnOnce(&mut Rounds) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return None;
        }
        // SAFETY: `busy` was clear and is now ours: the only reference to
        // the rounds (see the Sync impl).
        let rounds = unsafe { &mut *self.rounds.get() };
        let result = f(rounds);
        self.publish(rounds);
        // Only the holder writes it: no read-modify-write needed.
        let exits = self.exits.load(Ordering::Relaxed);
        self.exits.store(exits + 1, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        Some(result)
    }

    /// As [`take`](Self::take), waiting for the flag: only for the paths
    /// under the cache's lock (the holder waits for nothing, and sees
    /// `wanted` at its next call).
    fn enter_waiting<R>(&self, f: impl FnOnce(&mut Rounds) -> R) -> R {
        self.wanted.store(true, Ordering::Relaxed);
        let mut f = Some(f);
        loop {
            if let Some(result) = self.take(|rounds| (f.take().expect("runs once"))(rounds)) {
                self.wanted.store(false, Ordering::Relaxed);
                return result;
            }
            core::hint::spin_loop();
        }
    }

    #[inline(always)]
    fn publish(&self, rounds: &Rounds) {
        let key = rounds.key.map_or(0, Key::pack);
        self.key.store(key, Ordering::Relaxed);
        self.count.store(rounds.count, Ordering::Relaxed);
        self.allocations
            .store(rounds.allocations, Ordering::Relaxed);
        self.frees.store(rounds.frees, Ordering::Relaxed);
    }

    /// The lock-free allocation: the newest object, made live, if the
    /// magazine serves `key`, holds one and is not busy; else `None` (the
    /// caller takes [`alloc_locked`]).
    #[inline]
    pub fn try_alloc(&self, key: Key) -> Option<NonNull<u8>> {
        self.enter(|rounds| {
            let shape = rounds.shape_for(key)?;
            rounds.count = rounds.count.checked_sub(1)?;
            let object = rounds.objects[rounds.count];
            let (header, index) = shape.locate(object.addr())?;
            // SAFETY: the object is held by its slab while in the
            // magazine, so the slab is live; it is ours now.
            let (word, bit) = unsafe { shape.live_bit(header, index) };
            word.fetch_or(bit, Ordering::Relaxed);
            rounds.allocations += 1;
            NonNull::new(object)
        })
        .flatten()
    }

    /// The lock-free free: pushes `object` if the magazine serves `key`
    /// and has room, `tags` places it in a slab of that cache at an
    /// object's first byte, and it was live (this call cleared its live
    /// bit). `false` (nothing changed) otherwise: the caller takes
    /// [`free_locked`], which decides and reports.
    ///
    /// # Safety
    /// If `object` is a live object of the cache, the caller owns it and
    /// does not use it afterwards.
    #[inline]
    pub unsafe fn try_free(&self, tags: &impl SlabTags, key: Key, object: *mut u8) -> bool {
        self.enter(|rounds| {
            let Some(shape) = rounds.shape_for(key) else {
                return false;
            };
            if rounds.count >= shape.rounds as usize || tags.tag_of(object.addr()) != Some(key.tag)
            {
                return false;
            }
            let Some((header, index)) = shape.locate(object.addr()) else {
                return false;
            };
            // SAFETY: the tag says a published slab of this cache holds
            // the address, and it stays so while we hold `busy` (the
            // retire protocol, `SlabTags`' contract).
            let (word, bit) = unsafe { shape.live_bit(header, index) };
            if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
                return false;
            }
            rounds.objects[rounds.count] = object;
            rounds.count += 1;
            rounds.frees += 1;
            true
        })
        .unwrap_or(false)
    }

    /// Its home slab, as the cache (under its lock) sees it; its owner is
    /// the magazine's address.
    fn home(&self) -> Home {
        Home {
            owner: ptr::from_ref(self).addr(),
            base: self.home.load(Ordering::Relaxed),
        }
    }

    fn set_home(&self, home: Home) {
        self.home.store(home.base, Ordering::Relaxed);
    }

    /// Objects held now, as last published, if it serves or served `key`.
    pub fn cached(&self, key: Key) -> usize {
        if self.key.load(Ordering::Relaxed) == key.pack() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

impl Default for Magazine {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits until no operation that held any of `magazines` when this was
/// called still holds it (the retire protocol's wait; the page source
/// calls it after untagging). It waits for that section to end, seen by
/// the flag coming free or the exit count moving, so a CPU that takes the
/// flag again at once cannot starve it.
pub fn quiesce<'m>(magazines: impl IntoIterator<Item = &'m Magazine>) {
    for magazine in magazines {
        if !magazine.busy.load(Ordering::SeqCst) {
            continue;
        }
        // The count of the section seen (or of a later one: then this
        // waits for that one too, which is merely longer).
        let seen = magazine.exits.load(Ordering::Acquire);
        while magazine.busy.load(Ordering::Acquire)
            && magazine.exits.load(Ordering::Acquire) == seen
        {
            core::hint::spin_loop();
        }
    }
}

/// The allocation a magazine could not serve, under the cache's lock: an
/// object from the cache, and a batch into `mine` (this CPU's magazine
/// for the cache `key` names) so the next ones need no lock. If the cache
/// has no object and no page for a slab, the objects waiting in every
/// magazine of `all` go back to it first, and it fails only if none did.
///
/// # Safety
/// `key` names `cache` alone: every call with `key` on these magazines
/// (this one, [`free_locked`], [`drain`]) passes this cache, and the
/// cache outlives the objects its magazines hold (they are drained before
/// it goes). The lock-free paths rest on that.
pub unsafe fn alloc_locked<'m, P: SlabPages>(
    cache: &mut SlabCache<P>,
    mine: &Magazine,
    key: Key,
    all: impl IntoIterator<Item = &'m Magazine>,
) -> Result<NonNull<u8>, MmError> {
    let mut home = mine.home();
    let object = match cache.alloc_at(Some(&mut home)) {
        Ok(object) => object,
        Err(error) => {
            let drained: usize = all
                .into_iter()
                // SAFETY: the caller's contract.
                .map(|magazine| unsafe { drain(cache, magazine, key, false) })
                .sum();
            if drained == 0 {
                return Err(error);
            }
            // Not a failure after all.
            cache.forget_failure();
            let object = cache.alloc_at(Some(&mut home));
            mine.set_home(home);
            return object;
        }
    };
    let geometry = cache.geometry();
    let mut batch = [ptr::null_mut(); BATCH];
    let (limit, each) = rounds_for(geometry.stride);
    let room = mine.enter_waiting(|rounds| {
        if rounds.open_for(key, geometry) {
            limit.saturating_sub(rounds.count).min(each)
        } else {
            0
        }
    });
    let taken = cache.take_batch(&mut home, &mut batch[..room]);
    mine.set_home(home);
    let pushed = mine.enter_waiting(|rounds| {
        // Only this CPU adds to its magazine, and it is here: the room is
        // still there, unless a drain closed the magazine meanwhile.
        if rounds.shape_for(key).is_none() {
            return 0;
        }
        let count = taken.min(limit.saturating_sub(rounds.count));
        rounds.objects[rounds.count..rounds.count + count].copy_from_slice(&batch[..count]);
        rounds.count += count;
        count
    });
    // SAFETY: taken above, in no magazine.
    unsafe { cache.return_batch(&batch[pushed..taken]) };
    Ok(object)
}

/// The free a magazine could not take, under the cache's lock: the cache
/// frees it (or refuses it, with its error), and a full `mine` gives back
/// its oldest batch so the next frees need no lock.
///
/// # Safety
/// As for `SlabCache::free`, and as for [`alloc_locked`].
pub unsafe fn free_locked<P: SlabPages>(
    cache: &mut SlabCache<P>,
    mine: &Magazine,
    key: Key,
    object: *mut u8,
) -> Result<(), MmError> {
    // SAFETY: the caller's contract.
    let result = unsafe { cache.free(object) };
    let geometry = cache.geometry();
    let mut flushed = [ptr::null_mut(); BATCH];
    let (limit, each) = rounds_for(geometry.stride);
    let count = mine.enter_waiting(|rounds| {
        if rounds.open_for(key, geometry) && rounds.count >= limit {
            rounds.take_oldest(each, &mut flushed)
        } else {
            0
        }
    });
    // SAFETY: objects of `cache` (the caller's contract), out of the
    // magazine now.
    unsafe { cache.return_batch(&flushed[..count]) };
    result
}

/// Under the cache's lock: moves every object of `magazine` (any CPU's)
/// that serves `key` back to the cache, and closes it if `close` (the
/// cache is going away); returns how many came back.
///
/// # Safety
/// As for [`alloc_locked`].
pub unsafe fn drain<P: SlabPages>(
    cache: &mut SlabCache<P>,
    magazine: &Magazine,
    key: Key,
    close: bool,
) -> usize {
    let mut held = [ptr::null_mut(); ROUNDS];
    let count = magazine.enter_waiting(|rounds| {
        if rounds.shape_for(key).is_none() {
            return 0;
        }
        let count = rounds.take_oldest(ROUNDS, &mut held);
        if close {
            rounds.shape = None;
        }
        count
    });
    // SAFETY: objects of `cache` (the caller's contract), out of the
    // magazine now.
    unsafe { cache.return_batch(&held[..count]) };
    count
}

/// A cache's figures with what its magazines (every CPU's for `key`)
/// hold and handed out: exact when nothing runs meanwhile, a snapshot
/// otherwise.
pub fn combined_stats<'m>(
    mut stats: CacheStats,
    key: Key,
    magazines: impl IntoIterator<Item = &'m Magazine>,
) -> CacheStats {
    let (mut cached, mut allocations, mut frees) = (0, 0, 0);
    for magazine in magazines {
        if magazine.key.load(Ordering::Relaxed) == key.pack() {
            cached += magazine.count.load(Ordering::Relaxed);
            allocations += magazine.allocations.load(Ordering::Relaxed);
            frees += magazine.frees.load(Ordering::Relaxed);
        }
    }
    // Held by the slabs: in use, or waiting in a magazine.
    let cached = cached.min(stats.in_use);
    stats.in_use -= cached;
    stats.in_magazines = cached;
    stats.allocations += allocations;
    stats.frees += frees;
    stats.magazine_allocations = allocations;
    stats.magazine_frees = frees;
    stats
}

#[cfg(test)]
mod tests;
