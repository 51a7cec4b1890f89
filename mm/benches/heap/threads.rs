//! The kernel-object trace on 1 and 2 threads sharing one allocator
//! behind one `std::sync::Mutex`, every allocator the same way: what a
//! single global lock costs, and how far it is from scaling. Then three
//! front ends on small objects and on the whole trace: this heap behind
//! one mutex, this heap with per-thread magazines (`mm::heap::magazine`,
//! a thread standing for a CPU), and the floor, a thread-private
//! per-size-class LIFO with no checks.
//!
//! Both runs do the same total work: the trace's 20,000 live objects and
//! 250,000 free+alloc pairs, on 2 threads half of each per thread (each
//! with its own seed). Throughput is wall time / total operations, from
//! the first thread's start (each reads the clock as it leaves the start
//! barrier) to the last one's end; scaling is
//! 1-thread time / 2-thread time (2.0 would be perfect).

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Instant;

use mm::heap::magazine::{self, CpuMagazines, Machine, SlotStates};
use mm::heap::{DebugChecks, Heap, NoGrow};

use crate::support::median;
use crate::support::start_line::{wall, Span, SpinBarrier};
use crate::support::Row;
use crate::untuned::{kernel_objects, KERNEL_OBJECTS, KERNEL_PAIRS, KERNEL_SEED};
use crate::{Allocator, Bench, Timer, ARENA, NAMES};

/// Timed rounds (each runs every allocator on 1, then 2 threads).
pub const ROUNDS: usize = 5;
/// The workloads as the CSV names them, for 1 and 2 threads.
pub const WORKLOADS: [&str; 2] = ["kernel-objects-1-thread", "kernel-objects-2-threads"];

/// An allocator moved between threads.
struct Shared<'a>(&'a mut dyn Allocator);

// SAFETY: every subject is plain data over its arena (no thread-local
// state, nothing shared with another instance); it is only reached
// through the mutex below, which serialises every call, so it may be used
// from whichever thread holds the lock.
unsafe impl Send for Shared<'_> {}

/// One thread's handle: each operation takes the lock.
struct Locked<'a, 'b>(&'a Mutex<Shared<'b>>);

impl Allocator for Locked<'_, '_> {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.lock().unwrap().0.alloc(layout)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.lock().unwrap().0.free(pointer, layout) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe { self.0.lock().unwrap().0.realloc(pointer, layout, new_size) }
    }
}

/// Wall time per operation of the kernel-object trace split over
/// `threads` threads that share `a` behind one mutex.
fn run(a: &mut dyn Allocator, threads: usize) -> f64 {
    let shared = Mutex::new(Shared(a));
    let barrier = SpinBarrier::new(threads);
    let runs: Vec<(usize, Span)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (shared, barrier) = (&shared, &barrier);
                scope.spawn(move || {
                    // Bookkeeping before the start, outside the timing.
                    let mut timer = Timer::new(false);
                    let mut locked = Locked(shared);
                    barrier.wait();
                    let began = Instant::now();
                    let ops = kernel_objects(
                        &mut locked,
                        &mut timer,
                        KERNEL_OBJECTS / threads,
                        KERNEL_PAIRS / threads,
                        KERNEL_SEED + thread as u64,
                    );
                    (ops, (began, Instant::now()))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker thread panicked"))
            .collect()
    });
    let ops: usize = runs.iter().map(|(ops, _)| ops).sum();
    wall(runs.iter().map(|&(_, span)| span)).as_nanos() as f64 / ops as f64
}

/// Throughput on 1 and 2 threads and the scaling, for every allocator.
pub fn measure(bench: &mut Bench) {
    // ns/op per round per subject, on 1 and on 2 threads.
    let mut one = vec![vec![f64::NAN; NAMES.len()]; ROUNDS];
    let mut two = one.clone();
    for group in bench.groups.clone() {
        for (round, (one, two)) in one.iter_mut().zip(two.iter_mut()).enumerate() {
            bench.report.step(
                WORKLOADS[1],
                format_args!(
                    "round {}/{ROUNDS}, 1 and 2 threads, {}",
                    round + 1,
                    Bench::names(&group)
                ),
            );
            for &which in &group {
                // One untimed warm-up run (not two: each run is long).
                bench.with(which, &mut |a| black_box(run(a, 1)));
                one[which] = bench.with(which, &mut |a| run(a, 1));
                two[which] = bench.with(which, &mut |a| run(a, 2));
            }
        }
    }
    bench.record_means(WORKLOADS[0], "ns/op", &one);
    bench.record_means(WORKLOADS[1], "ns/op", &two);
    for (which, name) in NAMES.iter().enumerate() {
        let scaling: Vec<f64> = one
            .iter()
            .zip(&two)
            .map(|(one, two)| one[which] / two[which])
            .collect();
        if scaling.iter().all(|s| s.is_finite()) {
            bench.report.record(Row::new(
                WORKLOADS[1],
                name,
                "scaling",
                "x",
                median(scaling),
            ));
        }
    }
    bench.report.table(
        WORKLOADS[0],
        "the kernel-object trace on 1 thread, every operation through one mutex",
        "allocator",
    );
    bench.report.table(
        WORKLOADS[1],
        "the same work split over 2 threads sharing the allocator behind one mutex (scaling: 1-thread time / 2-thread time)",
        "allocator",
    );
}

// --- front ends: the heap behind one lock, with magazines, and the floor --

/// The front ends' workloads: small objects (the kernel-object trace's
/// sizes up to 256 B, which the magazines serve) and the whole
/// kernel-object trace (9 % of its objects, 512 and 1,024 B, always take
/// the heap lock), on 1 thread and on each of 2 threads at once (unlike
/// the runs above, which split the work: weak scaling here).
pub const FRONT_WORKLOADS: [&str; 4] = [
    "small-objects-1-thread",
    "small-objects-2-threads",
    "kernel-objects-fronts-1-thread",
    "kernel-objects-fronts-2-threads",
];
/// The front ends as the tables name them: this heap behind one mutex,
/// this heap with per-thread magazines, and the floor.
pub const FRONTS: [&str; 3] = ["this-heap-one-lock", "this-heap-magazines", "floor-lifo"];

/// Small kernel objects: the kernel-object sizes up to 256 B with their
/// weights (out of 91).
const SMALL_SIZES: [(usize, u64); 7] = [
    (16, 16),
    (32, 20),
    (64, 20),
    (96, 10),
    (128, 12),
    (192, 6),
    (256, 7),
];

/// The kernel-object trace on small objects only: `live` objects, then
/// `pairs` times a random one freed and a new one allocated, then all
/// freed in random order. Returns operations done.
fn small_objects(
    a: &mut dyn Allocator,
    timer: &mut Timer,
    live: usize,
    pairs: usize,
    seed: u64,
) -> usize {
    let mut rng = crate::Rng(mm::rng::XorShift::new(seed));
    let next = |rng: &mut crate::Rng| {
        let mut roll = rng.below(91) as u64;
        for (size, weight) in SMALL_SIZES {
            if roll < weight {
                return Layout::from_size_align(size, 8).unwrap();
            }
            roll -= weight;
        }
        unreachable!("the weights add up to 91")
    };
    let mut objects = std::mem::take(&mut timer.objects);
    assert!(objects.is_empty() && objects.capacity() >= live);
    let allocate = |a: &mut dyn Allocator, timer: &mut Timer, layout: Layout| {
        let pointer = timer.time(|| a.alloc(layout)).expect("16 MiB is plenty");
        // SAFETY: a fresh block of layout.size() > 0 bytes.
        unsafe { pointer.write(1) };
        (pointer, layout)
    };
    for _ in 0..live {
        let layout = next(&mut rng);
        objects.push(allocate(a, timer, layout));
    }
    for _ in 0..pairs {
        let (pointer, layout) = objects.swap_remove(rng.below(objects.len()));
        // SAFETY: a live block with its layout.
        timer.time(|| unsafe { a.free(pointer, layout) });
        let layout = next(&mut rng);
        objects.push(allocate(a, timer, layout));
    }
    while !objects.is_empty() {
        let (pointer, layout) = objects.swap_remove(rng.below(objects.len()));
        // SAFETY: as above.
        timer.time(|| unsafe { a.free(pointer, layout) });
    }
    timer.objects = objects;
    2 * live + 2 * pairs
}

/// A workload as the front ends run it: its trace and the CSV names on 1
/// and 2 threads.
type FrontTrace = fn(&mut dyn Allocator, &mut Timer, usize, usize, u64) -> usize;

/// One thread's handle on the heap behind one mutex (as `Locked`, without
/// the `dyn` call: the same code path as the magazines' slow paths).
struct OneLock<'h, 'a>(&'h Mutex<Heap<'a, NoGrow>>);

impl Allocator for OneLock<'_, '_> {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0
            .lock()
            .unwrap()
            .alloc(layout)
            .ok()
            .map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, _: Layout) {
        self.0.lock().unwrap().free(pointer).unwrap();
    }
    unsafe fn realloc(&mut self, _: *mut u8, _: Layout, _: usize) -> Option<*mut u8> {
        unreachable!("the front-end workloads do not realloc")
    }
}

/// One thread's handle on the heap with magazines.
struct WithMagazines<'h, 'a> {
    heap: &'h Mutex<Heap<'a, NoGrow>>,
    cpus: &'h [CpuMagazines],
    states: &'h SlotStates<'h>,
    me: usize,
}

impl<'a> Machine<'a, NoGrow> for WithMagazines<'_, 'a> {
    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<'a, NoGrow>) -> R) -> R {
        f(&mut self.heap.lock().unwrap())
    }
    fn for_each_other(&self, mut f: impl FnMut(&CpuMagazines)) {
        for (index, cpu) in self.cpus.iter().enumerate() {
            if index != self.me {
                f(cpu);
            }
        }
    }
}

impl Allocator for WithMagazines<'_, '_> {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        magazine::alloc(&self.cpus[self.me], self.states, self, layout)
            .ok()
            .map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, _: Layout) {
        magazine::free(&self.cpus[self.me], self.states, self, pointer).unwrap();
    }
    unsafe fn realloc(&mut self, _: *mut u8, _: Layout, _: usize) -> Option<*mut u8> {
        unreachable!("the front-end workloads do not realloc")
    }
}

/// The floor: what a thread-private allocator with nothing to check
/// costs. Per 16-byte size class a LIFO of freed blocks linked through
/// their first word, and a bump pointer through the thread's own share of
/// the arena; no headers, no checks, no lock, no atomics.
struct Floor {
    next: *mut u8,
    end: usize,
    lists: [*mut u8; 64],
}

// SAFETY: the floor's memory is a share of the arena no other thread
// touches; moving the handle moves all access.
unsafe impl Send for Floor {}

impl Allocator for Floor {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        let class = layout.size().max(1).div_ceil(16) - 1;
        let head = *self.lists.get(class)?;
        if !head.is_null() {
            // SAFETY: a freed block of ours; its first word links on.
            self.lists[class] = unsafe { head.cast::<*mut u8>().read() };
            return Some(head);
        }
        let bytes = (class + 1) * 16;
        if self.next.addr() + bytes > self.end {
            return None;
        }
        let block = self.next;
        // SAFETY: still inside this thread's share (checked above).
        self.next = unsafe { self.next.add(bytes) };
        Some(block)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        let class = layout.size().max(1).div_ceil(16) - 1;
        // SAFETY: a block of ours of at least 16 bytes, free again.
        unsafe { pointer.cast::<*mut u8>().write(self.lists[class]) };
        self.lists[class] = pointer;
    }
    unsafe fn realloc(&mut self, _: *mut u8, _: Layout, _: usize) -> Option<*mut u8> {
        unreachable!("the front-end workloads do not realloc")
    }
}

/// Runs `trace` whole on each of `threads` threads, each with the handle
/// `handle(thread)` makes (outside the timing); returns ns/op (wall time
/// from the first thread's start to the last one's end, over all threads'
/// operations: 1-thread ns/op / 2-thread ns/op is the throughput
/// scaling) and, if `per_op`, every operation's TSC ticks.
fn run_front<A: Allocator + Send>(
    threads: usize,
    handle: impl Fn(usize) -> A + Sync,
    trace: FrontTrace,
    per_op: bool,
) -> (f64, Vec<u32>) {
    let barrier = SpinBarrier::new(threads);
    let runs: Vec<(usize, Span, Vec<u32>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (handle, barrier) = (&handle, &barrier);
                scope.spawn(move || {
                    let mut timer = Timer::new(per_op);
                    let mut allocator = handle(thread);
                    barrier.wait();
                    let began = Instant::now();
                    // Each thread the whole trace (its own seed): the
                    // same work per thread as on one, so a thread's
                    // working set does not shrink with more threads.
                    let ops = trace(
                        &mut allocator,
                        &mut timer,
                        KERNEL_OBJECTS,
                        KERNEL_PAIRS,
                        KERNEL_SEED + thread as u64,
                    );
                    (ops, (began, Instant::now()), timer.samples)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker thread panicked"))
            .collect()
    });
    let ops: usize = runs.iter().map(|(ops, _, _)| ops).sum();
    let ns = wall(runs.iter().map(|&(_, span, _)| span)).as_nanos() as f64 / ops as f64;
    let samples = runs.into_iter().flat_map(|(_, _, ticks)| ticks).collect();
    (ns, samples)
}

/// Runs `trace` on `threads` threads through front end `front` (an index
/// of [`FRONTS`]), each on a fresh instance over the bench's arena.
fn run_front_end(
    bench: &mut Bench,
    front: usize,
    threads: usize,
    trace: FrontTrace,
    per_op: bool,
) -> (f64, Vec<u32>) {
    let base = bench.arena.base();
    match front {
        0 | 1 => {
            bench.bitmaps.iter_mut().for_each(|word| *word = 0);
            // SAFETY: the arena is ours for the heap's lifetime (this
            // call); the bitmaps are borrowed for it.
            let heap = unsafe {
                Heap::new(
                    base,
                    ARENA,
                    ARENA,
                    NoGrow,
                    &mut bench.bitmaps,
                    DebugChecks::Off,
                )
            }
            .unwrap();
            let heap = Mutex::new(heap);
            if front == 0 {
                return run_front(threads, |_| OneLock(&heap), trace, per_op);
            }
            let states = SlotStates::new(crate::slot_states(&bench.states), base.as_ptr().addr());
            let cpus: Vec<CpuMagazines> = (0..threads)
                .map(|_| CpuMagazines::new(DebugChecks::Off))
                .collect();
            let handle = |me| WithMagazines {
                heap: &heap,
                cpus: &cpus,
                states: &states,
                me,
            };
            run_front(threads, handle, trace, per_op)
        }
        _ => {
            let share = ARENA / threads;
            // The arena's address, exposed, so each thread makes its own
            // pointer into its share.
            let start = base.as_ptr().expose_provenance();
            let handle = |thread: usize| {
                let next = std::ptr::with_exposed_provenance_mut::<u8>(start + thread * share);
                Floor {
                    next,
                    end: next.addr() + share,
                    lists: [std::ptr::null_mut(); 64],
                }
            };
            run_front(threads, handle, trace, per_op)
        }
    }
}

/// Throughput on 1 and 2 threads, the scaling and p99.9, for the three
/// front ends on small objects and on the whole kernel-object trace.
pub fn measure_fronts(bench: &mut Bench) {
    let traces: [(FrontTrace, &str); 2] = [
        (small_objects, "small objects (16-256 B)"),
        (kernel_objects, "the kernel-object trace (16-1,024 B)"),
    ];
    for (pair, (trace, what)) in traces.into_iter().enumerate() {
        let names = [FRONT_WORKLOADS[2 * pair], FRONT_WORKLOADS[2 * pair + 1]];
        // ns/op per round per front end, on 1 and on 2 threads.
        let mut runs = [vec![[f64::NAN; 3]; ROUNDS], vec![[f64::NAN; 3]; ROUNDS]];
        #[allow(
            clippy::needless_range_loop,
            reason = "round indexes both runs[0] and runs[1]"
        )]
        for round in 0..ROUNDS {
            bench.report.step(
                names[1],
                format_args!(
                    "round {}/{ROUNDS}, 1 and 2 threads, {}",
                    round + 1,
                    FRONTS.join(" ")
                ),
            );
            for front in 0..FRONTS.len() {
                for (slot, threads) in runs.iter_mut().zip([1, 2]) {
                    // One untimed warm-up run, as for the runs above.
                    black_box(run_front_end(bench, front, threads, trace, false));
                    slot[round][front] = run_front_end(bench, front, threads, trace, false).0;
                }
            }
        }
        bench
            .report
            .step(names[1], "latency of each op, 1 and 2 threads");
        for (slot, threads) in [1, 2].into_iter().enumerate() {
            for (front, name) in FRONTS.iter().enumerate() {
                let ns = median(runs[slot].iter().map(|round| round[front]).collect());
                let ratio = median(
                    runs[slot]
                        .iter()
                        .map(|round| round[front] / round[2])
                        .collect(),
                );
                let row = Row::mean(names[slot], name, "ns/op", ns);
                bench.report.record(if front == 2 {
                    row.baseline()
                } else {
                    row.against(FRONTS[2], ratio)
                });
                let (_, ticks) = run_front_end(bench, front, threads, trace, true);
                let mut nanoseconds: Vec<f64> =
                    ticks.iter().map(|&t| f64::from(t) / bench.ghz).collect();
                bench.report.latencies(names[slot], name, &mut nanoseconds);
                if slot == 1 {
                    let scaling = median(
                        runs[0]
                            .iter()
                            .zip(&runs[1])
                            .map(|(one, two)| one[front] / two[front])
                            .collect(),
                    );
                    bench
                        .report
                        .record(Row::new(names[1], name, "scaling", "x", scaling));
                }
            }
        }
        bench.report.table(
            names[0],
            &format!("{what} on 1 thread, three front ends (ratio: time / the floor's)"),
            "front end",
        );
        bench.report.table(
            names[1],
            "the same on each of 2 threads at once (scaling: 2-thread throughput / 1-thread throughput)",
            "front end",
        );
    }
}
