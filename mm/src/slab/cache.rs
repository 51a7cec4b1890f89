//! [`SlabCache`]: a named cache of equal objects on slabs from a page
//! source (the algorithm; see the module docs and docs/slab.md).

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use arrayvec::ArrayString;

use super::geometry::Geometry;
use super::header::{self, ListKind, SlabHeader};
use super::index::SlabIndex;
use super::pages::SlabPages;
use super::stats::CacheStats;
use crate::MmError;

/// Bytes of a cache's name (longer names are cut at a character boundary).
pub const NAME_BYTES: usize = 32;

/// Empty slabs a cache keeps by default instead of giving them back, so a
/// cache that hovers around a slab boundary does not trade slabs with the
/// page source on every call.
pub const DEFAULT_RESERVE: usize = 1;

/// A constructor, run once on every object when its slab is made
/// (Bonwick's constructed-object caching; Linux's `kmem_cache` ctor). The
/// C ABI so that a C caller's `void (*ctor)(void *)` is one as it is.
pub type Constructor = unsafe extern "C" fn(object: *mut c_void);

/// One of a cache's three slab lists.
#[derive(Clone, Copy)]
struct SlabList {
    head: *mut SlabHeader,
    tail: *mut SlabHeader,
    len: usize,
}

impl SlabList {
    const EMPTY: SlabList = SlabList {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        len: 0,
    };
}

/// A magazine's home slab: the one its refills take from while it has
/// free objects, which other magazines' refills pass over, so CPUs
/// working on their own objects write to different slab headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Home {
    /// Who owns it: the magazine's address (never 0).
    pub owner: usize,
    /// The home slab's base (0: none yet; checked against the index
    /// before use, so a stale one is harmless).
    pub base: usize,
}

/// Counters that only go up.
#[derive(Clone, Copy, Default)]
struct Counters {
    allocations: u64,
    frees: u64,
    /// Objects handed to magazines in batches, and taken back from them.
    to_magazines: u64,
    from_magazines: u64,
    failed: u64,
    refused_frees: u64,
    slabs_created: u64,
    slabs_released: u64,
}

/// A named cache of objects of one size and alignment.
///
/// Its slabs (blocks of 2^order pages from `P`, laid out as
/// [`Geometry`] says) are each in one of three lists: partial, full,
/// empty. Allocation takes the lowest free object of the first partial
/// slab (else of an empty one, else of a new slab); free marks the object
/// free in its slab's bitmap and moves the slab between lists. Empty slabs
/// beyond the reserve go back to `P` at once. Every freed pointer is found
/// in the cache's own index of slabs before any slab memory is read, so a
/// foreign, interior or already free pointer is refused with its own error
/// and changes nothing.
///
/// Objects also leave and come back in batches for per-CPU magazines
/// ([`take_batch`](Self::take_batch), [`return_batch`](Self::return_batch)),
/// each from its magazine's [`Home`] slab: a partial slab with an owner
/// sits at the tail of the partial list, the unowned ones at its head;
/// a slab's owner is cleared when it fills up;
/// the cache counts them held, and the magazine front end
/// (`slab::magazine`) tells the ones waiting in magazines from the ones
/// in use.
pub struct SlabCache<P: SlabPages> {
    name: ArrayString<NAME_BYTES>,
    geometry: Geometry,
    constructor: Option<Constructor>,
    /// Empty slabs kept.
    reserve: usize,
    pages: P,
    index: SlabIndex,
    /// Indexed by `ListKind as usize`.
    lists: [SlabList; 3],
    /// Objects not free in a slab: in use, or out in magazines.
    held: usize,
    counters: Counters,
}

// SAFETY: the cache owns its slabs and index block exclusively (the page
// source's contract); the raw pointers point only into them. Moving the
// cache to another CPU moves that ownership, and `P` along with it.
unsafe impl<P: SlabPages + Send> Send for SlabCache<P> {}

impl<P: SlabPages> SlabCache<P> {
    /// A cache of objects of `size` bytes aligned to `align` (0: 8) named
    /// `name`, with slabs from `pages`; `InvalidArgument` for a size of 0
    /// or above 8 KiB, or an alignment that is not a power of two up to
    /// 4096.
    pub fn new(name: &str, size: usize, align: usize, pages: P) -> Result<Self, MmError> {
        Ok(Self {
            name: truncated(name),
            geometry: Geometry::new(size, align)?,
            constructor: None,
            reserve: DEFAULT_RESERVE,
            pages,
            index: SlabIndex::new(),
            lists: [SlabList::EMPTY; 3],
            held: 0,
            counters: Counters::default(),
        })
    }

    /// As [`new`](Self::new), with `constructor` run on every object of
    /// each new slab.
    ///
    /// # Safety
    /// `constructor` must be sound to call with a pointer to `size` bytes
    /// of writable memory aligned to `align` (which nothing else uses), at
    /// any time this cache allocates, with this cache's lock held (it must
    /// not use this cache).
    pub unsafe fn with_constructor(
        name: &str,
        size: usize,
        align: usize,
        constructor: Constructor,
        pages: P,
    ) -> Result<Self, MmError> {
        let mut cache = Self::new(name, size, align, pages)?;
        cache.constructor = Some(constructor);
        Ok(cache)
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layout of its slabs.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Whether a constructor runs on new slabs.
    pub fn has_constructor(&self) -> bool {
        self.constructor.is_some()
    }

    /// The page source.
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// The page source, to adjust (a test's budget).
    pub fn pages_mut(&mut self) -> &mut P {
        &mut self.pages
    }

    /// Keeps up to `slabs` empty slabs from now on, giving back any beyond.
    pub fn set_reserve(&mut self, slabs: usize) {
        self.reserve = slabs;
        while self.lists[ListKind::Empty as usize].len > self.reserve {
            let header = self.lists[ListKind::Empty as usize].head;
            // SAFETY: the head of the empty list is an empty slab of ours.
            unsafe { self.release(header) };
        }
    }

    /// Counters and layout, as the cache alone knows them: objects held by
    /// magazines count as in use (`magazine::combined_stats` moves them to
    /// `in_magazines` and adds the magazines' own counts).
    pub fn stats(&self) -> CacheStats {
        let g = self.geometry;
        let list = |kind: ListKind| self.lists[kind as usize].len;
        CacheStats {
            object_size: g.size,
            align: g.align,
            stride: g.stride,
            objects_per_slab: g.objects,
            slab_order: g.order,
            in_use: self.held,
            in_magazines: 0,
            total: self.index.len() * g.objects,
            slabs: self.index.len(),
            partial_slabs: list(ListKind::Partial),
            full_slabs: list(ListKind::Full),
            empty_slabs: list(ListKind::Empty),
            index_pages: self.index.pages(),
            allocations: self.counters.allocations,
            frees: self.counters.frees,
            failed: self.counters.failed,
            refused_frees: self.counters.refused_frees,
            slabs_created: self.counters.slabs_created,
            slabs_released: self.counters.slabs_released,
            magazine_allocations: 0,
            magazine_frees: 0,
        }
    }

    /// An object: `geometry().size` bytes aligned to `geometry().align`,
    /// in its constructed state if the cache has a constructor (as its
    /// last user freed it, or fresh from the constructor). `OutOfFrames`
    /// if a new slab was needed and the page source had none (then nothing
    /// changed but the failure count).
    pub fn alloc(&mut self) -> Result<NonNull<u8>, MmError> {
        self.alloc_at(None)
    }

    /// As [`alloc`](Self::alloc), from `home`'s slab if it has a free
    /// object, else from a slab it claims (an unowned partial one, an
    /// empty one, a new one, or another's partial one).
    pub fn alloc_at(&mut self, home: Option<&mut Home>) -> Result<NonNull<u8>, MmError> {
        match self.take(home, true) {
            Ok((object, header, index)) => {
                // SAFETY: `take` just took the object from this live slab.
                let live = unsafe { header::live(header, self.geometry.bitmap_words) };
                let (word, bit) = header::live_bit(live, index);
                word.fetch_or(bit, Ordering::Relaxed);
                self.counters.allocations += 1;
                Ok(object)
            }
            Err(error) => {
                self.counters.failed += 1;
                Err(error)
            }
        }
    }

    /// Takes back the count of the last failed allocation (the caller found
    /// objects in magazines and allocates again).
    pub(super) fn forget_failure(&mut self) {
        self.counters.failed -= 1;
    }

    /// Fills `out` with free objects for the magazine whose home is
    /// `home`, from its home slab, then unowned partial or empty slabs
    /// (never a new slab, nor another magazine's home); returns how many. They are held but not live: neither free nor in use, so a
    /// free of one is refused as a double free until a magazine hands it
    /// out.
    pub fn take_batch(&mut self, home: &mut Home, out: &mut [*mut u8]) -> usize {
        let mut taken = 0;
        while taken < out.len() {
            let Ok(header) = self.pick(Some(home), false) else {
                break;
            };
            // SAFETY: `pick` returns a live slab of ours with a free object.
            let count = unsafe { self.take_from(header, &mut out[taken..]) };
            if count == 0 {
                break;
            }
            taken += count;
        }
        self.counters.to_magazines += taken as u64;
        taken
    }

    /// Takes back objects [`take_batch`](Self::take_batch) gave out, none
    /// of them live (a magazine's, flushed or drained). An object in no
    /// slab of ours, free already or live is left alone (a bug in the
    /// caller: `debug_assert`).
    ///
    /// # Safety
    /// Each object is held by the caller alone since `take_batch` (or a
    /// lock-free free) gave it: in no magazine any more, not returned
    /// since. (Those checks cannot tell one held object from another, so
    /// returning an object that still sits in a magazine would let it be
    /// handed out twice.)
    pub unsafe fn return_batch(&mut self, objects: &[*mut u8]) {
        let g = self.geometry;
        // The last slab found: batches come mostly from one slab, so most
        // objects skip the index search.
        let mut last: Option<(usize, *mut SlabHeader)> = None;
        for &object in objects {
            let base = object.addr() & !(g.slab_bytes() - 1);
            let found = match last {
                Some((known, header)) if known == base => {
                    let offset = object.addr() - base;
                    (offset.is_multiple_of(g.stride) && offset / g.stride < g.objects)
                        .then_some((header, offset / g.stride))
                        .ok_or(MmError::NotAtObject)
                }
                _ => self.locate(object.addr()),
            };
            let Ok((header, index)) = found else {
                debug_assert!(false, "a magazine returned an object of no slab of ours");
                continue;
            };
            // A slab this return released is no longer known.
            last = Some((base, header));
            // SAFETY: `locate` found a live slab of ours.
            let live = unsafe { header::live(header, self.geometry.bitmap_words) };
            let (word, bit) = header::live_bit(live, index);
            // SAFETY: as above; no other reference to the free bitmap.
            let free =
                unsafe { header::bits(header, g.bitmap_words)[index / 64] } & 1 << (index % 64);
            if word.load(Ordering::Relaxed) & bit != 0 || free != 0 {
                debug_assert!(false, "a live or free object returned from a magazine");
                continue;
            }
            // SAFETY: as above; the object is held (not free).
            if unsafe { self.put_back(header, index) } {
                last = None;
            }
            self.counters.from_magazines += 1;
        }
    }

    /// The slab `home` names, if it is ours, still its home and not full.
    fn home_slab(&self, home: &Home) -> Option<*mut SlabHeader> {
        let base = self.index.find(home.base)?;
        let header = self.header_of(base);
        // SAFETY: the index holds it: a live slab of ours.
        let slab = unsafe { &*header };
        (slab.owner == home.owner && slab.list != ListKind::Full as u8).then_some(header)
    }

    /// The slab to take from: `home`'s own; else the first unowned
    /// partial slab, an empty one, or (if `may_grow`) a new one, or if no
    /// page is left another home's (a slab taken for a home becomes it).
    fn pick(
        &mut self,
        home: Option<&mut Home>,
        may_grow: bool,
    ) -> Result<*mut SlabHeader, MmError> {
        if let Some(header) = home.as_deref().and_then(|home| self.home_slab(home)) {
            return Ok(header);
        }
        let partial = self.lists[ListKind::Partial as usize].head;
        let empty = self.lists[ListKind::Empty as usize].head;
        // SAFETY: list heads are live slabs of ours.
        let unowned = !partial.is_null() && unsafe { (*partial).owner } == 0;
        let header = if unowned || (!partial.is_null() && home.is_none()) {
            partial
        } else if !empty.is_null() {
            empty
        } else if may_grow {
            match self.grow() {
                Ok(header) => header,
                // No page for a slab of its own: share another's.
                Err(_) if !partial.is_null() => partial,
                Err(error) => return Err(error),
            }
        } else {
            // A batch never takes another magazine's home.
            return Err(MmError::OutOfFrames);
        };
        if let Some(home) = home {
            if let Some(old) = self.index.find(home.base) {
                let old = self.header_of(old);
                // SAFETY: in the index: a live slab of ours, in its list.
                unsafe {
                    if (*old).owner == home.owner {
                        self.set_owner(old, 0);
                    }
                }
            }
            // SAFETY: `header` is a live slab of ours, in its list.
            unsafe { self.set_owner(header, home.owner) };
            home.base = self.base_of(header).addr();
        }
        Ok(header)
    }

    /// Gives a slab an owner (0: none), moving a partial one to its end of
    /// the partial list.
    ///
    /// # Safety
    /// `header` is a live slab of this cache, linked in its list.
    unsafe fn set_owner(&mut self, header: *mut SlabHeader, owner: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            (*header).owner = owner;
            if (*header).list == ListKind::Partial as u8 {
                self.unlink(header);
                self.push(ListKind::Partial, header);
            }
        }
    }

    /// Takes the lowest free object of the slab [`pick`](Self::pick)
    /// chooses; not yet live.
    fn take(
        &mut self,
        home: Option<&mut Home>,
        may_grow: bool,
    ) -> Result<(NonNull<u8>, *mut SlabHeader, usize), MmError> {
        let header = self.pick(home, may_grow)?;
        let mut object = [ptr::null_mut()];
        // SAFETY: `pick` returns a live slab of ours with a free object.
        if unsafe { self.take_from(header, &mut object) } == 0 {
            debug_assert!(
                false,
                "a slab in the partial or empty list had no free object"
            );
            return Err(MmError::OutOfFrames);
        }
        let g = self.geometry;
        let index = (object[0].addr() - self.base_of(header).addr()) / g.stride;
        // SAFETY: slab objects are never at address 0.
        let pointer = unsafe { NonNull::new_unchecked(object[0]) };
        Ok((pointer, header, index))
    }

    /// Takes up to `out.len()` free objects of one slab, lowest first,
    /// into `out` (not yet live), and moves the slab once; returns how
    /// many.
    ///
    /// # Safety
    /// `header` is a live slab of ours, in its list.
    unsafe fn take_from(&mut self, header: *mut SlabHeader, out: &mut [*mut u8]) -> usize {
        let g = self.geometry;
        let base = self.base_of(header);
        // SAFETY: the caller's contract; no other reference to the header
        // or free bitmap exists (we hold `&mut self`).
        let taken = unsafe {
            let taken = header::take_up_to(
                header::bitmap(header, g.bitmap_words),
                out.len(),
                |n, object| {
                    // Inside the slab: object < objects.
                    out[n] = base.wrapping_add(object * g.stride);
                },
            );
            (*header).in_use += taken as u32;
            self.relist(
                header,
                ListKind::for_count((*header).in_use as usize, g.objects),
            );
            taken
        };
        self.held += taken;
        taken
    }

    /// Marks object `index` of a slab free, moving the slab between lists
    /// and giving it back if it is an empty one beyond the reserve
    /// (then `true`).
    ///
    /// # Safety
    /// `header` is a live slab of ours and the object is held (not free).
    unsafe fn put_back(&mut self, header: *mut SlabHeader, index: usize) -> bool {
        let g = self.geometry;
        // SAFETY: the caller's contract; no other reference to the header
        // or free bitmap exists (we hold `&mut self`).
        let in_use = unsafe {
            let bitmap = header::bitmap(header, g.bitmap_words);
            let bit = 1u64 << (index % 64);
            debug_assert_eq!(bitmap[index / 64] & bit, 0, "put back a free object");
            bitmap[index / 64] |= bit;
            (*header).in_use -= 1;
            (*header).in_use as usize
        };
        let kind = ListKind::for_count(in_use, g.objects);
        // SAFETY: a live slab of ours (above).
        unsafe { self.relist(header, kind) };
        self.held -= 1;
        let release = kind == ListKind::Empty && self.lists[kind as usize].len > self.reserve;
        if release {
            // SAFETY: the slab just became empty: no object of it held.
            unsafe { self.release(header) };
        }
        release
    }

    /// Returns `object` to the cache. Refused, with nothing changed but
    /// the refusal count: `NotInCache` if it lies in no slab of this cache
    /// (null included), `NotAtObject` if it lies in one but not at an
    /// object's first byte, `DoubleFree` if that object is free already.
    /// An object of a cache with a constructor must be in its constructed
    /// state.
    ///
    /// # Safety
    /// If `object` is an object of this cache in use, the caller owns it
    /// (it came from [`alloc`](Self::alloc) and was not freed since) and
    /// does not use it afterwards.
    pub unsafe fn free(&mut self, object: *mut u8) -> Result<(), MmError> {
        let (header, index) = match self.locate(object.addr()) {
            Ok(found) => found,
            Err(error) => {
                self.counters.refused_frees += 1;
                return Err(error);
            }
        };
        // SAFETY: `locate` found the slab in our index: a live slab of ours.
        let live = unsafe { header::live(header, self.geometry.bitmap_words) };
        let (word, bit) = header::live_bit(live, index);
        // One atomic step, so a lock-free free of the same pointer racing
        // this one (a double free) sees the bit clear and loses.
        if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            // Free in the slab, or in a magazine: freed already.
            self.counters.refused_frees += 1;
            return Err(MmError::DoubleFree);
        }
        // SAFETY: a live slab of ours; the object was live, so held.
        unsafe { self.put_back(header, index) };
        self.counters.frees += 1;
        Ok(())
    }

    /// Whether `pointer` lies inside one of this cache's slabs (objects,
    /// slack or header alike). Reads no slab memory.
    pub fn owns(&self, pointer: *const u8) -> bool {
        let base = pointer.addr() & !(self.geometry.slab_bytes() - 1);
        self.index.find(base).is_some()
    }

    /// Gives every empty slab back to the page source, the reserve
    /// included (memory pressure); returns the pages given back.
    pub fn shrink(&mut self) -> usize {
        let before = self.stats().pages();
        loop {
            let header = self.lists[ListKind::Empty as usize].head;
            if header.is_null() {
                break;
            }
            // SAFETY: the head of the empty list is an empty slab of ours.
            unsafe { self.release(header) };
        }
        before - self.stats().pages()
    }

    /// Gives every slab back (the cache is being destroyed); refused with
    /// `CacheInUse`, nothing changed, while objects are in use. Returns
    /// the pages given back.
    pub fn release_all(&mut self) -> Result<usize, MmError> {
        if self.held > 0 {
            return Err(MmError::CacheInUse);
        }
        Ok(self.shrink())
    }

    /// Checks every slab: in the index once, in the list its count says,
    /// list links consistent, its free bitmap agreeing with its count and
    /// no object both free and live; and the sums agreeing with the
    /// cache's counters.
    pub fn verify(&self) -> Result<(), &'static str> {
        let g = self.geometry;
        let bases = self.index.bases();
        if bases
            .windows(2)
            .any(|pair| pair[0].addr() >= pair[1].addr())
        {
            return Err("slab index not sorted");
        }
        if bases
            .iter()
            .any(|base| !base.addr().is_multiple_of(g.slab_bytes()))
        {
            return Err("slab not aligned to its size");
        }
        let (mut listed, mut in_use) = (0, 0);
        for kind in ListKind::ALL {
            let list = self.lists[kind as usize];
            let (mut header, mut prev, mut count) = (list.head, ptr::null_mut(), 0);
            while !header.is_null() {
                count += 1;
                if count > bases.len() {
                    return Err("slab list longer than the index: a cycle or a foreign slab");
                }
                let base = self.base_of(header);
                if self.index.find(base.addr()) != Some(base) {
                    return Err("a listed slab is not in the index");
                }
                // SAFETY: the slab is in our index: live and ours; the
                // shared borrow of `self` keeps every writer of the header
                // and free bitmap away (the live bitmap is atomic).
                let (slab, bitmap, live) = unsafe {
                    (
                        &*header,
                        header::bits(header, g.bitmap_words),
                        header::live(header, g.bitmap_words),
                    )
                };
                if ListKind::from_byte(slab.list) != Some(kind) || slab.prev != prev {
                    return Err("slab list links or tags broken");
                }
                if kind == ListKind::Full && slab.owner != 0 {
                    return Err("a full slab is a home");
                }
                if kind == ListKind::Partial && !prev.is_null() {
                    // SAFETY: the previous slab of the list was checked
                    // to be in the index above.
                    if unsafe { (*prev).owner } != 0 && slab.owner == 0 {
                        return Err("an unowned partial slab after a home");
                    }
                }
                let used = slab.in_use as usize;
                if ListKind::for_count(used, g.objects) != kind {
                    return Err("slab in the wrong list for its count");
                }
                let free: usize = bitmap.iter().map(|w| w.count_ones() as usize).sum();
                if free + used != g.objects {
                    return Err("slab bitmap disagrees with its count");
                }
                if bitmap
                    .iter()
                    .zip(live)
                    .any(|(free, live)| free & live.load(Ordering::Relaxed) != 0)
                {
                    return Err("an object both free and live");
                }
                let last_bits = g.objects % 64;
                if last_bits != 0 && bitmap[g.bitmap_words - 1] >> last_bits != 0 {
                    return Err("slab bitmap marks objects past the last");
                }
                in_use += used;
                prev = header;
                header = slab.next;
            }
            if count != list.len {
                return Err("slab list length wrong");
            }
            if list.tail != prev {
                return Err("slab list tail wrong");
            }
            listed += count;
        }
        if listed != bases.len() {
            return Err("a slab of the index is in no list");
        }
        if in_use != self.held {
            return Err("objects held disagree with the slabs");
        }
        if self.lists[ListKind::Empty as usize].len > self.reserve {
            return Err("more empty slabs than the reserve");
        }
        let c = self.counters;
        if c.allocations + c.to_magazines - c.frees - c.from_magazines != self.held as u64 {
            return Err("allocations minus frees is not the objects held");
        }
        Ok(())
    }

    /// The slab and object index of `address`, checked against the index
    /// before anything is read.
    fn locate(&self, address: usize) -> Result<(*mut SlabHeader, usize), MmError> {
        let g = self.geometry;
        let base = self
            .index
            .find(address & !(g.slab_bytes() - 1))
            .ok_or(MmError::NotInCache)?;
        let offset = address - base.addr();
        if !offset.is_multiple_of(g.stride) || offset / g.stride >= g.objects {
            return Err(MmError::NotAtObject);
        }
        Ok((self.header_of(base), offset / g.stride))
    }

    fn header_of(&self, base: *mut u8) -> *mut SlabHeader {
        base.wrapping_add(self.geometry.header_offset).cast()
    }

    fn base_of(&self, header: *mut SlabHeader) -> *mut u8 {
        header
            .cast::<u8>()
            .wrapping_sub(self.geometry.header_offset)
    }

    /// A new slab, in the empty list, every object constructed.
    fn grow(&mut self) -> Result<*mut SlabHeader, MmError> {
        let g = self.geometry;
        if !self.index.reserve_one(&mut self.pages) {
            return Err(MmError::OutOfFrames);
        }
        let block = self.pages.alloc_slab(g.order).ok_or(MmError::OutOfFrames)?;
        if !block.addr().get().is_multiple_of(g.slab_bytes()) {
            // SAFETY: just allocated from this source with this order.
            unsafe { self.pages.free_slab(block, g.order) };
            return Err(MmError::Misaligned);
        }
        let base = block.as_ptr();
        let header = self.header_of(base);
        // SAFETY: the block is ours, slab_bytes long (the source's
        // contract); the header and bitmap lie at its end, 8-aligned.
        unsafe {
            header.write(SlabHeader::new(ListKind::Empty));
            header::fill(header::bitmap(header, g.bitmap_words), g.objects);
            header::clear_live(header, g.bitmap_words);
        }
        if let Some(constructor) = self.constructor {
            for object in 0..g.objects {
                // SAFETY: each object is `stride` >= `size` bytes of the
                // new slab, aligned, used by nothing else: the contract
                // `with_constructor` was given.
                unsafe { constructor(base.add(object * g.stride).cast()) };
            }
        }
        self.index.insert(base);
        // SAFETY: the header was just written and is linked nowhere.
        unsafe { self.push(ListKind::Empty, header) };
        self.pages.publish(block, g.order);
        self.counters.slabs_created += 1;
        Ok(header)
    }

    /// Gives an empty slab back to the page source.
    ///
    /// # Safety
    /// `header` is a live slab of this cache with no object in use.
    unsafe fn release(&mut self, header: *mut SlabHeader) {
        let base = self.base_of(header);
        // SAFETY: the caller's contract.
        unsafe { self.unlink(header) };
        self.index.remove(base.addr(), &mut self.pages);
        self.counters.slabs_released += 1;
        // SAFETY: slabs start at non-null addresses.
        let block = unsafe { NonNull::new_unchecked(base) };
        self.pages.retire(block, self.geometry.order);
        // SAFETY: the slab came from this source with this order, is in no
        // list or index any more, none of its objects is held, and no
        // lock-free free still reads it (`retire`).
        unsafe { self.pages.free_slab(block, self.geometry.order) };
    }

    /// Moves a slab into list `kind` if it is not there already.
    ///
    /// # Safety
    /// `header` is a live slab of this cache, linked in its list.
    unsafe fn relist(&mut self, header: *mut SlabHeader, kind: ListKind) {
        // SAFETY: the caller's contract.
        unsafe {
            if (*header).list != kind as u8 {
                self.unlink(header);
                self.push(kind, header);
            }
        }
    }

    /// Links a slab at the head of list `kind`.
    ///
    /// # Safety
    /// `header` is a live slab of this cache, linked in no list.
    unsafe fn push(&mut self, kind: ListKind, header: *mut SlabHeader) {
        let list = &mut self.lists[kind as usize];
        // SAFETY: `header` and the list's ends are live slabs of ours.
        unsafe {
            (*header).list = kind as u8;
            if kind == ListKind::Full {
                // A full slab is no one's home.
                (*header).owner = 0;
            }
            if kind == ListKind::Partial && (*header).owner != 0 {
                // Homes at the tail, so the head is a slab anyone may take.
                (*header).next = ptr::null_mut();
                (*header).prev = list.tail;
                if list.tail.is_null() {
                    list.head = header;
                } else {
                    (*list.tail).next = header;
                }
                list.tail = header;
            } else {
                (*header).prev = ptr::null_mut();
                (*header).next = list.head;
                if list.head.is_null() {
                    list.tail = header;
                } else {
                    (*list.head).prev = header;
                }
                list.head = header;
            }
        }
        list.len += 1;
    }

    /// Unlinks a slab from its list.
    ///
    /// # Safety
    /// `header` is a live slab of this cache, linked in the list its tag
    /// names.
    unsafe fn unlink(&mut self, header: *mut SlabHeader) {
        // SAFETY: `header` and its neighbours are live slabs of ours.
        unsafe {
            let (next, prev) = ((*header).next, (*header).prev);
            let list = &mut self.lists[(*header).list as usize];
            if next.is_null() {
                list.tail = prev;
            } else {
                (*next).prev = prev;
            }
            if prev.is_null() {
                list.head = next;
            } else {
                (*prev).next = next;
            }
            list.len -= 1;
        }
    }
}

impl<P: SlabPages> Drop for SlabCache<P> {
    /// Gives every slab back if no object is in use; otherwise leaves them
    /// to their users (leaked, never unsound).
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}

/// `name`, cut to [`NAME_BYTES`] at a character boundary.
fn truncated(name: &str) -> ArrayString<NAME_BYTES> {
    let mut end = name.len().min(NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut text = ArrayString::new();
    text.push_str(&name[..end]);
    text
}
