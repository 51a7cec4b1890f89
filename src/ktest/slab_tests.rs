//! In-kernel tests of the object caches: typed boxes keep their values and
//! drop once, many objects span slabs whose frames all go back to the PMM,
//! misuse is refused with its own error, the registry is bounded, and all
//! CPUs share a cache, freeing each other's objects.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use arrayvec::ArrayVec;

use super::smp_tests::on_all_cpus;
use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::smp;
use crate::kernel_mm::slab::{self, CacheBox, DestroyRefused, ObjectCache, MAX_CACHES};
use crate::kernel_mm::{heap, pmm};
use crate::sync::IrqMutex;
use crate::{kassert, kassert_eq, kprintln};
use mm::layout::DIRECT_MAP_OFFSET;
use mm::MmError;

/// The object-cache tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "slab::object_cache_keeps_values_and_drops_each_once",
        run: keeps_values_and_drops_once,
        expects: Expect::NOTHING,
    },
    Test {
        name: "slab::objects_span_slabs_and_every_frame_goes_back",
        run: objects_span_slabs_and_frames_go_back,
        expects: Expect::NOTHING,
    },
    Test {
        name: "slab::misuse_is_refused_with_its_own_error",
        run: misuse_is_refused,
        expects: Expect::BAD_FREES,
    },
    Test {
        name: "slab::the_registry_is_bounded_and_slots_are_reused",
        run: registry_is_bounded,
        expects: Expect::NOTHING,
    },
    Test {
        name: "slab::cpus_share_a_cache_and_free_each_others_objects",
        run: cpus_share_a_cache,
        expects: Expect::NOTHING,
    },
    Test {
        name: "slab::magazines_serve_most_calls_on_every_cpu",
        run: magazines_serve_most_calls,
        expects: Expect::NOTHING,
    },
    Test {
        name: "slab::slabs_go_back_while_other_cpus_use_their_magazines",
        run: slabs_go_back_under_lock_free_calls,
        expects: Expect::NOTHING,
    },
];

/// A kernel object with a destructor that counts its runs.
struct Record {
    id: u64,
    label: [u8; 24],
    checksum: u64,
}

static RECORD_DROPS: AtomicUsize = AtomicUsize::new(0);

impl Record {
    fn new(id: u64) -> Self {
        let mut label = [0u8; 24];
        for (index, byte) in label.iter_mut().enumerate() {
            *byte = (id as u8).wrapping_add(index as u8);
        }
        Self {
            id,
            label,
            checksum: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    fn intact(&self, id: u64) -> bool {
        let fresh = Record::new(id);
        let same = self.id == id && self.label == fresh.label && self.checksum == fresh.checksum;
        core::mem::forget(fresh); // not a drop of a cached object
        same
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        RECORD_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// A static cache, registered on its first allocation and kept (it shows
/// in `slabinfo` after the suite ran).
static RECORDS: ObjectCache<Record> = ObjectCache::new("ktest-record");

fn keeps_values_and_drops_once(_: &Context<'_>) -> TestResult {
    let drops = RECORD_DROPS.load(Ordering::SeqCst);
    let mut boxes: ArrayVec<CacheBox<'static, Record>, 100> = ArrayVec::new();
    for id in 0..100 {
        let record = RECORDS.alloc(Record::new(id));
        kassert!(record.is_ok(), "allocation failed");
        if let Ok(record) = record {
            boxes.push(record);
        }
    }
    let stats = RECORDS.stats().unwrap_or_default();
    kassert_eq!(stats.in_use, 100);
    kassert!(stats.slabs >= 100usize.div_ceil(stats.objects_per_slab));
    kassert!(boxes.iter().enumerate().all(|(id, r)| r.intact(id as u64)));
    for record in &mut boxes {
        record.id += 1000; // DerefMut writes into the cache's object
    }
    kassert!(boxes
        .iter()
        .enumerate()
        .all(|(id, r)| r.id == id as u64 + 1000));
    for record in &mut boxes {
        record.id -= 1000;
    }
    // Drop every other box: each Drop runs once, the rest stay intact.
    let mut kept: ArrayVec<CacheBox<'static, Record>, 100> = ArrayVec::new();
    for (id, record) in boxes.drain(..).enumerate() {
        if id % 2 == 0 {
            drop(record);
        } else {
            kept.push(record);
        }
    }
    kassert_eq!(RECORD_DROPS.load(Ordering::SeqCst) - drops, 50);
    kassert!(kept
        .iter()
        .zip((1..100).step_by(2))
        .all(|(r, id)| r.intact(id)));
    kassert_eq!(RECORDS.stats().map(|s| s.in_use), Some(50));
    // into_inner moves the value out: no drop until the value's own.
    let first = kept.remove(0);
    let value = CacheBox::into_inner(first);
    kassert_eq!(RECORD_DROPS.load(Ordering::SeqCst) - drops, 50);
    kassert!(value.intact(1));
    drop(value);
    drop(kept);
    kassert_eq!(RECORD_DROPS.load(Ordering::SeqCst) - drops, 100);
    let stats = RECORDS.stats().unwrap_or_default();
    kassert_eq!((stats.in_use, stats.allocations - stats.frees), (0, 0));
    kassert!(
        stats.empty_slabs <= 1,
        "empty slabs beyond the reserve kept"
    );
    RECORDS.shrink();
    kassert_eq!(RECORDS.stats().map(|s| s.slabs), Some(0));
    Ok(())
}

fn objects_span_slabs_and_frames_go_back(_: &Context<'_>) -> TestResult {
    const COUNT: usize = 600;
    super::need_heap(COUNT * 64)?;
    // A run-time cache (its boxes borrow it, so it outlives them). The
    // vector before the count: heap growth must not blur the frames.
    let cache = ObjectCache::<[u64; 40]>::new("ktest-span");
    let mut boxes = Vec::with_capacity(COUNT);
    let frames = pmm::stats();
    for index in 0..COUNT as u64 {
        match cache.alloc([index; 40]) {
            Ok(object) => boxes.push(object),
            Err(_) => return Err(super::Failure::here("allocation failed")),
        }
    }
    let stats = cache.stats().unwrap_or_default();
    kprintln!(
        "    {COUNT} objects of 320 B: {} per slab, {} slabs, {} pages",
        stats.objects_per_slab,
        stats.slabs,
        stats.pages()
    );
    kassert_eq!(stats.slabs, COUNT.div_ceil(stats.objects_per_slab));
    kassert_eq!(pmm::stats().free, frames.free - stats.pages() as u64);
    let mut addresses: Vec<usize> = boxes.iter().map(|b| CacheBox::as_ptr(b).addr()).collect();
    kassert!(addresses
        .iter()
        .all(|a| a.is_multiple_of(8) && *a as u64 >= DIRECT_MAP_OFFSET));
    addresses.sort_unstable();
    kassert!(
        addresses.windows(2).all(|pair| pair[1] - pair[0] >= 320),
        "objects overlap"
    );
    kassert!(boxes
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&w| w == i as u64)));
    kassert_eq!(cache.verify(), Some(Ok(())));
    drop(addresses);
    drop(boxes);
    // Beyond the reserve, only slabs holding objects that wait in this
    // CPU's magazine are left; a shrink drains it and gives them back.
    let stats = cache.stats().unwrap_or_default();
    kassert_eq!(stats.in_use, 0);
    kassert!(stats.in_magazines <= mm::slab::magazine::ROUNDS);
    kassert!(
        stats.slabs <= 1 + stats.in_magazines,
        "more slabs kept than the reserve and the magazines explain"
    );
    cache.shrink();
    kassert_eq!(
        cache.stats().map(|s| (s.in_magazines, s.slabs)),
        Some((0, 0))
    );
    kassert_eq!(cache.destroy(), Ok(()));
    kassert!(slab::find("ktest-span").is_none());
    kassert_eq!(pmm::stats(), frames);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// Destroys a cache when the test ends, early or not (a second destroy
/// is refused as stale and ignored).
struct DestroyOnDrop(slab::CacheId);

impl Drop for DestroyOnDrop {
    fn drop(&mut self) {
        let _ = slab::destroy(self.0);
    }
}

fn misuse_is_refused(_: &Context<'_>) -> TestResult {
    let frames = pmm::stats();
    let cache = slab::create("ktest-misuse", 64, 64);
    let other = slab::create("ktest-other", 64, 64);
    let _cleanup = [&cache, &other].map(|id| id.ok().map(DestroyOnDrop));
    let (Ok(cache), Ok(other)) = (cache, other) else {
        return Err(super::Failure::here("cannot create the caches"));
    };
    let (kept, freed, foreign) = (slab::alloc(cache), slab::alloc(cache), slab::alloc(other));
    let (Ok(kept), Ok(freed), Ok(foreign)) = (kept, freed, foreign) else {
        return Err(super::Failure::here("allocation failed"));
    };
    // SAFETY: `freed` is ours, freed once here and never used again.
    let first_free = unsafe { slab::free(cache, freed.as_ptr()) };
    kassert_eq!(first_free, Ok(()));
    // It waits in this CPU's magazine (freed without the lock), where the
    // double free below finds it, and its slab's frames carry the tag.
    let stats = slab::info(cache).map(|info| info.stats).unwrap_or_default();
    kassert_eq!((stats.magazine_frees, stats.in_magazines > 0), (1, true));
    kassert!(slab::is_tagged(freed.as_ptr()) && slab::is_tagged(foreign.as_ptr()));
    let stack = 0u64;
    let cases: [(*mut u8, MmError); 5] = [
        (freed.as_ptr(), MmError::DoubleFree),
        (kept.as_ptr().wrapping_add(8), MmError::NotAtObject),
        ((&raw const stack).cast_mut().cast(), MmError::NotInCache),
        (foreign.as_ptr(), MmError::WrongCache),
        (core::ptr::null_mut(), MmError::NotInCache),
    ];
    for (pointer, error) in cases {
        let before = slab::info(cache).map(|info| info.stats);
        let refused = slab::refused_frees();
        // SAFETY: no pointer of the list is an object in use: each is
        // refused, touching no one's memory.
        let result = unsafe { slab::free(cache, pointer) };
        kassert_eq!(result, Err(error));
        kassert_eq!(slab::refused_frees(), refused + 1);
        let after = slab::info(cache).map(|info| info.stats);
        let unchanged = before.map(|stats| mm::slab::CacheStats {
            refused_frees: stats.refused_frees + 1,
            ..stats
        });
        kassert_eq!(after, unchanged);
        kassert_eq!(slab::verify(cache), Ok(()));
    }
    kassert_eq!(
        slab::destroy(cache),
        Err(DestroyRefused {
            error: MmError::CacheInUse,
            in_use: 1
        })
    );
    let again = slab::alloc(cache);
    kassert!(again.is_ok(), "a refused destroy kept the cache");
    for (id, object) in [
        (cache, again.ok()),
        (cache, Some(kept)),
        (other, Some(foreign)),
    ] {
        if let Some(object) = object {
            // SAFETY: each object is ours, in use, freed once, unused after.
            let result = unsafe { slab::free(id, object.as_ptr()) };
            kassert_eq!(result, Ok(()));
        }
    }
    kassert_eq!(slab::destroy(cache), Ok(()));
    kassert_eq!(slab::destroy(other), Ok(()));
    kassert!(
        !slab::is_tagged(kept.as_ptr()) && !slab::is_tagged(foreign.as_ptr()),
        "a destroyed cache's frames still tagged"
    );
    // A handle outlives its cache only as a refusal, even with the slot
    // taken again.
    kassert_eq!(slab::alloc(cache), Err(MmError::NoSuchCache));
    let reused = slab::create("ktest-reused", 64, 64);
    kassert!(reused.is_ok());
    kassert_eq!(slab::alloc(cache), Err(MmError::NoSuchCache));
    kassert!(slab::destroy(cache).is_err());
    if let Ok(reused) = reused {
        kassert_eq!(slab::destroy(reused), Ok(()));
    }
    kassert_eq!(slab::create("bad", 0, 8), Err(MmError::InvalidArgument));
    kassert_eq!(slab::create("bad", 64, 3), Err(MmError::InvalidArgument));
    kassert_eq!(slab::create("bad", 9000, 8), Err(MmError::InvalidArgument));
    kassert_eq!(pmm::stats(), frames);
    Ok(())
}

fn registry_is_bounded(_: &Context<'_>) -> TestResult {
    let mut made = ArrayVec::<_, MAX_CACHES>::new();
    let full = loop {
        match slab::create("ktest-filler", 8, 0) {
            Ok(id) => made.push(id),
            Err(error) => break error,
        }
    };
    kassert_eq!(full, MmError::TooManyCaches);
    kassert_eq!(slab::totals().caches, MAX_CACHES);
    let registered = made.len();
    for id in made.drain(..) {
        kassert_eq!(slab::destroy(id), Ok(()));
    }
    let again = slab::create("ktest-filler", 8, 0);
    kassert!(again.is_ok_and(|id| slab::destroy(id).is_ok()));
    kassert!(registered > 0);
    Ok(())
}

/// What each CPU stamps into its objects.
struct Stamp {
    cpu: usize,
    serial: u64,
    pattern: [u64; 6],
}

impl Stamp {
    fn new(cpu: usize, serial: u64) -> Self {
        Self {
            cpu,
            serial,
            pattern: [serial ^ cpu as u64; 6],
        }
    }

    fn intact(&self) -> bool {
        self.pattern
            .iter()
            .all(|&w| w == self.serial ^ self.cpu as u64)
    }
}

static STAMPS: ObjectCache<Stamp> = ObjectCache::new("ktest-stamp");
/// Objects each CPU hands to the next one.
const PER_CPU: usize = 16;
/// Objects in flight, one list per receiving CPU (leaf locks: objects are
/// dropped after they are released).
static PASSED: [IrqMutex<ArrayVec<CacheBox<'static, Stamp>, PER_CPU>>; smp::MAX_CPUS] =
    [const { IrqMutex::new(ArrayVec::new_const()) }; smp::MAX_CPUS];
static CROSS_FREES: AtomicUsize = AtomicUsize::new(0);

/// Every CPU at once allocates from one cache (keeping some objects a
/// while, stamped, and handing the rest to the next CPU); then every CPU
/// at once drops what it was handed, checking the stamps: with several
/// CPUs, every handed object is freed by another CPU than its allocator.
/// At the end the cache is empty and consistent.
fn cpus_share_a_cache(_: &Context<'_>) -> TestResult {
    CROSS_FREES.store(0, Ordering::SeqCst);
    // What an earlier run left when it failed (an allocation failed on
    // purpose, say) goes back first.
    for list in &PASSED {
        let left = core::mem::take(&mut *list.lock());
        drop(left);
    }
    kassert_eq!(STAMPS.stats().map_or(0, |stats| stats.in_use), 0);
    on_all_cpus(|cpu| {
        let next = (cpu + 1) % smp::online();
        let mut kept: ArrayVec<CacheBox<'static, Stamp>, 16> = ArrayVec::new();
        for serial in 0..4 * PER_CPU as u64 {
            let Ok(stamp) = STAMPS.alloc(Stamp::new(cpu, serial)) else {
                return Err(super::Failure::here("allocation failed"));
            };
            if serial % 4 == 3 {
                // (A refused object is dropped after the lock is let go.)
                let refused = PASSED[next].lock().try_push(stamp).err();
                kassert!(refused.is_none(), "the next CPU's list is full");
            } else if let Err(full) = kept.try_push(stamp) {
                drop(full);
                kassert!(kept.iter().all(|stamp| stamp.intact()), "an object changed");
                kept.clear();
            }
        }
        Ok(())
    })?;
    on_all_cpus(|cpu| {
        let previous = (cpu + smp::online() - 1) % smp::online();
        let handed = core::mem::take(&mut *PASSED[cpu].lock());
        kassert_eq!(handed.len(), PER_CPU);
        for stamp in handed {
            kassert!(stamp.intact(), "an object's contents changed");
            kassert_eq!(stamp.cpu, previous);
            if stamp.cpu != cpu {
                CROSS_FREES.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    let stats = STAMPS.stats().unwrap_or_default();
    let cross = CROSS_FREES.load(Ordering::SeqCst);
    kprintln!(
        "    {} CPUs, {} allocations, {cross} freed by another CPU, {} slabs made",
        smp::online(),
        stats.allocations,
        stats.slabs_created
    );
    kassert!(smp::online() == 1 || cross == smp::online() * PER_CPU);
    kassert_eq!(stats.in_use, 0);
    kassert_eq!(STAMPS.verify(), Some(Ok(())));
    STAMPS.shrink();
    Ok(())
}

static MAGAZINE_TEST: ObjectCache<[u64; 6]> = ObjectCache::new("ktest-magazines");

/// Every CPU at once runs pairs and bursts through one cache: the
/// magazines serve at least 90 % of the calls without the cache's lock,
/// the counts add up, and after a destroy every frame is back.
fn magazines_serve_most_calls(_: &Context<'_>) -> TestResult {
    const PAIRS: usize = 1000;
    const BURST: usize = 40;
    // A fresh registration, so the counts are this run's.
    let _ = MAGAZINE_TEST.destroy();
    let frames = pmm::stats();
    on_all_cpus(|cpu| {
        for serial in 0..PAIRS as u64 {
            let object = MAGAZINE_TEST.alloc([serial; 6]);
            kassert!(object.is_ok_and(|o| *o == [serial; 6]), "allocation failed");
        }
        let mut held: ArrayVec<CacheBox<'static, [u64; 6]>, BURST> = ArrayVec::new();
        for _ in 0..BURST {
            match MAGAZINE_TEST.alloc([cpu as u64; 6]) {
                Ok(object) => held.push(object),
                Err(_) => break,
            }
        }
        kassert!(held.is_full(), "a burst allocation failed");
        kassert!(
            held.iter().all(|o| **o == [cpu as u64; 6]),
            "an object changed"
        );
        Ok(())
    })?;
    let stats = MAGAZINE_TEST.stats().unwrap_or_default();
    let calls = (2 * smp::online() * (PAIRS + BURST)) as u64;
    let hits = stats.magazine_allocations + stats.magazine_frees;
    kprintln!(
        "    {} CPUs: {hits} of {calls} calls without the lock ({}%), {} objects cached",
        smp::online(),
        stats.magazine_hit_percent().unwrap_or(0),
        stats.in_magazines
    );
    kassert_eq!((stats.allocations + stats.frees, stats.in_use), (calls, 0));
    kassert_eq!((stats.failed, stats.refused_frees), (0, 0));
    kassert!(
        hits * 10 >= calls * 9,
        "magazines served under 90 % of the calls"
    );
    kassert_eq!(MAGAZINE_TEST.verify(), Some(Ok(())));
    kassert_eq!(MAGAZINE_TEST.destroy(), Ok(()));
    kassert_eq!(pmm::stats(), frames);
    Ok(())
}

static RETIRE_TEST: ObjectCache<[u64; 16]> = ObjectCache::new("ktest-retire");
/// Shrinks CPU 0 made, and slabs they gave back (read after the run).
static SHRINKS: AtomicUsize = AtomicUsize::new(0);
/// CPUs other than 0 still running their rounds.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// CPU 0 shrinks the cache over and over (draining every CPU's magazine,
/// giving empty slabs back: each one untagged and waited out) while the
/// other CPUs fill and empty bursts through their magazines, so slabs
/// are retired while lock-free calls run on the same cache (on one CPU,
/// it shrinks between its own bursts). Every object keeps its contents,
/// nothing is refused, the counts add up, and slabs did go back.
fn slabs_go_back_under_lock_free_calls(_: &Context<'_>) -> TestResult {
    const ROUNDS: usize = 100;
    let _ = RETIRE_TEST.destroy();
    let frames = pmm::stats();
    SHRINKS.store(0, Ordering::SeqCst);
    RUNNING.store(smp::online() - 1, Ordering::SeqCst);
    on_all_cpus(|cpu| {
        let alone = smp::online() == 1;
        if cpu == 0 && !alone {
            // Until the others are done (at least once on one CPU).
            loop {
                let done = RUNNING.load(Ordering::SeqCst) == 0;
                let pages = RETIRE_TEST.shrink();
                SHRINKS.fetch_add(1, Ordering::Relaxed);
                if pages > 0 {
                    SLABS_BACK.fetch_add(pages, Ordering::Relaxed);
                }
                if done {
                    return Ok(());
                }
            }
        }
        // Counted out however this CPU leaves (a failed check returns
        // early), so CPU 0 stops shrinking.
        let _done = (!alone).then_some(Finished);
        let mut held: ArrayVec<CacheBox<'static, [u64; 16]>, 96> = ArrayVec::new();
        for round in 0..ROUNDS as u64 {
            let count = 32 + (round as usize * 7) % 64;
            for serial in 0..count as u64 {
                match RETIRE_TEST.alloc([round << 32 | serial; 16]) {
                    Ok(object) => held.push(object),
                    Err(_) => break,
                }
            }
            kassert_eq!(held.len(), count);
            let intact = held
                .iter()
                .enumerate()
                .all(|(serial, o)| o.iter().all(|&w| w == round << 32 | serial as u64));
            kassert!(intact, "an object changed while slabs went back");
            held.clear();
            if alone {
                // One CPU: it shrinks between its own rounds.
                SLABS_BACK.fetch_add(RETIRE_TEST.shrink(), Ordering::Relaxed);
                SHRINKS.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    let stats = RETIRE_TEST.stats().unwrap_or_default();
    kprintln!(
        "    {} CPUs: {} shrinks gave back {} pages; {} slabs made, {} released, {}% hits",
        smp::online(),
        SHRINKS.load(Ordering::Relaxed),
        SLABS_BACK.swap(0, Ordering::Relaxed),
        stats.slabs_created,
        stats.slabs_released,
        stats.magazine_hit_percent().unwrap_or(0)
    );
    kassert_eq!((stats.in_use, stats.refused_frees, stats.failed), (0, 0, 0));
    kassert_eq!(stats.allocations, stats.frees);
    kassert!(stats.slabs_released > 0, "no slab went back during the run");
    kassert_eq!(RETIRE_TEST.verify(), Some(Ok(())));
    kassert_eq!(RETIRE_TEST.destroy(), Ok(()));
    kassert_eq!(pmm::stats(), frames);
    Ok(())
}

/// Pages CPU 0's shrinks gave back in the test above.
static SLABS_BACK: AtomicUsize = AtomicUsize::new(0);

/// One CPU of the test above done with its rounds, when dropped.
struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}
