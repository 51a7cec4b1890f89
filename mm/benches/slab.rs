//! Object-cache benchmark: one cache of 64-byte objects reached three
//! ways, side by side in one run, on 1 and 2 threads (a thread stands for
//! a CPU):
//!
//! * `locked-cache`: every call takes the cache's lock (a `std` mutex),
//!   as the kernel's caches did before their magazines;
//! * `magazines`: each thread's own `slab::magazine::Magazine` first, the
//!   lock only for refills and flushes (the kernel's path);
//! * `floor`: a thread-private LIFO of objects with no lock and no checks,
//!   the fastest a cache could be.
//!
//! Workloads, each a fixed number of operations (an allocation or a free)
//! split evenly between the threads: `pairs` (allocate, touch, free),
//! `burst` (256 allocations, then their frees, newest first), `fifo` (a
//! queue of 1,000 live objects: allocate one, free the oldest). Every
//! subject gets a fresh cache over its own arena per timed run; threads
//! start from a spinning start line and each times itself, and a run's
//! throughput is its operations over the time from the first thread's
//! start to the last one's end (`support::start_line`). Ratios
//! and scaling (1-thread time per operation / 2-thread time per
//! operation; 2.0 would be perfect) are medians of per-round figures.
//!
//! Run with `make bench` or `cargo host-bench --bench slab`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Instant;

use mm::slab::magazine::{self, Key, Magazine};
use mm::slab::SlabCache;
use mm::testing::{PageTags, TaggedSlabs};

mod support;
use support::start_line::{wall, Span, SpinBarrier};
use support::{median, Report, Row};

const SIZE: usize = 64;
/// Operations per timed run, all threads together.
const OPERATIONS: usize = 4_000_000;
/// Timed rounds per workload and thread count.
const ROUNDS: usize = 7;
/// Arena pages per cache: the fifo's 1,000 live objects on 2 threads,
/// plus every magazine's, with room to spare.
const PAGES: usize = 256;
const KEY: Key = Key {
    tag: NonZeroU32::MIN,
    generation: 0,
};
const SUBJECTS: [&str; 3] = ["locked-cache", "magazines", "floor"];
const WORKLOADS: [&str; 3] = ["pairs", "burst", "fifo"];

/// One thread's way to the objects.
trait Objects {
    fn alloc(&mut self) -> *mut u8;
    /// # Safety
    /// `object` came from this subject's `alloc` and is not used again.
    unsafe fn free(&mut self, object: *mut u8);
}

/// A cache, its tags and one magazine per thread.
struct Shared {
    cache: Mutex<SlabCache<TaggedSlabs>>,
    tags: std::sync::Arc<PageTags>,
    magazines: std::sync::Arc<Vec<Magazine>>,
}

impl Shared {
    fn new(threads: usize) -> Self {
        let (pages, tags, magazines, _) = TaggedSlabs::new(PAGES, KEY.tag, threads);
        let cache = SlabCache::new("bench", SIZE, 0, pages).expect("a valid size");
        Self {
            cache: Mutex::new(cache),
            tags,
            magazines,
        }
    }

    /// Drains the magazines and checks every object came back.
    fn finish(self) {
        let mut cache = self.cache.into_inner().unwrap();
        for magazine in self.magazines.iter() {
            // SAFETY: KEY names this run's one cache alone, drained here
            // before it goes.
            unsafe { magazine::drain(&mut cache, magazine, KEY, true) };
        }
        assert_eq!(cache.stats().in_use, 0, "objects left");
        assert_eq!(cache.verify(), Ok(()));
        assert_eq!(cache.stats().refused_frees, 0);
        cache.release_all().expect("nothing in use");
    }
}

struct Locked<'a>(&'a Shared);

impl Objects for Locked<'_> {
    fn alloc(&mut self) -> *mut u8 {
        self.0
            .cache
            .lock()
            .unwrap()
            .alloc()
            .expect("arena large enough")
            .as_ptr()
    }
    unsafe fn free(&mut self, object: *mut u8) {
        // SAFETY: the caller's contract.
        let freed = unsafe { self.0.cache.lock().unwrap().free(object) };
        debug_assert_eq!(freed, Ok(()));
    }
}

struct Magazines<'a> {
    shared: &'a Shared,
    mine: &'a Magazine,
}

impl Objects for Magazines<'_> {
    fn alloc(&mut self) -> *mut u8 {
        match self.mine.try_alloc(KEY) {
            Some(object) => object.as_ptr(),
            None => {
                let mut cache = self.shared.cache.lock().unwrap();
                // SAFETY: as in `Shared::finish`.
                unsafe {
                    magazine::alloc_locked(&mut cache, self.mine, KEY, self.shared.magazines.iter())
                }
                .expect("arena large enough")
                .as_ptr()
            }
        }
    }
    unsafe fn free(&mut self, object: *mut u8) {
        // SAFETY: the caller's contract.
        if unsafe { self.mine.try_free(&*self.shared.tags, KEY, object) } {
            return;
        }
        let mut cache = self.shared.cache.lock().unwrap();
        // SAFETY: the caller's contract; the key as in `Shared::finish`.
        let freed = unsafe { magazine::free_locked(&mut cache, self.mine, KEY, object) };
        debug_assert_eq!(freed, Ok(()));
    }
}

/// Thread-private objects carved from a buffer, kept on a LIFO.
struct Floor {
    buffer: Vec<[u8; SIZE]>,
    used: usize,
    free: Vec<*mut u8>,
}

impl Floor {
    fn new() -> Self {
        Self {
            buffer: vec![[0; SIZE]; 2048],
            used: 0,
            free: Vec::with_capacity(2048),
        }
    }
}

impl Objects for Floor {
    fn alloc(&mut self) -> *mut u8 {
        self.free.pop().unwrap_or_else(|| {
            self.used += 1;
            self.buffer[self.used - 1].as_mut_ptr()
        })
    }
    unsafe fn free(&mut self, object: *mut u8) {
        self.free.push(object);
    }
}

/// Writes one word of a fresh object, as a user would.
fn touch(object: *mut u8) {
    // SAFETY: a fresh object of at least 8 bytes, 8-aligned, ours.
    unsafe { object.cast::<u64>().write(black_box(1)) };
}

/// Runs `workload` for `operations` operations on `objects`.
fn run(workload: &str, objects: &mut dyn Objects, operations: usize) {
    match workload {
        "pairs" => {
            for _ in 0..operations / 2 {
                let object = objects.alloc();
                touch(object);
                // SAFETY: allocated just now, freed once.
                unsafe { objects.free(object) };
            }
        }
        "burst" => {
            let mut held = Vec::with_capacity(256);
            for _ in 0..operations / 512 {
                held.extend((0..256).map(|_| {
                    let object = objects.alloc();
                    touch(object);
                    object
                }));
                while let Some(object) = held.pop() {
                    // SAFETY: allocated above, freed once.
                    unsafe { objects.free(object) };
                }
            }
        }
        "fifo" => {
            let mut queue = VecDeque::with_capacity(1000);
            for _ in 0..1000 {
                queue.push_back(objects.alloc());
            }
            for _ in 0..operations / 2 - 1000 {
                let object = objects.alloc();
                touch(object);
                queue.push_back(object);
                let oldest = queue.pop_front().expect("1,000 held");
                // SAFETY: allocated earlier, freed once.
                unsafe { objects.free(oldest) };
            }
            while let Some(object) = queue.pop_front() {
                // SAFETY: as above.
                unsafe { objects.free(object) };
            }
        }
        _ => unreachable!("unknown workload {workload}"),
    }
}

/// Nanoseconds per operation of `workload` by `subject` on `threads`
/// threads, each timing itself from a spinning start line.
fn measure(workload: &str, subject: &str, threads: usize) -> f64 {
    let shared = Shared::new(threads);
    let start = SpinBarrier::new(threads);
    let share = OPERATIONS / threads;
    let spans: Vec<Span> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (shared, start) = (&shared, &start);
                scope.spawn(move || {
                    let mut floor = Floor::new();
                    let mut locked = Locked(shared);
                    let mut magazines = Magazines {
                        shared,
                        mine: &shared.magazines[thread],
                    };
                    let objects: &mut dyn Objects = match subject {
                        "locked-cache" => &mut locked,
                        "magazines" => &mut magazines,
                        _ => &mut floor,
                    };
                    start.wait();
                    let began = Instant::now();
                    run(workload, objects, share);
                    (began, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    shared.finish();
    wall(spans.into_iter()).as_secs_f64() * 1e9 / (share * threads) as f64
}

fn main() {
    let mut report = Report::new("slab", WORKLOADS.len() * 2 * ROUNDS);
    for workload in WORKLOADS {
        // [threads - 1][subject]: one time per round.
        let mut times: [[Vec<f64>; 3]; 2] = Default::default();
        for threads in 1..=2 {
            let name = format!(
                "{workload}-{SIZE}-{threads}-thread{}",
                if threads == 1 { "" } else { "s" }
            );
            for round in 1..=ROUNDS {
                report.step(&name, format_args!("round {round}/{ROUNDS}"));
                for (per, subject) in times[threads - 1].iter_mut().zip(SUBJECTS) {
                    per.push(measure(workload, subject, threads));
                }
            }
            let per = &times[threads - 1];
            report
                .record(Row::mean(&name, SUBJECTS[0], "ns/op", median(per[0].to_vec())).baseline());
            for index in 1..3 {
                let ratios = (0..ROUNDS).map(|r| per[index][r] / per[0][r]).collect();
                report.record(
                    Row::mean(&name, SUBJECTS[index], "ns/op", median(per[index].to_vec()))
                        .against(SUBJECTS[0], median(ratios)),
                );
            }
            report.table(&name, "alloc or free of a 64-byte object", "subject");
        }
        let name = format!("{workload}-{SIZE}-scaling");
        for (index, subject) in SUBJECTS.iter().enumerate() {
            let scaling = (0..ROUNDS)
                .map(|r| times[0][index][r] / times[1][index][r])
                .collect();
            report.record(Row::new(&name, subject, "scaling", "x", median(scaling)));
        }
        report.table(
            &name,
            "1-thread ns/op over 2-thread ns/op (2.0: perfect)",
            "subject",
        );
    }
    report.finish();
}
