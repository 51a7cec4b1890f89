//! The kernel-object trace on 1 and 2 threads sharing one allocator
//! behind one `std::sync::Mutex`, every allocator the same way: what a
//! single global lock costs, and how far it is from scaling.
//!
//! Both runs do the same total work: the trace's 20,000 live objects and
//! 250,000 free+alloc pairs, on 2 threads half of each per thread (each
//! with its own seed). Throughput is wall time / total operations, from a
//! barrier that starts all threads to the last one's end; scaling is
//! 1-thread time / 2-thread time (2.0 would be perfect).

use std::alloc::Layout;
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use crate::support::Row;
use crate::untuned::{kernel_objects, KERNEL_OBJECTS, KERNEL_PAIRS, KERNEL_SEED};
use crate::{Allocator, Bench, Timer, NAMES};

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
    let barrier = Barrier::new(threads + 1);
    let (ops, elapsed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (shared, barrier) = (&shared, &barrier);
                scope.spawn(move || {
                    // Bookkeeping before the start, outside the timing.
                    let mut timer = Timer::new(false);
                    let mut locked = Locked(shared);
                    barrier.wait();
                    kernel_objects(
                        &mut locked,
                        &mut timer,
                        KERNEL_OBJECTS / threads,
                        KERNEL_PAIRS / threads,
                        KERNEL_SEED + thread as u64,
                    )
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let ops: usize = workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker thread panicked"))
            .sum();
        (ops, start.elapsed())
    });
    elapsed.as_nanos() as f64 / ops as f64
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
                crate::median(scaling),
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
