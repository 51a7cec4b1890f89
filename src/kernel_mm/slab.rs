//! The kernel's object caches: `mm::slab::SlabCache`s whose slabs come
//! from the PMM through the direct map, each behind its own `IrqMutex`, in
//! a registry of [`MAX_CACHES`] slots that `slabinfo` lists.
//!
//! [`ObjectCache`] is the typed API (`CacheBox<T>` frees on drop); the C
//! `kmem_cache_*` functions (src/cabi.rs) use the raw one here, whose
//! handles ([`CacheId`]) carry the slot's generation so a handle to a
//! destroyed cache is refused even after its slot is reused.
//!
//! Each CPU's record holds a magazine per registry slot
//! (`mm::slab::magazine`): the common alloc and free of an object take no
//! lock. A slab's frames carry its slot's tag in the frame metadata while
//! it is a slab, which is how a lock-free free finds its cache; a slab
//! that goes back is untagged, then every CPU's magazine of that slot is
//! waited out (the retire protocol, docs/slab.md).
//!
//! Lock order: a cache's lock, then a magazine's busy flag (held only for
//! a few instructions that wait for nothing), then the heap's lock (a
//! constructor may `kmalloc`), then the VMM's and the PMM's (slabs come
//! and go with the cache's lock held). No two cache locks are ever held
//! at once (the wrong-cache check of a refused free takes the others one
//! at a time), and nothing below takes a cache lock, so a constructor
//! must not use an object cache.

mod typed;

pub use typed::{CacheBox, ObjectCache};

use core::fmt;
use core::num::NonZeroU32;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayString;
use x86_64::instructions::interrupts;
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::{frame_meta, phys_to_virt, pmm, reclaim};
use crate::arch::x86_64::smp;
use crate::sync::IrqMutex;
use mm::layout::DIRECT_MAP_OFFSET;
use mm::pmm::Mobility;
use mm::slab::magazine::{self, Key, Magazine, SlabTags};
use mm::slab::{CacheStats, CacheTotals, Constructor, SlabCache, SlabPages, NAME_BYTES};
use mm::MmError;

/// Caches the registry holds at once.
pub const MAX_CACHES: usize = 32;

/// Slabs from the PMM: unmovable blocks, reached through the direct map,
/// for the cache in one registry slot; its slabs' frames carry the slot's
/// tag while they are slabs.
pub struct PmmPages {
    slot: usize,
}

impl PmmPages {
    /// The tag of the slot's slabs (never 0).
    fn tag(&self) -> NonZeroU32 {
        tag_of_slot(self.slot)
    }

    /// The frame metadata of every frame of a block, if the table is up.
    fn frames(
        block: NonNull<u8>,
        order: u32,
    ) -> impl Iterator<Item = &'static mm::pmm::meta::FrameMeta> {
        let first = PhysAddr::new(block.as_ptr().addr() as u64 - DIRECT_MAP_OFFSET);
        let first = PhysFrame::<x86_64::structures::paging::Size4KiB>::containing_address(first);
        frame_meta::table().into_iter().flat_map(move |table| {
            (0..1u64 << order).filter_map(move |page| table.get(first + page))
        })
    }
}

/// The tag of registry slot `slot`'s slabs.
fn tag_of_slot(slot: usize) -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(slot as u32)
}

/// Every CPU's magazine for registry slot `slot`.
fn magazines_of(slot: usize) -> impl Iterator<Item = &'static Magazine> {
    (0..smp::MAX_CPUS)
        .filter_map(smp::cpu)
        .filter_map(move |cpu| cpu.slab_magazines.get(slot))
}

/// Where a lock-free free looks up its slab: the frame metadata.
struct FrameTags;

// SAFETY: a frame carries a tag only between `PmmPages::publish` (after
// the slab's header is written) and `PmmPages::retire`, which untags with
// SeqCst stores and then waits out every CPU's magazine of the slot
// (`magazine::quiesce`) before the frames go back to the PMM;
// `FrameMeta::slab_tag` loads with SeqCst.
unsafe impl SlabTags for FrameTags {
    fn tag_of(&self, address: usize) -> Option<NonZeroU32> {
        let physical = PhysAddr::try_new((address as u64).checked_sub(DIRECT_MAP_OFFSET)?).ok()?;
        frame_meta::table()?
            .get(PhysFrame::containing_address(physical))?
            .slab_tag()
    }
}

// SAFETY: the PMM hands out each block once until it is freed; a block is
// RAM, mapped writable by the direct map, and aligned to its size (buddy
// blocks are naturally aligned, and the direct map's offset is a multiple
// of every block size).
unsafe impl SlabPages for PmmPages {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        let take = || pmm::alloc_order(order, Mobility::Unmovable).ok();
        // Out of frames: the heap gives back what it can (its lock comes
        // after the cache's this runs under), then once more.
        let block = take().or_else(|| {
            (reclaim::frames_short(1 << order) && reclaim::heap_only() > 0)
                .then(take)
                .flatten()
        })?;
        let address = phys_to_virt(block.start_address()).as_u64() as usize;
        // The direct map is no Rust allocation: pointers into it come from
        // their address (exposed provenance, as for all mapped memory).
        NonNull::new(ptr::with_exposed_provenance_mut(address))
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        let physical = PhysAddr::new(block.as_ptr().addr() as u64 - DIRECT_MAP_OFFSET);
        // A refusal would be a bug in the cache; free_order logs it.
        let _ = pmm::free_order(physical, order);
    }

    fn publish(&mut self, block: NonNull<u8>, order: u32) {
        let tag = self.tag();
        Self::frames(block, order).for_each(|meta| meta.tag_slab(tag));
    }

    fn retire(&mut self, block: NonNull<u8>, order: u32) {
        Self::frames(block, order).for_each(mm::pmm::meta::FrameMeta::untag_slab);
        magazine::quiesce(magazines_of(self.slot));
    }
}

type Cache = SlabCache<PmmPages>;

/// One registry slot: a cache or none, and how often it was emptied.
struct Slot {
    generation: u32,
    cache: Option<Cache>,
}

static SLOTS: [IrqMutex<Slot>; MAX_CACHES] = [const {
    IrqMutex::new(Slot {
        generation: 0,
        cache: None,
    })
}; MAX_CACHES];

/// Frees the caches refused (double, foreign, interior, wrong-cache
/// pointers), for the test runner's error accounting.
static REFUSED_FREES: AtomicU64 = AtomicU64::new(0);

/// How many frees the object caches have refused since boot.
pub fn refused_frees() -> u64 {
    REFUSED_FREES.load(Ordering::Relaxed)
}

/// A handle to a registered cache: its slot and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheId {
    slot: u8,
    generation: u32,
}

impl CacheId {
    /// The magazines' name for the cache.
    fn key(self) -> Key {
        Key {
            tag: tag_of_slot(self.slot as usize),
            generation: self.generation,
        }
    }

    /// The handle as one non-zero word (for an atomic).
    fn pack(self) -> u64 {
        (u64::from(self.generation) << 8 | u64::from(self.slot)) + 1
    }

    /// The handle `pack` made (`None` for 0).
    fn unpack(word: u64) -> Option<CacheId> {
        let word = word.checked_sub(1)?;
        Some(CacheId {
            slot: word as u8,
            generation: (word >> 8) as u32,
        })
    }
}

/// What [`destroy`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestroyRefused {
    /// `CacheInUse`, or `NoSuchCache` for a stale handle.
    pub error: MmError,
    /// Objects still in use (0 for a stale handle).
    pub in_use: usize,
}

impl fmt::Display for DestroyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error {
            MmError::CacheInUse => write!(
                f,
                "{} object{} still in use",
                self.in_use,
                if self.in_use == 1 { "" } else { "s" }
            ),
            error => write!(f, "{error}"),
        }
    }
}

/// A cache's name and figures, copied out under its lock.
#[derive(Clone, Copy, Debug)]
pub struct CacheInfo {
    /// Its handle.
    pub id: CacheId,
    /// Its name.
    pub name: ArrayString<NAME_BYTES>,
    /// Whether a constructor runs on new slabs.
    pub constructor: bool,
    /// Counters and layout.
    pub stats: CacheStats,
}

/// A cache of objects of `size` bytes aligned to `align` (0: 8), named
/// `name` (cut to 32 bytes): `InvalidArgument` for a bad size or
/// alignment, `TooManyCaches` when the registry is full.
pub fn create(name: &str, size: usize, align: usize) -> Result<CacheId, MmError> {
    register(|slot| Cache::new(name, size, align, PmmPages { slot }))
}

/// As [`create`], with `constructor` run on every object of each new slab.
///
/// # Safety
/// As for `SlabCache::with_constructor`: `constructor` must be sound to
/// call on `size` writable, aligned bytes nothing else uses, with the
/// cache's lock held and interrupts off, and must not use object caches.
pub unsafe fn create_with_constructor(
    name: &str,
    size: usize,
    align: usize,
    constructor: Constructor,
) -> Result<CacheId, MmError> {
    register(|slot| {
        // SAFETY: the caller's contract.
        unsafe { Cache::with_constructor(name, size, align, constructor, PmmPages { slot }) }
    })
}

/// Puts the cache `make` makes for a free slot into it.
fn register(make: impl FnOnce(usize) -> Result<Cache, MmError>) -> Result<CacheId, MmError> {
    for (index, slot) in SLOTS.iter().enumerate() {
        let mut slot = slot.lock();
        if slot.cache.is_none() {
            slot.cache = Some(make(index)?);
            return Ok(CacheId {
                slot: index as u8,
                generation: slot.generation,
            });
        }
    }
    Err(MmError::TooManyCaches)
}

/// Runs `f` on the cache `id` names, under its lock.
fn with<R>(id: CacheId, f: impl FnOnce(&mut Cache) -> R) -> Result<R, MmError> {
    let mut slot = SLOTS
        .get(id.slot as usize)
        .ok_or(MmError::NoSuchCache)?
        .lock();
    if slot.generation != id.generation {
        return Err(MmError::NoSuchCache);
    }
    slot.cache.as_mut().map(f).ok_or(MmError::NoSuchCache)
}

/// Runs `f` with this CPU's magazine for cache `id`, interrupts off;
/// `None` without a per-CPU record.
#[inline]
fn with_magazine<R>(id: CacheId, f: impl FnOnce(&Magazine) -> R) -> Option<R> {
    interrupts::without_interrupts(|| {
        let magazine = smp::current()?.slab_magazines.get(id.slot as usize)?;
        Some(f(magazine))
    })
}

/// Runs `f` on cache `id` under its lock, with this CPU's magazine
/// (`None` without a per-CPU record: early boot).
fn with_locked<R>(
    id: CacheId,
    f: impl FnOnce(&mut Cache, Option<&Magazine>) -> R,
) -> Result<R, MmError> {
    with(id, |cache| {
        // Interrupts are off under the cache's lock: this CPU stays.
        let magazine = smp::current().and_then(|cpu| cpu.slab_magazines.get(id.slot as usize));
        f(cache, magazine)
    })
}

/// Moves every CPU's magazine of cache `id` back into it (before it
/// shrinks, is verified or destroyed; `close` for the last).
fn drain_all(cache: &mut Cache, id: CacheId, close: bool) {
    for magazine in magazines_of(id.slot as usize) {
        // SAFETY: `id`'s key names this cache alone (its slot and
        // generation; `destroy` drains and closes every magazine of it
        // before the slot's generation moves on).
        unsafe { magazine::drain(cache, magazine, id.key(), close) };
    }
}

/// An object of the cache (constructed, if it has a constructor): from
/// this CPU's magazine without a lock, else from the cache under its lock.
pub fn alloc(id: CacheId) -> Result<NonNull<u8>, MmError> {
    if let Some(object) = with_magazine(id, |mine| mine.try_alloc(id.key())).flatten() {
        return Ok(object);
    }
    with_locked(id, |cache, mine| match mine {
        // SAFETY: as in `drain_all`.
        Some(mine) => unsafe {
            magazine::alloc_locked(cache, mine, id.key(), magazines_of(id.slot as usize))
        },
        None => cache.alloc(),
    })?
}

/// Returns `object` to cache `id`. Refused, nothing changed: `NotInCache`,
/// `NotAtObject`, `DoubleFree` (see `SlabCache::free`), `WrongCache` if
/// another registered cache holds it, `NoSuchCache` for a stale handle.
/// The caller reports a refusal (the C interface logs it).
///
/// # Safety
/// If `object` is an object of this cache in use, the caller owns it and
/// does not use it afterwards.
pub unsafe fn free(id: CacheId, object: *mut u8) -> Result<(), MmError> {
    // SAFETY: the caller's contract.
    let fast = with_magazine(id, |mine| unsafe {
        mine.try_free(&FrameTags, id.key(), object)
    });
    if fast == Some(true) {
        return Ok(());
    }
    let mut result = with_locked(id, |cache, mine| match mine {
        // SAFETY: the caller's contract; the key as in `drain_all`.
        Some(mine) => unsafe { magazine::free_locked(cache, mine, id.key(), object) },
        // SAFETY: the caller's contract.
        None => unsafe { cache.free(object) },
    })
    .and_then(|freed| freed);
    if result == Err(MmError::NotInCache) && owner_other_than(id, object).is_some() {
        result = Err(MmError::WrongCache);
    }
    if result.is_err() {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// The registered cache other than `id` whose slabs hold `pointer`. Takes
/// each cache's lock in turn, never two at once.
fn owner_other_than(id: CacheId, pointer: *const u8) -> Option<CacheId> {
    SLOTS.iter().enumerate().find_map(|(index, slot)| {
        let slot = slot.lock();
        let other = CacheId {
            slot: index as u8,
            generation: slot.generation,
        };
        let owns = other != id && slot.cache.as_ref()?.owns(pointer);
        owns.then_some(other)
    })
}

/// Destroys cache `id`: its slabs go back to the PMM and its slot is free
/// for another. Refused, nothing changed, while objects are in use (the
/// count comes with the refusal) or for a stale handle.
pub fn destroy(id: CacheId) -> Result<(), DestroyRefused> {
    let stale = DestroyRefused {
        error: MmError::NoSuchCache,
        in_use: 0,
    };
    let mut slot = SLOTS.get(id.slot as usize).ok_or(stale)?.lock();
    if slot.generation != id.generation {
        return Err(stale);
    }
    let cache = slot.cache.as_mut().ok_or(stale)?;
    // Closed: no magazine serves the cache until a call reopens one.
    drain_all(cache, id, true);
    let in_use = cache.stats().in_use;
    if cache.release_all().is_err() {
        return Err(DestroyRefused {
            error: MmError::CacheInUse,
            in_use,
        });
    }
    slot.cache = None;
    slot.generation = slot.generation.wrapping_add(1);
    Ok(())
}

/// Whether `pointer` lies in a frame tagged as a slab's (the lookup a
/// lock-free free makes; for tests and diagnostics).
pub fn is_tagged(pointer: *const u8) -> bool {
    FrameTags.tag_of(pointer.addr()).is_some()
}

/// Name and figures of cache `id`.
pub fn info(id: CacheId) -> Result<CacheInfo, MmError> {
    with(id, |cache| CacheInfo {
        id,
        name: ArrayString::from(cache.name()).unwrap_or_default(),
        constructor: cache.has_constructor(),
        stats: magazine::combined_stats(cache.stats(), id.key(), magazines_of(id.slot as usize)),
    })
}

/// Calls `visit` with every registered cache, in slot order; each is
/// copied under its lock and visited after the lock is released.
pub fn for_each(mut visit: impl FnMut(&CacheInfo)) {
    for (index, slot) in SLOTS.iter().enumerate() {
        let id = {
            let slot = slot.lock();
            CacheId {
                slot: index as u8,
                generation: slot.generation,
            }
        };
        if let Ok(info) = info(id) {
            visit(&info);
        }
    }
}

/// Figures summed over every cache.
pub fn totals() -> CacheTotals {
    let mut totals = CacheTotals::default();
    for_each(|info| totals.add(&info.stats));
    totals
}

/// The first registered cache named `name`.
pub fn find(name: &str) -> Option<CacheId> {
    let mut found = None;
    for_each(|info| {
        if found.is_none() && info.name.as_str() == name {
            found = Some(info.id);
        }
    });
    found
}

/// Checks cache `id`'s consistency (`SlabCache::verify`; the magazines
/// keep their objects).
pub fn verify(id: CacheId) -> Result<(), &'static str> {
    with(id, |cache| cache.verify()).unwrap_or(Err("no such cache"))
}

/// Gives the empty slabs of cache `id` back to the PMM, the reserve
/// included, after every CPU's magazine gave its objects back; returns
/// the pages given back.
pub fn shrink(id: CacheId) -> Result<usize, MmError> {
    with(id, |cache| {
        drain_all(cache, id, false);
        cache.shrink()
    })
}

/// Drains every CPU's magazines of the cache in `slot` and shrinks it.
fn drain_and_shrink(index: usize, slot: &mut Slot) -> Option<usize> {
    let id = CacheId {
        slot: index as u8,
        generation: slot.generation,
    };
    let cache = slot.cache.as_mut()?;
    drain_all(cache, id, false);
    Some(cache.shrink())
}

/// Gives back the empty slabs of every cache whose lock is free now, never
/// waiting for one: for memory pressure under another lock (the heap's,
/// the VMM's), which comes after the caches' in the lock order, so that
/// waiting could deadlock. A cache this CPU holds is skipped. Returns the
/// pages given back.
pub fn try_shrink_all() -> usize {
    SLOTS
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| drain_and_shrink(index, &mut *slot.try_lock()?))
        .sum()
}

/// Gives every cache's empty slabs back (memory pressure), after the
/// magazines gave their objects back; returns the pages given back.
pub fn shrink_all() -> usize {
    SLOTS
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| drain_and_shrink(index, &mut slot.lock()))
        .sum()
}

/// The opaque type behind C's `struct kmem_cache *`: a registry slot.
#[repr(C)]
pub struct KmemCache {
    _opaque: [u8; 0],
}

/// The C handle of cache `id`: its slot's address.
pub fn c_handle(id: CacheId) -> *mut KmemCache {
    ptr::from_ref(&SLOTS[id.slot as usize]).cast_mut().cast()
}

/// The cache a C handle names now: `None` unless it is a slot's address
/// and the slot holds a cache. Reads nothing through the handle.
pub fn from_c_handle(handle: *const KmemCache) -> Option<CacheId> {
    let first = SLOTS.as_ptr().addr();
    let offset = handle.addr().checked_sub(first)?;
    let size = core::mem::size_of::<IrqMutex<Slot>>();
    let index = offset / size;
    if !offset.is_multiple_of(size) || index >= MAX_CACHES {
        return None;
    }
    let slot = SLOTS[index].lock();
    slot.cache.as_ref()?;
    Some(CacheId {
        slot: index as u8,
        generation: slot.generation,
    })
}
