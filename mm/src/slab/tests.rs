//! Tests of the object caches: layout, lists and reserve, constructors,
//! the slab index, failures, misuse (each refused with its own error and a
//! snapshot of all of the arena proving nothing changed), and a property
//! test of several caches over one page source against a model.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_void;
use std::ptr::NonNull;

use super::*;
use crate::testing::{SlabArena, JUNK};
use crate::MmError;
use proptest::prelude::*;

type Cache<'a> = SlabCache<&'a RefCell<SlabArena>>;

thread_local! {
    /// Objects constructed on this thread (tests run on several threads).
    static CONSTRUCTED: Cell<usize> = const { Cell::new(0) };
}

/// What the test constructor leaves in an object's first byte.
const MARK: u8 = 0xC7;

unsafe extern "C" fn mark(object: *mut c_void) {
    // SAFETY: the cache calls this with an object of at least one byte.
    unsafe { object.cast::<u8>().write(MARK) };
    CONSTRUCTED.with(|count| count.set(count.get() + 1));
}

fn constructed() -> usize {
    CONSTRUCTED.with(Cell::get)
}

fn arena(pages: usize) -> RefCell<SlabArena> {
    RefCell::new(SlabArena::new(pages))
}

/// Frees `object`, which the test allocated from `cache` and no longer uses.
fn free(cache: &mut Cache<'_>, object: NonNull<u8>) {
    // SAFETY: the tests free each object they allocated once, and never
    // touch it afterwards.
    assert_eq!(unsafe { cache.free(object.as_ptr()) }, Ok(()));
}

/// Tries a free that must be refused; it may name any pointer.
fn misfree(cache: &mut Cache<'_>, pointer: *mut u8) -> Result<(), MmError> {
    // SAFETY: the pointer is not an object in use (each caller says why),
    // so the cache refuses it without touching anyone's memory.
    unsafe { cache.free(pointer) }
}

#[test]
fn objects_are_aligned_distinct_and_inside_their_slabs() {
    let pages = arena(64);
    let mut cache = Cache::new("small", 24, 16, &pages).unwrap();
    let per_slab = cache.geometry().objects;
    let mut seen = BTreeSet::new();
    let objects: Vec<_> = (0..3 * per_slab + 1)
        .map(|_| cache.alloc().unwrap())
        .collect();
    for object in &objects {
        let address = object.as_ptr().addr();
        assert!(address.is_multiple_of(16));
        assert!(seen.insert(address), "handed out twice");
        let (start, bytes) = pages
            .borrow()
            .block_of(address)
            .expect("outside every slab");
        assert!(address + 24 <= start + cache.geometry().header_offset.min(bytes));
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.in_use, stats.slabs, stats.total),
        (3 * per_slab + 1, 4, 4 * per_slab)
    );
    assert_eq!(
        (stats.full_slabs, stats.partial_slabs, stats.empty_slabs),
        (3, 1, 0)
    );
    assert_eq!(pages.borrow().pages_out(), 4);
    assert_eq!(cache.verify(), Ok(()));
    for object in objects {
        free(&mut cache, object);
    }
    assert_eq!(cache.verify(), Ok(()));
}

#[test]
fn empty_slabs_beyond_the_reserve_go_back_at_once() {
    let pages = arena(64);
    let mut cache = Cache::new("reserve", 100, 0, &pages).unwrap();
    let per_slab = cache.geometry().objects;
    let objects: Vec<_> = (0..3 * per_slab).map(|_| cache.alloc().unwrap()).collect();
    assert_eq!(pages.borrow().pages_out(), 3);
    for object in objects {
        free(&mut cache, object);
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.slabs, stats.empty_slabs, stats.slabs_released),
        (1, 1, 2)
    );
    assert_eq!(pages.borrow().pages_out(), 1, "one empty slab is kept");
    // The kept slab serves the next allocation without the page source.
    pages.borrow_mut().budget = Some(0);
    let object = cache.alloc().unwrap();
    pages.borrow_mut().budget = None;
    free(&mut cache, object);
    assert_eq!(cache.shrink(), 1);
    assert_eq!(pages.borrow().pages_out(), 0);
    cache.set_reserve(0);
    let object = cache.alloc().unwrap();
    free(&mut cache, object);
    assert_eq!(
        pages.borrow().pages_out(),
        0,
        "no reserve: the slab went back"
    );
}

#[test]
fn the_constructor_runs_once_per_object_when_its_slab_is_made() {
    let pages = arena(16);
    // SAFETY: `mark` writes one byte of the object it is given.
    let mut cache = unsafe { Cache::with_constructor("ctor", 40, 8, mark, &pages) }.unwrap();
    let per_slab = cache.geometry().objects;
    let before = constructed();
    let object = cache.alloc().unwrap();
    assert_eq!(
        constructed() - before,
        per_slab,
        "every object of the new slab"
    );
    // SAFETY: the object is ours, 40 bytes.
    assert_eq!(unsafe { object.as_ptr().read() }, MARK);
    // SAFETY: as above; the write keeps the constructed first byte.
    unsafe { object.as_ptr().add(1).write_bytes(0x11, 39) };
    free(&mut cache, object);
    let again = cache.alloc().unwrap();
    assert_eq!(again, object, "the lowest free object");
    assert_eq!(constructed() - before, per_slab, "no constructor on reuse");
    // SAFETY: ours again; the cache wrote nothing into it.
    unsafe {
        assert_eq!(again.as_ptr().read(), MARK);
        assert_eq!(again.as_ptr().add(1).read(), 0x11);
    }
    let rest: Vec<_> = (1..per_slab).map(|_| cache.alloc().unwrap()).collect();
    for object in &rest {
        // SAFETY: each object is ours, fresh from the constructor.
        assert_eq!(unsafe { object.as_ptr().read() }, MARK);
    }
    let next = cache.alloc().unwrap();
    assert_eq!(constructed() - before, 2 * per_slab, "a second slab");
    for object in rest.into_iter().chain([again, next]) {
        free(&mut cache, object);
    }
    assert_eq!(cache.stats().slabs_created, 2);
}

#[test]
fn objects_are_not_in_zeroed_memory_without_a_constructor() {
    let pages = arena(4);
    let mut cache = Cache::new("junk", 64, 0, &pages).unwrap();
    let object = cache.alloc().unwrap();
    // SAFETY: ours, 64 bytes; the cache wrote nothing into it.
    assert_eq!(unsafe { object.as_ptr().read() }, JUNK);
    free(&mut cache, object);
}

#[test]
fn large_objects_use_higher_order_slabs_aligned_to_their_size() {
    let pages = arena(256);
    let mut cache = Cache::new("page-sized", 4096, 4096, &pages).unwrap();
    let geometry = cache.geometry();
    assert_eq!((geometry.order, geometry.objects), (4, 15));
    let objects: Vec<_> = (0..16).map(|_| cache.alloc().unwrap()).collect();
    assert!(objects
        .iter()
        .all(|o| o.as_ptr().addr().is_multiple_of(4096)));
    assert_eq!(pages.borrow().pages_out(), 32);
    for object in objects {
        free(&mut cache, object);
    }
    assert_eq!(cache.release_all(), Ok(16));
}

#[test]
fn the_index_grows_into_blocks_and_comes_back_inline() {
    // 2000-byte objects: 2 per page, so 1,100 objects take 550 slabs,
    // past the inline room (8) and the first index block (512 bases).
    let pages = arena(1200);
    let mut cache = Cache::new("index", 2000, 0, &pages).unwrap();
    assert_eq!((cache.geometry().order, cache.geometry().objects), (0, 2));
    let mut objects = Vec::new();
    for count in 1..=1100 {
        objects.push(cache.alloc().unwrap());
        let stats = cache.stats();
        let expected = match stats.slabs {
            0..=INLINE_SLABS => 0,
            9..=512 => 1,
            _ => 2,
        };
        assert_eq!(stats.index_pages, expected, "after {count} objects");
    }
    assert_eq!(cache.verify(), Ok(()));
    assert_eq!(pages.borrow().pages_out(), 550 + 2);
    // Freed in an order that empties slabs all over the index.
    objects.sort_by_key(|o| (o.as_ptr().addr() * 7919) % 10007);
    for object in objects {
        free(&mut cache, object);
    }
    let stats = cache.stats();
    assert_eq!((stats.slabs, stats.index_pages), (1, 0));
    assert_eq!(cache.verify(), Ok(()));
    assert_eq!(cache.release_all(), Ok(1));
    assert_eq!(pages.borrow().pages_out(), 0);
}

#[test]
fn a_failed_allocation_changes_nothing_but_the_failure_count() {
    let pages = arena(64);
    let mut cache = Cache::new("fail", 512, 0, &pages).unwrap();
    pages.borrow_mut().budget = Some(0);
    let snapshot = pages.borrow().snapshot();
    assert_eq!(cache.alloc(), Err(MmError::OutOfFrames));
    assert_eq!(pages.borrow().snapshot(), snapshot);
    let stats = cache.stats();
    assert_eq!(
        (stats.failed, stats.slabs, stats.in_use, stats.allocations),
        (1, 0, 0, 0)
    );
    // Fill the inline index; then the index block comes, but no slab.
    pages.borrow_mut().budget = None;
    let per_slab = cache.geometry().objects;
    let objects: Vec<_> = (0..INLINE_SLABS * per_slab)
        .map(|_| cache.alloc().unwrap())
        .collect();
    pages.borrow_mut().budget = Some(1);
    assert_eq!(cache.alloc(), Err(MmError::OutOfFrames));
    assert_eq!(cache.stats().slabs, INLINE_SLABS);
    assert_eq!(cache.verify(), Ok(()));
    pages.borrow_mut().budget = None;
    let last = cache.alloc().unwrap();
    for object in objects.into_iter().chain([last]) {
        free(&mut cache, object);
    }
    assert_eq!(cache.stats().failed, 2);
}

#[test]
fn misuse_is_refused_with_its_own_error_and_changes_nothing() {
    let pages = arena(32);
    // SAFETY: `mark` writes one byte of the object it is given.
    let mut cache = unsafe { Cache::with_constructor("victim", 48, 16, mark, &pages) }.unwrap();
    let mut other = Cache::new("other", 48, 16, &pages).unwrap();
    let kept = cache.alloc().unwrap();
    let freed = cache.alloc().unwrap();
    free(&mut cache, freed);
    let foreign = other.alloc().unwrap();
    let stack = 0u64;
    let g = cache.geometry();
    let base = kept.as_ptr().addr() & !(g.slab_bytes() - 1);
    let at = |offset: usize| {
        kept.as_ptr()
            .wrapping_add(base + offset - kept.as_ptr().addr())
    };
    let cases: [(&str, *mut u8, MmError); 8] = [
        ("double free", freed.as_ptr(), MmError::DoubleFree),
        ("null", std::ptr::null_mut(), MmError::NotInCache),
        (
            "the stack",
            (&raw const stack).cast_mut().cast(),
            MmError::NotInCache,
        ),
        (
            "another cache's object",
            foreign.as_ptr(),
            MmError::NotInCache,
        ),
        (
            "a free page of the arena",
            pages.borrow().pointer(20 * 4096),
            MmError::NotInCache,
        ),
        (
            "inside an object",
            kept.as_ptr().wrapping_add(8),
            MmError::NotAtObject,
        ),
        ("the slab header", at(g.header_offset), MmError::NotAtObject),
        (
            "past the last object",
            at(g.objects * g.stride),
            MmError::NotAtObject,
        ),
    ];
    for (what, pointer, error) in cases {
        let (snapshot, before) = (pages.borrow().snapshot(), cache.stats());
        assert_eq!(misfree(&mut cache, pointer), Err(error), "{what}");
        assert!(
            pages.borrow().snapshot() == snapshot,
            "{what} changed memory"
        );
        let after = cache.stats();
        assert_eq!(after.refused_frees, before.refused_frees + 1, "{what}");
        assert_eq!(
            CacheStats {
                refused_frees: before.refused_frees,
                ..after
            },
            before,
            "{what}"
        );
        assert_eq!(cache.verify(), Ok(()), "{what}");
    }
    assert!(other.owns(foreign.as_ptr()) && !cache.owns(foreign.as_ptr()));
    assert_eq!(cache.release_all(), Err(MmError::CacheInUse));
    assert_eq!(cache.stats().slabs, 1, "a refused destroy keeps the slabs");
    free(&mut cache, kept);
    free(&mut other, foreign);
    assert_eq!(cache.release_all(), Ok(1));
    assert_eq!(other.release_all(), Ok(1));
    assert_eq!(pages.borrow().pages_out(), 0);
}

/// A page source that hands out blocks one page off their alignment.
struct Crooked(SlabArena);

// SAFETY: each block is a page into a block twice its size from the arena,
// which keeps the promise for that block; only the alignment is broken,
// which the cache checks.
unsafe impl SlabPages for Crooked {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        let block = self.0.alloc_slab(order + 1)?;
        // SAFETY: one page into a block of at least two pages.
        Some(unsafe { block.add(4096) })
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        // SAFETY: the block came from `alloc_slab(order)` above.
        unsafe { self.0.free_slab(block.sub(4096), order + 1) };
    }
}

#[test]
fn a_misaligned_block_is_refused_and_given_back() {
    let mut cache = SlabCache::new("crooked", 1024, 0, Crooked(SlabArena::new(64))).unwrap();
    assert!(cache.geometry().order > 0);
    assert_eq!(cache.alloc(), Err(MmError::Misaligned));
    assert_eq!(cache.pages().0.pages_out(), 0);
    assert_eq!(cache.stats().failed, 1);
}

#[test]
fn names_are_cut_at_a_character_boundary() {
    let pages = arena(1);
    let long = "é".repeat(20);
    let cache = Cache::new(&long, 8, 0, &pages).unwrap();
    assert_eq!(cache.name(), "é".repeat(16));
    assert_eq!(
        Cache::new("zero", 0, 0, &pages).err(),
        Some(MmError::InvalidArgument)
    );
    assert_eq!(
        Cache::new("align", 8, 3, &pages).err(),
        Some(MmError::InvalidArgument)
    );
}

/// A cache the property test makes.
#[derive(Clone, Debug)]
struct Spec {
    size: usize,
    align: usize,
    constructor: bool,
    reserve: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![1..=64usize, 1..=700usize, 1..=MAX_OBJECT_SIZE],
        prop_oneof![Just(0usize), (3..=12u32).prop_map(|shift| 1 << shift)],
        any::<bool>(),
        0..=2usize,
    )
        .prop_map(|(size, align, constructor, reserve)| Spec {
            size,
            align,
            constructor,
            reserve,
        })
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate this many objects from a cache.
    Alloc(usize, usize),
    /// Free a live object.
    Free(prop::sample::Index),
    /// Free this many live objects, from a random start (slabs empty).
    FreeMany(prop::sample::Index, usize),
    /// Free an object freed before (and not handed out again).
    DoubleFree(prop::sample::Index),
    /// Free a pointer inside a live object.
    Interior(prop::sample::Index, usize),
    /// Free a live object into another cache.
    WrongCache(prop::sample::Index, usize),
    /// Free a page of the arena that no cache holds.
    Foreign(usize),
    /// Give a cache's empty slabs back.
    Shrink(usize),
    /// Allocate once with the page source out of blocks.
    Starved(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..=16usize).prop_map(|(cache, count)| Op::Alloc(cache, count)),
        6 => any::<prop::sample::Index>().prop_map(Op::Free),
        2 => (any::<prop::sample::Index>(), 1..=64usize).prop_map(|(i, n)| Op::FreeMany(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Op::DoubleFree),
        1 => (any::<prop::sample::Index>(), 1..4096usize).prop_map(|(i, d)| Op::Interior(i, d)),
        1 => (any::<prop::sample::Index>(), 1..3usize).prop_map(|(i, d)| Op::WrongCache(i, d)),
        1 => (0..ARENA_PAGES).prop_map(Op::Foreign),
        1 => (0..3usize).prop_map(Op::Shrink),
        1 => (0..3usize).prop_map(Op::Starved),
    ]
}

const ARENA_PAGES: usize = 256;

/// An object the model knows is live.
#[derive(Clone, Copy, Debug)]
struct Live {
    cache: usize,
    address: NonNull<u8>,
    fill: u8,
}

/// The model: live objects, recently freed ones, and constructor calls.
struct Model {
    live: Vec<Live>,
    freed: Vec<(usize, NonNull<u8>)>,
    ends: BTreeMap<usize, usize>,
    fill: u8,
    constructed_at_start: usize,
}

impl Model {
    fn add(&mut self, cache: usize, object: NonNull<u8>, spec: &Spec) {
        let address = object.as_ptr().addr();
        let end = address + spec.size;
        let before = self.ends.range(..end).next_back();
        assert!(
            before.is_none_or(|(_, &prior_end)| prior_end <= address),
            "object overlaps a live one"
        );
        self.ends.insert(address, end);
        self.fill = self.fill.wrapping_add(1);
        let first = usize::from(spec.constructor);
        // SAFETY: the object is ours, `size` bytes; a constructed object
        // keeps its first byte (the constructor's mark).
        unsafe {
            object
                .as_ptr()
                .add(first)
                .write_bytes(self.fill, spec.size - first)
        };
        self.live.push(Live {
            cache,
            address: object,
            fill: self.fill,
        });
        self.freed.retain(|&(_, freed)| freed != object);
    }

    fn take(&mut self, index: usize, spec: &Spec) -> Live {
        let live = self.live.swap_remove(index);
        let first = usize::from(spec.constructor);
        // SAFETY: a live object of `size` bytes, ours.
        let bytes = unsafe { std::slice::from_raw_parts(live.address.as_ptr(), spec.size) };
        assert!(
            bytes[first..].iter().all(|&b| b == live.fill),
            "object contents changed"
        );
        if spec.constructor {
            assert_eq!(bytes[0], MARK, "constructed state lost");
        }
        self.ends.remove(&live.address.as_ptr().addr());
        live
    }
}

/// Checks every cache against the model and the page source.
fn check(caches: &[Cache<'_>], specs: &[Spec], model: &Model, pages: &RefCell<SlabArena>) {
    let mut held = 0;
    let mut constructed_total = 0;
    for (index, (cache, spec)) in caches.iter().zip(specs).enumerate() {
        let stats = cache.stats();
        assert_eq!(cache.verify(), Ok(()));
        assert_eq!(
            stats.in_use,
            model.live.iter().filter(|l| l.cache == index).count()
        );
        assert_eq!(stats.total, stats.slabs * stats.objects_per_slab);
        assert_eq!(
            stats.slabs,
            stats.partial_slabs + stats.full_slabs + stats.empty_slabs
        );
        assert!(stats.empty_slabs <= spec.reserve);
        assert_eq!(
            stats.slabs as u64,
            stats.slabs_created - stats.slabs_released
        );
        held += stats.pages();
        if spec.constructor {
            constructed_total += stats.slabs_created as usize * stats.objects_per_slab;
        }
    }
    assert_eq!(
        pages.borrow().pages_out(),
        held,
        "pages out of the source = pages the caches hold"
    );
    assert_eq!(
        constructed() - model.constructed_at_start,
        constructed_total
    );
}

/// Runs a refused free and proves it changed nothing but the one count.
fn refused(
    caches: &mut [Cache<'_>],
    target: usize,
    pointer: *mut u8,
    pages: &RefCell<SlabArena>,
) -> MmError {
    let snapshot = pages.borrow().snapshot();
    let before: Vec<_> = caches.iter().map(SlabCache::stats).collect();
    let error = misfree(&mut caches[target], pointer).expect_err("a misuse was accepted");
    assert!(
        pages.borrow().snapshot() == snapshot,
        "a refused free changed memory"
    );
    for (index, (cache, before)) in caches.iter().zip(before).enumerate() {
        let mut expected = before;
        expected.refused_frees += u64::from(index == target);
        assert_eq!(cache.stats(), expected);
    }
    error
}

proptest! {
    #![proptest_config(crate::testing::cases(64))]

    /// Three caches of random sizes, alignments, constructors and reserves
    /// over one page source: no object handed out twice or overlapping
    /// another, each aligned, in a slab, constructed, its contents kept;
    /// counters consistent with the model and the source after every step;
    /// every misuse refused with its error and nothing changed; and every
    /// page back in the source at the end.
    #[test]
    fn random_sequences_keep_every_invariant(
        specs in proptest::collection::vec(spec(), 3),
        ops in proptest::collection::vec(op(), 1..250),
    ) {
        let pages = arena(ARENA_PAGES);
        let mut caches: Vec<Cache<'_>> = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let name = format!("cache{index}");
                let mut cache = if spec.constructor {
                    // SAFETY: `mark` writes one byte of the object.
                    unsafe { Cache::with_constructor(&name, spec.size, spec.align, mark, &pages) }
                } else {
                    Cache::new(&name, spec.size, spec.align, &pages)
                }
                .unwrap();
                cache.set_reserve(spec.reserve);
                cache
            })
            .collect();
        let mut model = Model {
            live: Vec::new(),
            freed: Vec::new(),
            ends: BTreeMap::new(),
            fill: 0,
            constructed_at_start: constructed(),
        };
        for op in ops {
            match op {
                Op::Alloc(cache, count) => {
                    for _ in 0..count {
                        let Ok(object) = caches[cache].alloc() else {
                            break; // the arena is full
                        };
                        let g = caches[cache].geometry();
                        let address = object.as_ptr().addr();
                        prop_assert!(address.is_multiple_of(g.align));
                        let (start, _) = pages.borrow().block_of(address).expect("object outside every block");
                        prop_assert!(address + g.size <= start + g.header_offset);
                        prop_assert!(caches[cache].owns(object.as_ptr()));
                        if specs[cache].constructor {
                            // SAFETY: ours, at least one byte.
                            prop_assert_eq!(unsafe { object.as_ptr().read() }, MARK);
                        }
                        model.add(cache, object, &specs[cache]);
                    }
                }
                Op::Free(pick) if !model.live.is_empty() => {
                    let index = pick.index(model.live.len());
                    let cache = model.live[index].cache;
                    let live = model.take(index, &specs[cache]);
                    free(&mut caches[cache], live.address);
                    model.freed.push((cache, live.address));
                    if model.freed.len() > 64 {
                        model.freed.remove(0);
                    }
                }
                Op::FreeMany(pick, count) if !model.live.is_empty() => {
                    let start = pick.index(model.live.len());
                    for _ in 0..count {
                        if model.live.is_empty() {
                            break;
                        }
                        let index = start % model.live.len();
                        let cache = model.live[index].cache;
                        let live = model.take(index, &specs[cache]);
                        free(&mut caches[cache], live.address);
                        model.freed.push((cache, live.address));
                    }
                    let excess = model.freed.len().saturating_sub(64);
                    model.freed.drain(..excess);
                }
                Op::DoubleFree(pick) if !model.freed.is_empty() => {
                    let (cache, object) = model.freed[pick.index(model.freed.len())];
                    let slab = caches[cache].geometry().slab_bytes();
                    let slab_has_live = model.live.iter().any(|l| {
                        l.cache == cache && l.address.as_ptr().addr() / slab == object.as_ptr().addr() / slab
                    });
                    let expected = if caches[cache].owns(object.as_ptr()) {
                        MmError::DoubleFree
                    } else {
                        prop_assert!(!slab_has_live, "a slab with live objects is not owned");
                        MmError::NotInCache
                    };
                    prop_assert_eq!(refused(&mut caches, cache, object.as_ptr(), &pages), expected);
                }
                Op::Interior(pick, delta) if !model.live.is_empty() => {
                    let live = model.live[pick.index(model.live.len())];
                    let delta = delta % caches[live.cache].geometry().stride;
                    if delta != 0 {
                        let pointer = live.address.as_ptr().wrapping_add(delta);
                        prop_assert_eq!(refused(&mut caches, live.cache, pointer, &pages), MmError::NotAtObject);
                    }
                }
                Op::WrongCache(pick, step) if !model.live.is_empty() => {
                    let live = model.live[pick.index(model.live.len())];
                    let target = (live.cache + step) % caches.len();
                    prop_assert!(caches[live.cache].owns(live.address.as_ptr()));
                    prop_assert!(!caches[target].owns(live.address.as_ptr()));
                    prop_assert_eq!(refused(&mut caches, target, live.address.as_ptr(), &pages), MmError::NotInCache);
                }
                Op::Foreign(page) => {
                    let pointer = pages.borrow().pointer(page * 4096);
                    if pages.borrow().block_of(pointer.addr()).is_none() {
                        prop_assert_eq!(refused(&mut caches, page % 3, pointer, &pages), MmError::NotInCache);
                    }
                }
                Op::Shrink(cache) => {
                    let before = caches[cache].stats();
                    let given = caches[cache].shrink();
                    let after = caches[cache].stats();
                    prop_assert_eq!(after.empty_slabs, 0);
                    prop_assert_eq!(given, before.pages() - after.pages());
                }
                Op::Starved(cache) => {
                    let before = caches[cache].stats();
                    let snapshot = pages.borrow().snapshot();
                    pages.borrow_mut().budget = Some(0);
                    let result = caches[cache].alloc();
                    pages.borrow_mut().budget = None;
                    match result {
                        Ok(object) => {
                            prop_assert!(before.in_use < before.total, "a new slab without a page");
                            model.add(cache, object, &specs[cache]);
                        }
                        Err(error) => {
                            prop_assert_eq!(error, MmError::OutOfFrames);
                            prop_assert_eq!(before.in_use, before.total);
                            prop_assert!(pages.borrow().snapshot() == snapshot);
                            prop_assert_eq!(caches[cache].stats(), CacheStats { failed: before.failed + 1, ..before });
                        }
                    }
                }
                _ => {}
            }
            check(&caches, &specs, &model, &pages);
        }
        while !model.live.is_empty() {
            let cache = model.live[0].cache;
            let live = model.take(0, &specs[cache]);
            free(&mut caches[cache], live.address);
        }
        check(&caches, &specs, &model, &pages);
        for cache in &mut caches {
            prop_assert!(cache.release_all().is_ok());
        }
        prop_assert_eq!(pages.borrow().pages_out(), 0);
    }
}
