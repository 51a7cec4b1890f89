//! Workloads written from a description of what kernels and programs do,
//! not from what this heap is good at, and never tuned on: a trace of
//! kernel objects, a FIFO queue, vectors grown by realloc, page-sized
//! aligned buffers, and long-lived blocks among short-lived churn (timed,
//! then run to the first failure for the heap's efficiency).
//!
//! Each is a fixed request sequence from a seeded `XorShift`, the same for
//! every allocator; every block is written once (its first byte; for a
//! grown vector its new last byte) so that no allocator is spared the
//! cache miss of touching what it hands out.

use std::alloc::Layout;
use std::mem::take;

use mm::rng::XorShift;

use crate::support::Row;
use crate::{Allocator, Bench, Rng, Timer, Workload, ARENA, NAMES};

/// Timed rounds of each workload here.
const ROUNDS: usize = 5;

/// The timed workloads, in the order they run.
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "kernel-objects",
        title: "20,000 kernel objects (16 B-1 KiB, mostly small) live, 250,000 random free+alloc pairs",
        trace: kernel_objects_trace,
        rounds: ROUNDS,
    },
    Workload {
        name: "fifo-queue",
        title: "a queue of 2,000 blocks of 32-2,048 B: 300,000 times free the oldest, allocate a new one",
        trace: fifo_queue,
        rounds: ROUNDS,
    },
    Workload {
        name: "realloc-growth",
        title: "100 vectors grown from 16 B to 64 KiB by realloc (x2 or x1.5), interleaved, 150,000 steps",
        trace: realloc_growth,
        rounds: ROUNDS,
    },
    Workload {
        name: "page-buffers",
        title: "400 buffers of 4, 8 or 16 KiB aligned to 4 KiB live, 200,000 random free+alloc pairs",
        trace: page_buffers,
        rounds: ROUNDS,
    },
    Workload {
        name: "mixed-lifetimes",
        title: "long-lived blocks (a few 64-512 KiB, many small) among short-lived churn, 200,000 steps",
        trace: mixed_lifetimes_trace,
        rounds: ROUNDS,
    },
];

/// The efficiency measure's workload name.
pub const EFFICIENCY: &str = "mixed-lifetimes-efficiency";

/// Kernel object sizes (bytes) and their weights out of 100: mostly the
/// small structures (list nodes, inodes' parts, credentials, buffers'
/// heads), some page-table-sized and I/O-sized ones.
const OBJECT_SIZES: [(usize, usize); 9] = [
    (16, 16),
    (32, 20),
    (64, 20),
    (96, 10),
    (128, 12),
    (192, 6),
    (256, 7),
    (512, 5),
    (1024, 4),
];
const _: () = {
    let mut total = 0;
    let mut i = 0;
    while i < OBJECT_SIZES.len() {
        total += OBJECT_SIZES[i].1;
        i += 1;
    }
    assert!(total == 100);
};

impl Rng {
    /// A kernel object's layout (8-byte aligned, as kmalloc's callers ask).
    fn object(&mut self) -> Layout {
        let mut roll = self.below(100);
        for (size, weight) in OBJECT_SIZES {
            if roll < weight {
                return layout(size, 8);
            }
            roll -= weight;
        }
        unreachable!("the weights add up to 100")
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("a valid layout")
}

/// Allocates `layout` (timed) and writes the block's first byte; the
/// workloads are sized to fit every allocator's 16 MiB.
fn allocate(a: &mut dyn Allocator, timer: &mut Timer, layout: Layout) -> *mut u8 {
    let pointer = timer
        .time(|| a.alloc(layout))
        .unwrap_or_else(|| panic!("{layout:?} does not fit: the workload outgrew 16 MiB"));
    // SAFETY: a fresh block of layout.size() > 0 bytes.
    unsafe { pointer.write(1) };
    pointer
}

/// Frees a live block (timed).
fn free(a: &mut dyn Allocator, timer: &mut Timer, (pointer, layout): (*mut u8, Layout)) {
    // SAFETY: the workloads pass live blocks with their layouts.
    timer.time(|| unsafe { a.free(pointer, layout) });
}

/// Frees every block of `blocks` in random order.
fn free_all(
    a: &mut dyn Allocator,
    timer: &mut Timer,
    blocks: &mut Vec<(*mut u8, Layout)>,
    rng: &mut Rng,
) {
    while !blocks.is_empty() {
        let block = blocks.swap_remove(rng.below(blocks.len()));
        free(a, timer, block);
    }
}

/// The kernel-object trace: `live` objects allocated, then `pairs` times
/// a random one freed and a new one allocated, then all freed in random
/// order. Returns the operations done.
pub fn kernel_objects(
    a: &mut dyn Allocator,
    timer: &mut Timer,
    live: usize,
    pairs: usize,
    seed: u64,
) -> usize {
    let mut rng = Rng(XorShift::new(seed));
    let mut objects = take(&mut timer.objects);
    assert!(objects.is_empty() && objects.capacity() >= live);
    for _ in 0..live {
        let layout = rng.object();
        objects.push((allocate(a, timer, layout), layout));
    }
    for _ in 0..pairs {
        let old = objects.swap_remove(rng.below(objects.len()));
        free(a, timer, old);
        let layout = rng.object();
        objects.push((allocate(a, timer, layout), layout));
    }
    free_all(a, timer, &mut objects, &mut rng);
    timer.objects = objects;
    2 * live + 2 * pairs
}

/// Live objects and steady-state pairs of the kernel-object trace.
pub const KERNEL_OBJECTS: usize = 20_000;
pub const KERNEL_PAIRS: usize = 250_000;
/// The kernel-object trace's seed.
pub const KERNEL_SEED: u64 = 0x5EED_0B1E;

fn kernel_objects_trace(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    kernel_objects(a, timer, KERNEL_OBJECTS, KERNEL_PAIRS, KERNEL_SEED)
}

/// A FIFO: blocks of 32-2,048 B allocated at the head and freed at the
/// tail, 2,000 in flight.
fn fifo_queue(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    const IN_FLIGHT: usize = 2_000;
    const STEPS: usize = 300_000;
    let mut rng = Rng(XorShift::new(0xF1F0));
    let mut queue = take(&mut timer.objects);
    assert!(queue.is_empty() && queue.capacity() >= IN_FLIGHT);
    let next = |rng: &mut Rng| layout(32 + rng.below(2_017), 8);
    for _ in 0..IN_FLIGHT {
        let layout = next(&mut rng);
        queue.push((allocate(a, timer, layout), layout));
    }
    // The queue as a ring: slot `step % IN_FLIGHT` holds the oldest block.
    for step in 0..STEPS {
        let slot = step % IN_FLIGHT;
        free(a, timer, queue[slot]);
        let layout = next(&mut rng);
        queue[slot] = (allocate(a, timer, layout), layout);
    }
    for i in 0..IN_FLIGHT {
        free(a, timer, queue[(STEPS + i) % IN_FLIGHT]);
    }
    queue.clear();
    timer.objects = queue;
    2 * IN_FLIGHT + 2 * STEPS
}

/// Vectors grown by realloc: 100 of them, each step one picked at random
/// grows by x2 or x1.5 (capped at 64 KiB); one at 64 KiB is freed and
/// starts again at 16 B. Counts how often a growth kept the address.
fn realloc_growth(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    const VECTORS: usize = 100;
    const STEPS: usize = 150_000;
    const FIRST: usize = 16;
    const LAST: usize = 64 << 10;
    let mut rng = Rng(XorShift::new(0x6A0));
    let mut vectors = take(&mut timer.objects);
    assert!(vectors.is_empty() && vectors.capacity() >= VECTORS);
    let mut ops = 0;
    for _ in 0..VECTORS {
        vectors.push((allocate(a, timer, layout(FIRST, 8)), layout(FIRST, 8)));
        ops += 1;
    }
    for _ in 0..STEPS {
        let index = rng.below(VECTORS);
        let (pointer, old) = vectors[index];
        if old.size() >= LAST {
            free(a, timer, vectors[index]);
            vectors[index] = (allocate(a, timer, layout(FIRST, 8)), layout(FIRST, 8));
            ops += 2;
            continue;
        }
        let size = old.size();
        let new_size = if rng.below(2) == 0 {
            size * 2
        } else {
            size + size / 2
        }
        .min(LAST);
        // SAFETY: a live block with its layout.
        let moved = timer
            .time(|| unsafe { a.realloc(pointer, old, new_size) })
            .expect("the vectors fit in 16 MiB");
        timer.grown += 1;
        timer.grown_in_place += usize::from(moved == pointer);
        // SAFETY: the block now holds new_size bytes.
        unsafe { moved.add(new_size - 1).write(1) };
        vectors[index] = (moved, layout(new_size, 8));
        ops += 1;
    }
    ops += vectors.len();
    free_all(a, timer, &mut vectors, &mut rng);
    timer.objects = vectors;
    ops
}

/// Page-sized buffers: 4, 8 or 16 KiB, aligned to 4 KiB, 400 live, freed
/// at random and replaced.
fn page_buffers(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    const BUFFERS: usize = 400;
    const PAIRS: usize = 200_000;
    const PAGE: usize = 4096;
    let mut rng = Rng(XorShift::new(0x4096));
    let mut buffers = take(&mut timer.objects);
    assert!(buffers.is_empty() && buffers.capacity() >= BUFFERS);
    let buffer = |a: &mut dyn Allocator, timer: &mut Timer, rng: &mut Rng| {
        let layout = layout(PAGE << rng.below(3), PAGE);
        let pointer = allocate(a, timer, layout);
        assert!(
            (pointer as usize).is_multiple_of(PAGE),
            "{pointer:?} is not page-aligned"
        );
        (pointer, layout)
    };
    for _ in 0..BUFFERS {
        buffers.push(buffer(a, timer, &mut rng));
    }
    for _ in 0..PAIRS {
        let old = buffers.swap_remove(rng.below(buffers.len()));
        free(a, timer, old);
        buffers.push(buffer(a, timer, &mut rng));
    }
    free_all(a, timer, &mut buffers, &mut rng);
    timer.objects = buffers;
    2 * BUFFERS + 2 * PAIRS
}

/// Short-lived blocks in flight at most in the mixed-lifetimes workload.
const SHORT_LIVED: usize = 256;

/// Where the mixed-lifetimes workload stopped.
enum Stop {
    /// After the steps asked for: the operations done.
    Done(usize),
    /// At the first failed allocation: the live requested bytes then and
    /// the request that failed.
    Failed { live: usize, request: Layout },
}

/// Long-lived blocks among short-lived churn. One step in 32 is a
/// long-lived event: a new long-lived block (1 in 256 of them 64-512 KiB,
/// the others kernel objects), and one time in 4 also the end of a random
/// older one; the other steps allocate (up to 256 in flight) or free
/// short-lived blocks (three in four kernel objects, the rest 1-8 KiB).
/// Runs `steps` steps, or to the first failure if `steps` is `None`.
fn mixed_lifetimes(
    a: &mut dyn Allocator,
    timer: &mut Timer,
    long: &mut Vec<(*mut u8, Layout)>,
    short: &mut Vec<(*mut u8, Layout)>,
    steps: Option<usize>,
) -> Stop {
    let mut rng = Rng(XorShift::new(0x11FE));
    let mut ops = 0;
    let mut live = 0;
    let mut step = 0;
    let mut failed = None;
    while steps.is_none_or(|steps| step < steps) {
        step += 1;
        let (pool, request) = if rng.below(32) == 0 {
            if !long.is_empty() && rng.below(4) == 0 {
                let old = long.swap_remove(rng.below(long.len()));
                live -= old.1.size();
                free(a, timer, old);
                ops += 1;
            }
            let request = if rng.below(256) == 0 {
                layout((64 << 10) + rng.below((448 << 10) + 1), 8)
            } else {
                rng.object()
            };
            (&mut *long, request)
        } else if short.len() < SHORT_LIVED && (short.is_empty() || rng.below(2) == 0) {
            let request = if rng.below(4) == 0 {
                layout(1024 + rng.below(7 << 10), 8)
            } else {
                rng.object()
            };
            (&mut *short, request)
        } else {
            let old = short.swap_remove(rng.below(short.len()));
            live -= old.1.size();
            free(a, timer, old);
            ops += 1;
            continue;
        };
        let Some(pointer) = timer.time(|| a.alloc(request)) else {
            failed = Some(request);
            break;
        };
        // SAFETY: a fresh block of request.size() > 0 bytes.
        unsafe { pointer.write(1) };
        pool.push((pointer, request));
        live += request.size();
        ops += 1;
    }
    match failed {
        Some(request) => Stop::Failed { live, request },
        None => Stop::Done(ops),
    }
}

/// The timed mixed-lifetimes run: 200,000 steps (at the end 4,689
/// long-lived blocks, 5.7 MiB), then everything freed.
fn mixed_lifetimes_trace(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    let mut long = take(&mut timer.objects);
    let mut short = take(&mut timer.pool);
    assert!(long.is_empty() && short.is_empty() && short.capacity() >= SHORT_LIVED);
    let Stop::Done(ops) = mixed_lifetimes(a, timer, &mut long, &mut short, Some(200_000)) else {
        panic!("the timed mixed-lifetimes run does not fit in 16 MiB");
    };
    let done = ops + long.len() + short.len();
    let mut rng = Rng(XorShift::new(1));
    free_all(a, timer, &mut long, &mut rng);
    free_all(a, timer, &mut short, &mut rng);
    timer.objects = long;
    timer.pool = short;
    done
}

/// The largest block (8-byte aligned, to 16 bytes) `a` can still
/// allocate, by bisection: each probe allocated and freed at once.
fn largest_allocatable(a: &mut dyn Allocator) -> usize {
    let (mut fits, mut fails) = (0, ARENA + 16);
    while fails - fits > 16 {
        let size = (fits + fails) / 2 / 16 * 16;
        match a.alloc(layout(size.max(16), 8)) {
            Some(pointer) => {
                // SAFETY: just allocated with this layout.
                unsafe { a.free(pointer, layout(size.max(16), 8)) };
                fits = size.max(16);
            }
            None => fails = size.max(16),
        }
    }
    fits
}

/// The mixed-lifetimes workload run to its first failure, for every
/// allocator: live requested bytes then as a share of the arena, the
/// largest block still to be had, and the request that failed.
pub fn efficiency(bench: &mut Bench) {
    bench
        .report
        .step(EFFICIENCY, "every allocator to its first failure");
    for (which, name) in NAMES.iter().enumerate() {
        let (live, request, largest) = bench.with(which, &mut |a| {
            let (mut long, mut short) = (Vec::new(), Vec::new());
            let mut timer = Timer::new(false);
            let Stop::Failed { live, request } =
                mixed_lifetimes(a, &mut timer, &mut long, &mut short, None)
            else {
                unreachable!("runs until a failure");
            };
            let largest = largest_allocatable(a);
            for block in long.into_iter().chain(short) {
                free(a, &mut timer, block);
            }
            (live, request, largest)
        });
        let report = &mut bench.report;
        report.record(Row::new(
            EFFICIENCY,
            name,
            "efficiency",
            "%",
            live as f64 * 100.0 / ARENA as f64,
        ));
        report.record(Row::new(
            EFFICIENCY,
            name,
            "largest-allocatable",
            "KiB",
            largest as f64 / 1024.0,
        ));
        report.record(Row::new(
            EFFICIENCY,
            name,
            "failed-request",
            "KiB",
            request.size() as f64 / 1024.0,
        ));
    }
    bench.report.table(
        EFFICIENCY,
        "mixed lifetimes to the first failure: live requested bytes / 16 MiB, the largest block still allocatable, the request that failed",
        "allocator",
    );
}
