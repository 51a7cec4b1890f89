//! Tests of the object-cache magazines: the lock-free paths against the
//! locked ones, every misuse refused on the locked path with the cache's
//! error, a model of several CPUs' magazines, and threads hammering one
//! cache with cross-thread frees while another releases slabs under them
//! (the retire protocol).

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use super::*;
use crate::layout::PAGE_SIZE;
use crate::testing::{PageTags, TaggedSlabs};
use proptest::prelude::*;

const PAGE: usize = PAGE_SIZE as usize;
const PAGES: usize = 512;

/// A cache of `size`-byte objects, `cpus` magazines, and what the test
/// needs to drive them.
struct Setup {
    cache: Mutex<SlabCache<TaggedSlabs>>,
    tags: Arc<PageTags>,
    magazines: Arc<Vec<Magazine>>,
    retired: Arc<AtomicUsize>,
}

const TAG: NonZeroU32 = NonZeroU32::new(7).unwrap();
const KEY: Key = Key {
    tag: TAG,
    generation: 3,
};

fn setup(size: usize, cpus: usize) -> Setup {
    let (pages, tags, magazines, retired) = TaggedSlabs::new(PAGES, TAG, cpus);
    Setup {
        cache: Mutex::new(SlabCache::new("mag", size, 0, pages).unwrap()),
        tags,
        magazines,
        retired,
    }
}

impl Setup {
    fn alloc(&self, cpu: usize) -> NonNull<u8> {
        let mine = &self.magazines[cpu];
        mine.try_alloc(KEY).unwrap_or_else(|| {
            let mut cache = self.cache.lock().unwrap();
            // SAFETY: the key names this setup's one cache alone, which
            // `finish` drains before it goes.
            unsafe { alloc_locked(&mut cache, mine, KEY, self.magazines.iter()) }
                .expect("arena large enough")
        })
    }

    /// Frees through the magazine, else the lock: whether it was lock-free,
    /// and the result.
    ///
    /// # Safety
    /// As for `Magazine::try_free`.
    unsafe fn free(&self, cpu: usize, object: *mut u8) -> (bool, Result<(), MmError>) {
        let mine = &self.magazines[cpu];
        // SAFETY: the caller's contract.
        if unsafe { mine.try_free(&*self.tags, KEY, object) } {
            return (true, Ok(()));
        }
        let mut cache = self.cache.lock().unwrap();
        // SAFETY: the caller's contract; the key as in `alloc`.
        (false, unsafe { free_locked(&mut cache, mine, KEY, object) })
    }

    /// Frees each of `objects` (allocated by the test, freed once, not
    /// used again) on `cpu`, checking each succeeds and calling `after`
    /// after each; returns how many took the lock.
    fn free_all(
        &self,
        cpu: usize,
        objects: impl IntoIterator<Item = NonNull<u8>>,
        mut after: impl FnMut(),
    ) -> usize {
        let mut locked = 0;
        for object in objects {
            // SAFETY: the caller's promise above.
            let (fast, result) = unsafe { self.free(cpu, object.as_ptr()) };
            assert_eq!(result, Ok(()));
            locked += usize::from(!fast);
            after();
        }
        locked
    }

    fn stats(&self) -> CacheStats {
        let cache = self.cache.lock().unwrap();
        combined_stats(cache.stats(), KEY, self.magazines.iter())
    }

    fn drain_all(&self, close: bool) -> usize {
        let mut cache = self.cache.lock().unwrap();
        self.magazines
            .iter()
            // SAFETY: as in `alloc`.
            .map(|magazine| unsafe { drain(&mut cache, magazine, KEY, close) })
            .sum()
    }

    fn verify(&self) {
        self.cache.lock().unwrap().verify().unwrap();
    }

    /// Drains, gives every slab back and checks the arena has every page.
    fn finish(self) {
        self.drain_all(true);
        let mut cache = self.cache.into_inner().unwrap();
        cache.verify().unwrap();
        assert_eq!(cache.stats().in_use, 0, "objects left in use");
        cache.release_all().unwrap();
        assert_eq!(cache.pages().arena.pages_out(), 0);
        assert!(self.tags.all_clear());
    }
}

#[test]
fn after_one_refill_a_batch_comes_and_goes_without_the_lock() {
    let s = setup(48, 1);
    let first = s.alloc(0);
    assert_eq!(
        s.magazines[0].cached(KEY),
        BATCH,
        "the refill brought a batch"
    );
    let mut objects = vec![first];
    for _ in 0..BATCH {
        objects.push(s.magazines[0].try_alloc(KEY).expect("in the magazine"));
    }
    assert!(
        s.magazines[0].try_alloc(KEY).is_none(),
        "the batch is used up"
    );
    let distinct: BTreeSet<_> = objects.iter().map(|o| o.as_ptr().addr()).collect();
    assert_eq!(distinct.len(), objects.len());
    let stats = s.stats();
    assert_eq!((stats.in_use, stats.in_magazines), (BATCH + 1, 0));
    assert_eq!(
        (stats.allocations, stats.magazine_allocations),
        (BATCH as u64 + 1, BATCH as u64)
    );
    assert_eq!(s.free_all(0, objects, || {}), 0, "the magazine had room");
    let stats = s.stats();
    assert_eq!((stats.in_use, stats.in_magazines), (0, BATCH + 1));
    assert_eq!(stats.magazine_frees, BATCH as u64 + 1);
    assert_eq!(
        stats.magazine_hit_percent(),
        Some(100 * (2 * BATCH as u64 + 1) / (2 * BATCH as u64 + 2))
    );
    s.verify();
    s.finish();
}

#[test]
fn each_magazine_refills_from_a_home_slab_of_its_own() {
    let s = setup(64, 2);
    let per_slab = s.cache.lock().unwrap().geometry().objects;
    // Interleaved, as two CPUs would run: neither takes from the other's
    // home, so no slab holds objects of both.
    let (mut zero, mut one) = (Vec::new(), Vec::new());
    for _ in 0..3 * per_slab {
        zero.push(s.alloc(0));
        one.push(s.alloc(1));
    }
    let slabs = |objects: &[NonNull<u8>]| -> BTreeSet<usize> {
        objects
            .iter()
            .map(|o| o.as_ptr().addr() & !(PAGE - 1))
            .collect()
    };
    let (zero_slabs, one_slabs) = (slabs(&zero), slabs(&one));
    assert!(zero_slabs.is_disjoint(&one_slabs), "two CPUs share a slab");
    // Each filled about three slabs (plus what its magazine holds).
    assert!(zero_slabs.len() <= 4 && one_slabs.len() <= 4);
    s.verify();
    s.free_all(0, zero.into_iter().chain(one), || {});
    s.verify();
    s.finish();
}

#[test]
fn large_objects_get_fewer_rounds() {
    assert_eq!(rounds_for(8), (ROUNDS, BATCH));
    assert_eq!(rounds_for(512), (ROUNDS, BATCH));
    assert_eq!(rounds_for(1024), (16, 8));
    assert_eq!(rounds_for(4096), (4, 2));
    assert_eq!(rounds_for(8192), (2, 1));
    // A cache of 4 KiB objects: its magazine keeps at most 4 (16 KiB),
    // flushing 2 at a time.
    let s = setup(4096, 1);
    let objects: Vec<_> = (0..12).map(|_| s.alloc(0)).collect();
    s.drain_all(false);
    let locked = s.free_all(0, objects, || assert!(s.magazines[0].cached(KEY) <= 4));
    // 4 fast frees fill it; then every third free takes the lock (flush
    // 2, free it, then 2 fast frees fill it again).
    assert_eq!(locked, 3);
    s.verify();
    s.finish();
}

#[test]
fn a_full_magazine_flushes_its_oldest_batch_under_the_lock() {
    let s = setup(64, 1);
    let objects: Vec<_> = (0..ROUNDS + 1).map(|_| s.alloc(0)).collect();
    s.drain_all(false);
    let locked = s.free_all(0, objects, || {});
    assert_eq!(locked, 1, "one free found the magazine full");
    assert_eq!(s.magazines[0].cached(KEY), ROUNDS - BATCH);
    s.verify();
    s.finish();
}

#[test]
fn a_second_free_is_refused_whether_the_object_waits_in_a_magazine_or_a_slab() {
    let s = setup(32, 2);
    let a = s.alloc(0);
    let b = s.alloc(1);
    // SAFETY: each object is freed once for real; the later calls name
    // freed objects, which the cache refuses untouched.
    unsafe {
        assert_eq!(s.free(0, a.as_ptr()), (true, Ok(())));
        // In CPU 0's magazine: refused on both CPUs.
        assert_eq!(s.free(0, a.as_ptr()), (false, Err(MmError::DoubleFree)));
        assert_eq!(s.free(1, a.as_ptr()), (false, Err(MmError::DoubleFree)));
    }
    // Free in its slab: the locked free when no magazine serves the key.
    let other = Key {
        generation: 4,
        ..KEY
    };
    {
        let mut cache = s.cache.lock().unwrap();
        // SAFETY: as above.
        unsafe {
            assert!(!s.magazines[1].try_free(&*s.tags, other, b.as_ptr()));
            assert_eq!(cache.free(b.as_ptr()), Ok(()));
            assert_eq!(cache.free(b.as_ptr()), Err(MmError::DoubleFree));
        }
    }
    assert_eq!(
        // SAFETY: as above.
        unsafe { s.free(1, b.as_ptr()) },
        (false, Err(MmError::DoubleFree))
    );
    assert_eq!(s.stats().refused_frees, 4);
    s.verify();
    s.finish();
}

#[test]
fn interior_foreign_and_stale_key_pointers_take_the_locked_path_and_its_error() {
    let s = setup(40, 1);
    let object = s.alloc(0);
    let mine = &s.magazines[0];
    let mut local = 0u64;
    let stale = Key {
        generation: 2,
        ..KEY
    };
    // SAFETY: none of these names a live object the call may take, except
    // `object`, freed once at the end.
    unsafe {
        assert_eq!(
            s.free(0, object.as_ptr().add(8)),
            (false, Err(MmError::NotAtObject))
        );
        let local = core::ptr::from_mut(&mut local).cast::<u8>();
        assert_eq!(s.free(0, local), (false, Err(MmError::NotInCache)));
        assert_eq!(
            s.free(0, core::ptr::null_mut()),
            (false, Err(MmError::NotInCache))
        );
        // Unpublished arena memory (no slab there).
        let far = s
            .cache
            .lock()
            .unwrap()
            .pages()
            .arena
            .pointer((PAGES - 1) * PAGE);
        assert_eq!(s.free(0, far), (false, Err(MmError::NotInCache)));
        assert!(!mine.try_free(&*s.tags, stale, object.as_ptr()));
        assert!(mine.try_alloc(stale).is_none());
        assert_eq!(s.free(0, object.as_ptr()), (true, Ok(())));
    }
    assert_eq!(s.stats().refused_frees, 4);
    s.verify();
    s.finish();
}

#[test]
fn a_closed_magazine_serves_no_one_until_reopened_and_keeps_its_counts() {
    let s = setup(24, 1);
    // Some lock-free calls first, so there are counts to keep.
    let first = s.alloc(0);
    let pair = s.alloc(0);
    // SAFETY: allocated just now, freed once.
    assert_eq!(unsafe { s.free(0, pair.as_ptr()) }, (true, Ok(())));
    let before = s.stats();
    assert_eq!((before.magazine_allocations, before.magazine_frees), (1, 1));
    assert!(s.drain_all(true) > 0);
    assert_eq!(s.stats().in_magazines, 0);
    // SAFETY: allocated above, freed once.
    let (fast, result) = unsafe { s.free(0, first.as_ptr()) };
    assert_eq!(
        (fast, result),
        (false, Ok(())),
        "closed: the free takes the lock, which reopens the magazine"
    );
    // Reopened empty: this allocation takes the lock (and refills), the
    // free needs none.
    let again = s.alloc(0);
    // SAFETY: as above.
    assert_eq!(unsafe { s.free(0, again.as_ptr()) }, (true, Ok(())));
    let after = s.stats();
    assert_eq!(
        (after.magazine_allocations, after.magazine_frees),
        (1, 2),
        "the reopened magazine kept its counts"
    );
    assert_eq!(after.allocations - after.frees, after.in_use as u64);
    // Another key (the slot's next generation) matches none of it, and a
    // magazine reopened for it starts its own counts.
    let next = Key {
        generation: KEY.generation + 1,
        ..KEY
    };
    let other = combined_stats(s.cache.lock().unwrap().stats(), next, s.magazines.iter());
    assert_eq!(
        (
            other.in_magazines,
            other.magazine_allocations,
            other.magazine_frees
        ),
        (0, 0, 0)
    );
    s.drain_all(true);
    {
        let mut cache = s.cache.lock().unwrap();
        // SAFETY: the same cache under a key no call uses after this one
        // (the test stands for a slot's new generation).
        let object = unsafe { alloc_locked(&mut cache, &s.magazines[0], next, s.magazines.iter()) };
        let object = object.expect("room");
        let mine = combined_stats(cache.stats(), next, s.magazines.iter());
        assert_eq!((mine.magazine_allocations, mine.in_magazines), (0, BATCH));
        let old = combined_stats(cache.stats(), KEY, s.magazines.iter());
        assert_eq!((old.magazine_allocations, old.in_magazines), (0, 0));
        // SAFETY: allocated just now, freed once; the magazine is
        // drained below, before the setup's key is used again.
        let freed = unsafe { free_locked(&mut cache, &s.magazines[0], next, object.as_ptr()) };
        assert_eq!(freed, Ok(()));
        // SAFETY: as above.
        unsafe { drain(&mut cache, &s.magazines[0], next, true) };
    }
    s.verify();
    s.finish();
}

#[test]
fn an_empty_cache_takes_back_other_magazines_objects_before_it_fails() {
    let s = setup(2048, 2);
    // One slab only: CPU 0 takes it into its magazine.
    s.cache.lock().unwrap().pages_mut().arena.budget = Some(1);
    let first = s.alloc(0);
    let per_slab = s.cache.lock().unwrap().geometry().objects;
    // 2 KiB objects: 8 rounds, batches of 4.
    assert_eq!(rounds_for(2048), (8, 4));
    assert_eq!(s.magazines[0].cached(KEY), (per_slab - 1).min(4));
    // CPU 1 finds the slab's other objects in CPU 0's magazine.
    let rest: Vec<_> = (1..per_slab).map(|_| s.alloc(1)).collect();
    let stats = s.stats();
    assert_eq!((stats.in_use, stats.failed), (per_slab, 0));
    {
        let mut cache = s.cache.lock().unwrap();
        // SAFETY: as in `Setup::alloc`.
        let error = unsafe { alloc_locked(&mut cache, &s.magazines[1], KEY, s.magazines.iter()) };
        assert_eq!(error, Err(MmError::OutOfFrames));
    }
    assert_eq!(s.stats().failed, 1);
    s.free_all(1, rest.into_iter().chain([first]), || {});
    s.finish();
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    /// Free the live object chosen by the index, on this CPU.
    Free(usize, usize),
    /// Free again an object freed earlier and not handed out since.
    FreeAgain(usize, usize),
    Drain(usize),
    Shrink,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize).prop_map(Op::Alloc),
        4 => (0..3usize, any::<usize>()).prop_map(|(cpu, i)| Op::Free(cpu, i)),
        1 => (0..3usize, any::<usize>()).prop_map(|(cpu, i)| Op::FreeAgain(cpu, i)),
        1 => (0..3usize).prop_map(Op::Drain),
        1 => Just(Op::Shrink),
    ]
}

proptest! {
    #![proptest_config(crate::testing::cases(64))]

    /// Three CPUs' magazines over one cache: no object handed out twice
    /// while live, every second free refused, the combined figures equal
    /// to the model after every step, the cache consistent, and every
    /// page back at the end. (Plain asserts: a failure panics, so the
    /// arena's leak check stays quiet and the real message shows.)
    #[test]
    fn magazines_agree_with_a_model(
        size in 1usize..600,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let s = setup(size, 3);
        let mut live: Vec<NonNull<u8>> = Vec::new();
        let mut freed: Vec<*mut u8> = Vec::new();
        let mut refused = 0;
        for op in ops {
            match op {
                Op::Alloc(cpu) => {
                    let object = s.alloc(cpu);
                    assert!(!live.contains(&object), "handed out twice");
                    freed.retain(|&f| f != object.as_ptr());
                    live.push(object);
                }
                Op::Free(cpu, i) if !live.is_empty() => {
                    let object = live.swap_remove(i % live.len());
                    // SAFETY: live, freed once here.
                    assert_eq!(unsafe { s.free(cpu, object.as_ptr()) }.1, Ok(()));
                    freed.push(object.as_ptr());
                }
                Op::FreeAgain(cpu, i) if !freed.is_empty() => {
                    let object = freed[i % freed.len()];
                    // Its slab may have gone back since (a shrink).
                    let expected = if s.cache.lock().unwrap().owns(object) {
                        MmError::DoubleFree
                    } else {
                        MmError::NotInCache
                    };
                    // SAFETY: freed and not handed out since: refused.
                    assert_eq!(unsafe { s.free(cpu, object) }.1, Err(expected));
                    refused += 1;
                }
                Op::Drain(cpu) => {
                    let mut cache = s.cache.lock().unwrap();
                    // SAFETY: as in `Setup::alloc`.
                    unsafe { drain(&mut cache, &s.magazines[cpu], KEY, false) };
                }
                Op::Shrink => {
                    s.drain_all(false);
                    s.cache.lock().unwrap().shrink();
                }
                _ => {}
            }
            let stats = s.stats();
            assert_eq!(stats.in_use, live.len());
            assert_eq!(stats.allocations - stats.frees, live.len() as u64);
            assert_eq!(stats.refused_frees, refused);
            // Held by the slabs (the cache's own count) but not live (the
            // model's): waiting in magazines.
            let held = s.cache.lock().unwrap().stats().in_use;
            assert_eq!(stats.in_magazines, held - live.len());
            s.verify();
        }
        s.free_all(0, live, || {});
        s.finish();
    }
}

/// What a thread writes into an object while it holds it, and when it
/// frees it.
const HELD: u64 = 0x4845_4C44_4845_4C44;
const LET_GO: u64 = 0x4C45_5447_4F21_4C47;

/// Marks `object` held by the caller; panics if someone else holds it.
fn take(object: NonNull<u8>) {
    // SAFETY: objects are at least 8 bytes, 8-aligned; every thread
    // reaches the mark only through this atomic.
    let mark = unsafe { AtomicU64::from_ptr(object.as_ptr().cast()) };
    assert_ne!(
        mark.swap(HELD, Ordering::AcqRel),
        HELD,
        "an object handed out twice"
    );
}

/// Marks `object` let go; panics if it was not held.
fn let_go(object: *mut u8) {
    // SAFETY: as in `take`.
    let mark = unsafe { AtomicU64::from_ptr(object.cast()) };
    assert_eq!(
        mark.swap(LET_GO, Ordering::AcqRel),
        HELD,
        "freed an object nobody held"
    );
}

#[test]
fn threads_free_each_others_objects_while_slabs_are_released_under_them() {
    const THREADS: usize = 3;
    /// Slabs to see retired while the threads run (or give up after 20 s).
    const RETIREMENTS: usize = 200;
    let s = Arc::new(setup(72, THREADS));
    // No reserve: a slab goes back the moment it is empty, under the
    // lock-free frees of its neighbours.
    s.cache.lock().unwrap().set_reserve(0);
    // Objects passed between threads: each slot holds one or null.
    let exchange: Arc<Vec<AtomicPtr<u8>>> = Arc::new(
        (0..64)
            .map(|_| AtomicPtr::new(core::ptr::null_mut()))
            .collect(),
    );
    let start = Arc::new(Barrier::new(THREADS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|cpu| {
            let (s, exchange, start, stop) =
                (s.clone(), exchange.clone(), start.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = crate::rng::XorShift::new(cpu as u64 + 1);
                let mut mine: Vec<NonNull<u8>> = Vec::new();
                let pass = |object: NonNull<u8>, rng: &mut crate::rng::XorShift| {
                    let slot = &exchange[rng.below(64) as usize];
                    let old = slot.swap(object.as_ptr(), Ordering::AcqRel);
                    if !old.is_null() {
                        let_go(old);
                        // SAFETY: taken from the exchange, which held the
                        // only reference.
                        assert_eq!(unsafe { s.free(cpu, old) }.1, Ok(()));
                    }
                };
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    // Grow to a random number held, then let every one go
                    // (to the exchange or freed): slabs fill and empty.
                    for _ in 0..rng.below(300) {
                        let object = s.alloc(cpu);
                        take(object);
                        mine.push(object);
                    }
                    while let Some(object) = mine.pop() {
                        if rng.below(4) == 0 {
                            pass(object, &mut rng);
                        } else {
                            let_go(object.as_ptr());
                            // SAFETY: ours, freed once.
                            assert_eq!(unsafe { s.free(cpu, object.as_ptr()) }.1, Ok(()));
                        }
                    }
                }
            })
        })
        .collect();
    // This thread drains every magazine and shrinks while the others run,
    // so slabs are also retired from here.
    start.wait();
    let began = std::time::Instant::now();
    while s.retired.load(Ordering::Relaxed) < RETIREMENTS && began.elapsed().as_secs() < 20 {
        s.drain_all(false);
        s.cache.lock().unwrap().shrink();
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(
        s.retired.load(Ordering::Relaxed) >= RETIREMENTS,
        "only {} slabs retired in 20 s",
        s.retired.load(Ordering::Relaxed)
    );
    for slot in exchange.iter() {
        let object = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !object.is_null() {
            let_go(object);
            // SAFETY: the last reference, freed once.
            assert_eq!(unsafe { s.free(0, object) }.1, Ok(()));
        }
    }
    let stats = s.stats();
    assert_eq!(stats.refused_frees, 0);
    assert_eq!(stats.in_use, 0);
    assert!(stats.magazine_hit_percent().unwrap() > 50, "{stats:?}");
    s.verify();
    Arc::into_inner(s).unwrap().finish();
}

/// Two threads free one object at once, round after round: exactly one
/// wins. The object is alone in its slab and the cache keeps no reserve,
/// so when the locked free wins the slab is retired while the other
/// thread's lock-free free may be reading its header (each lookup dawdles
/// 50 us to widen that window): without the retire protocol's wait, that
/// read lands on poisoned arena memory and the second free "wins" too
/// (seen: this test fails when `TaggedSlabs::retire` skips `quiesce`).
#[test]
fn of_two_racing_frees_of_one_object_exactly_one_wins() {
    let s = Arc::new(setup(16, 2));
    s.cache.lock().unwrap().set_reserve(0);
    s.tags.dawdle.store(true, Ordering::Relaxed);
    let turn = Arc::new(Barrier::new(2));
    let object = Arc::new(AtomicPtr::new(core::ptr::null_mut()));
    let wins = Arc::new(AtomicUsize::new(0));
    const RACES: usize = 2_000;
    let threads: Vec<_> = (0..2)
        .map(|cpu| {
            let (s, turn, object, wins) = (s.clone(), turn.clone(), object.clone(), wins.clone());
            std::thread::spawn(move || {
                for race in 0..RACES {
                    if cpu == 0 {
                        object.store(s.alloc(0).as_ptr(), Ordering::Release);
                        // Nothing else held: the slab empties on the free.
                        s.drain_all(false);
                    }
                    turn.wait();
                    let pointer = object.load(Ordering::Acquire);
                    // One thread takes the locked path straight away, by
                    // turns; the other tries its magazine first.
                    // SAFETY: both threads free the same live object; the
                    // cache takes it once and refuses the other untouched.
                    let result = unsafe {
                        if race % 2 == cpu {
                            s.cache.lock().unwrap().free(pointer)
                        } else {
                            s.free(cpu, pointer).1
                        }
                    };
                    match result {
                        Ok(()) => {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => assert!(
                            matches!(error, MmError::DoubleFree | MmError::NotInCache),
                            "{error:?}"
                        ),
                    }
                    turn.wait();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(wins.load(Ordering::Relaxed), RACES);
    let stats = s.stats();
    assert_eq!((stats.refused_frees, stats.in_use), (RACES as u64, 0));
    assert!(s.retired.load(Ordering::Relaxed) > 0);
    s.verify();
    Arc::into_inner(s).unwrap().finish();
}

/// A CPU running lock-free calls back to back takes its magazine's flag
/// again within nanoseconds of letting it go; the waits of a retire
/// (`quiesce`) and of a drain must still end (they wait for the section
/// they saw, and a drain makes the lock-free paths step aside).
#[test]
fn waits_end_while_another_thread_runs_calls_back_to_back() {
    let s = Arc::new(setup(32, 2));
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicUsize::new(0));
    let hammer = {
        let (s, stop, pairs) = (s.clone(), stop.clone(), pairs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let object = s.alloc(0);
                // SAFETY: allocated just now, freed once.
                assert_eq!(unsafe { s.free(0, object.as_ptr()) }.1, Ok(()));
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while pairs.load(Ordering::Relaxed) < 10_000 {
        std::hint::spin_loop();
    }
    // At least 2,000 waits, and on until the other thread made 10,000
    // more pairs meanwhile (under load it may be off its CPU for a
    // while), on a thread of their own, so that a wait that never ends
    // fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = {
        let (s, pairs) = (s.clone(), pairs.clone());
        std::thread::spawn(move || {
            let before = pairs.load(Ordering::Relaxed);
            let mut waits = 0;
            while waits < 2_000 || pairs.load(Ordering::Relaxed) - before < 10_000 {
                quiesce(s.magazines.iter());
                s.drain_all(false);
                waits += 1;
            }
            done.send(waits).unwrap();
        })
    };
    let waits = finished.recv_timeout(std::time::Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    assert!(waits.is_ok(), "waits still running after 60 s");
    waiter.join().unwrap();
    hammer.join().unwrap();
    s.verify();
    Arc::into_inner(s).unwrap().finish();
}
