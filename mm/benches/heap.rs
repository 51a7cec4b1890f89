//! Heap benchmark: this kernel's heap (slabs + TLSF) against the
//! best-known no_std allocators, side by side in one run, the same request
//! sequence for all, a fresh 16 MiB arena each per run (`peers.rs`: talc 5
//! and 4, rlsf, dlmalloc, linked_list_allocator, buddy_system_allocator).
//!
//! Our own workloads, the ones the heap was tuned on: random
//! alloc/free/realloc mixes with ~300 and ~4,000 live blocks (sizes skewed
//! small: mostly 8 B-4 KiB, some up to 30 KiB); 25,000 64-byte blocks
//! freed in random order; and heap efficiency (live requested bytes /
//! arena at the first failed allocation of a growing random mix). Then
//! workloads written from a description, not tuned for (`untuned.rs`: a
//! kernel-object trace, a FIFO queue, realloc growth, page-sized aligned
//! buffers, mixed lifetimes with their efficiency), and the kernel-object
//! trace on 1 and 2 threads sharing one allocator behind a mutex
//! (`threads.rs`).
//!
//! Throughput is the whole workload's time per operation with nothing else
//! timed, over 7 rounds (5 for the untuned workloads) that each run every
//! allocator once in turn, each timed run on a fresh allocator after two
//! untimed warm-up runs of the same workload (one for the long threaded
//! runs). Ratios: the median of the per-round ratios; the two list-based
//! allocators run as a second group, see `main`. Latencies (p50, p99,
//! p99.9, max) come from a separate run that reads the TSC around every
//! operation.
//!
//! Run with `make bench` or `cargo host-bench --bench heap`; arguments
//! (`-- 4000 burst`) keep only workloads whose name contains one of them
//! (`=kernel-objects`: that workload alone, not the threaded ones),
//! `ours` (or `talc`, `talc4`, `rlsf`, `dlmalloc`) keeps only that
//! allocator (for profiling). Progress goes to stderr, tables to stdout,
//! every figure to `build/bench/heap.csv` (`support`).

use std::alloc::Layout;
use std::arch::x86_64::_rdtsc;
use std::hint::black_box;
use std::time::Instant;

mod support;
use support::{median, Report, Row};

#[path = "heap/peers.rs"]
mod peers;
#[path = "heap/threads.rs"]
mod threads;
#[path = "heap/untuned.rs"]
mod untuned;
use peers::{with_allocator, Allocator, ARENA, FAST, NAMES, SLOW};

use mm::heap::{Heap, NoGrow};
use mm::rng::XorShift;
use mm::testing::Arena;

/// Throughput rounds of our own workloads (each runs every allocator once).
const ROUNDS: usize = 7;
/// Untimed runs before each timed run.
const WARM_UPS: usize = 2;

/// A workload: runs its request sequence on `a`, returns operations done.
type Trace = fn(&mut dyn Allocator, &mut Timer) -> usize;

/// A workload as the tables and the CSV name it.
struct Workload {
    /// kebab-case, the CSV's `workload`.
    name: &'static str,
    /// One line for the table's head.
    title: &'static str,
    trace: Trace,
    /// Timed rounds.
    rounds: usize,
}

/// Bytes in a cache line.
const LINE: usize = 64;

/// The magazines' state bytes in `states` (see `Bench::states`),
/// starting on a cache line as the kernel's do (it takes them from whole
/// pages): a `Vec` of this size comes from `mmap` with its data 16 bytes
/// into a page, which would put each slab page's 256 state bytes on five
/// lines, two of them shared with the neighbouring pages (docs/heap.md).
fn slot_states(states: &[std::sync::atomic::AtomicU8]) -> &[std::sync::atomic::AtomicU8] {
    let skip = states.as_ptr().addr().wrapping_neg() % LINE;
    &states[skip..skip + mm::heap::magazine::state_bytes(ARENA)]
}

/// What every part of a run shares.
struct Bench {
    arena: Arena,
    /// This heap's side tables, reused by each fresh instance.
    bitmaps: Vec<u64>,
    /// The magazines' state bytes for the arena (`threads.rs`), with a
    /// cache line to spare: see `slot_states`.
    states: Vec<std::sync::atomic::AtomicU8>,
    /// TSC ticks per ns.
    ghz: f64,
    report: Report,
    /// Subjects measured together (see `main`), indices of `NAMES`.
    groups: Vec<Vec<usize>>,
}

impl Bench {
    /// Runs `f` with a fresh allocator number `which`.
    fn with<R>(&mut self, which: usize, f: &mut dyn FnMut(&mut dyn Allocator) -> R) -> R {
        with_allocator(which, &self.arena, &mut self.bitmaps, f)
    }

    /// Runs `trace` WARM_UPS times untimed, each on a fresh allocator.
    fn warm_up(&mut self, which: usize, trace: Trace) {
        for _ in 0..WARM_UPS {
            self.with(which, &mut |a| black_box(trace(a, &mut Timer::new(false))));
        }
    }

    /// The names of a group's subjects, for progress lines.
    fn names(group: &[usize]) -> String {
        group
            .iter()
            .map(|&w| NAMES[w])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Records the rows of metric `mean` in `unit` of `workload`, from
    /// `runs[round][subject]` (NaN: not run): the median over rounds,
    /// and against this heap the median of the per-round ratios within
    /// the first group, the ratio of the medians for the others (which
    /// ran at other times).
    fn record_means(&mut self, workload: &str, unit: &str, runs: &[Vec<f64>]) {
        let ours = median(runs.iter().map(|round| round[0]).collect());
        for (which, name) in NAMES.iter().enumerate() {
            if runs.iter().any(|round| round[which].is_nan()) {
                continue;
            }
            let ns = median(runs.iter().map(|round| round[which]).collect());
            let row = Row::mean(workload, name, unit, ns);
            self.report.record(if which == 0 {
                row.baseline()
            } else if ours.is_nan() {
                row
            } else if self.groups[0].contains(&which) {
                row.against(
                    NAMES[0],
                    median(runs.iter().map(|round| round[which] / round[0]).collect()),
                )
            } else {
                row.against(NAMES[0], ns / ours)
            });
        }
    }

    /// Throughput and latency of `workload` for every subject.
    fn measure(&mut self, workload: &Workload) {
        let Workload {
            name,
            title,
            trace,
            rounds,
        } = *workload;
        let mut runs = vec![vec![f64::NAN; NAMES.len()]; rounds];
        let mut timers: Vec<Option<Timer>> = (0..NAMES.len()).map(|_| None).collect();
        for group in self.groups.clone() {
            for (round, times) in runs.iter_mut().enumerate() {
                self.report.step(
                    name,
                    format_args!("round {}/{rounds}, {}", round + 1, Self::names(&group)),
                );
                for &which in &group {
                    self.warm_up(which, trace);
                    times[which] = self.with(which, &mut |a| {
                        let mut timer = Timer::new(false);
                        let start = Instant::now();
                        let ops = black_box(trace(a, &mut timer));
                        start.elapsed().as_nanos() as f64 / ops as f64
                    });
                }
            }
            self.report.step(
                name,
                format_args!("latency of each op, {}", Self::names(&group)),
            );
            for &which in &group {
                self.warm_up(which, trace);
                timers[which] = Some(self.with(which, &mut |a| {
                    let mut timer = Timer::new(true);
                    trace(a, &mut timer);
                    timer
                }));
            }
        }
        self.record_means(name, "ns/op", &runs);
        for (which, timer) in timers.iter().enumerate() {
            let Some(timer) = timer else { continue };
            let mut nanoseconds: Vec<f64> = timer
                .samples
                .iter()
                .map(|&c| f64::from(c) / self.ghz)
                .collect();
            self.report.latencies(name, NAMES[which], &mut nanoseconds);
            if timer.grown > 0 {
                self.report.record(Row::new(
                    name,
                    NAMES[which],
                    "grown-in-place",
                    "%",
                    timer.grown_in_place as f64 * 100.0 / timer.grown as f64,
                ));
            }
        }
        self.report.table(name, title, "allocator");
    }
}

/// xorshift64*: the same request sequence for every allocator.
struct Rng(XorShift);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0.below(bound as u64) as usize
    }
    /// Sizes skewed small: 75 % 8-256 B, 22 % 256 B-4 KiB, 3 % 4-30 KiB.
    fn size(&mut self) -> usize {
        match self.below(100) {
            0..75 => 8 + self.below(249),
            75..97 => 256 + self.below(3841),
            _ => 4096 + self.below(26_625),
        }
    }
    /// Mostly 8- or 16-byte alignment, sometimes up to 4096.
    fn align(&mut self) -> usize {
        match self.below(100) {
            0..85 => 8,
            85..97 => 16,
            _ => 1 << (5 + self.below(8)),
        }
    }
}

/// Blocks a workload may keep live in `Timer::objects`.
const OBJECTS_CAPACITY: usize = 25_000;
/// Blocks a workload may keep live in `Timer::pool`.
const POOL_CAPACITY: usize = 1_000;
/// Operations a workload may time one by one in `Timer::samples`.
const SAMPLES_CAPACITY: usize = 1_100_000;

/// Timer: either nothing (throughput) or the TSC around every operation.
struct Timer {
    per_op: bool,
    samples: Vec<u32>,
    /// The workloads' own bookkeeping, allocated once up front: the
    /// driver's mallocs (and the page faults of fresh mmap'd memory) would
    /// otherwise land in some allocators' timed runs and not others'.
    live: Vec<(*mut u8, Layout)>,
    blocks: Vec<*mut u8>,
    /// The untuned workloads' blocks, their pages touched before the run.
    objects: Vec<(*mut u8, Layout)>,
    pool: Vec<(*mut u8, Layout)>,
    /// Reallocs that grew a block, and those of them that returned the
    /// same address (counted by the workloads that want them).
    grown: usize,
    grown_in_place: usize,
}

/// An empty vector with room for `capacity` blocks, every page of it
/// already written (so that no page fault lands in a timed run).
fn touched(capacity: usize) -> Vec<(*mut u8, Layout)> {
    let mut blocks = Vec::with_capacity(capacity);
    blocks.resize(capacity, (std::ptr::null_mut(), Layout::new::<u8>()));
    blocks.clear();
    blocks
}

impl Timer {
    fn new(per_op: bool) -> Self {
        Self {
            per_op,
            samples: Vec::with_capacity(if per_op { SAMPLES_CAPACITY } else { 0 }),
            live: Vec::with_capacity(8_000),
            blocks: Vec::with_capacity(25_000),
            objects: touched(OBJECTS_CAPACITY),
            pool: touched(POOL_CAPACITY),
            grown: 0,
            grown_in_place: 0,
        }
    }

    #[inline(always)]
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if !self.per_op {
            return f();
        }
        // SAFETY: RDTSC is available on every x86-64 CPU.
        let start = unsafe { _rdtsc() };
        let result = f();
        // SAFETY: as above.
        let cycles = unsafe { _rdtsc() } - start;
        self.samples.push(cycles.min(u32::MAX as u64) as u32);
        result
    }
}

/// The random mix: keeps about `target` blocks live. Returns operations done.
fn mix(a: &mut dyn Allocator, target: usize, operations: usize, timer: &mut Timer) -> usize {
    let mut rng = Rng(XorShift::new(0x1234_5678_9ABC_DEF1));
    let mut live = std::mem::take(&mut timer.live);
    assert!(live.is_empty() && live.capacity() > target * 3 / 2);
    for _ in 0..operations {
        let roll = rng.below(100);
        if live.len() < target / 2 || (roll < 45 && live.len() < target * 3 / 2) {
            let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
            let pointer = timer
                .time(|| a.alloc(layout))
                .expect("16 MiB is plenty for the mix");
            // SAFETY: a fresh block of layout.size() bytes.
            unsafe { pointer.write(1) };
            live.push((pointer, layout));
        } else if roll < 90 || live.is_empty() {
            let (pointer, layout) = live.swap_remove(rng.below(live.len()));
            // SAFETY: a live block with its layout.
            timer.time(|| unsafe { a.free(pointer, layout) });
        } else {
            let index = rng.below(live.len());
            let (pointer, layout) = live[index];
            let new_size = rng.size();
            // SAFETY: a live block with its layout.
            let moved = timer
                .time(|| unsafe { a.realloc(pointer, layout, new_size) })
                .expect("realloc");
            live[index] = (
                moved,
                Layout::from_size_align(new_size, layout.align()).unwrap(),
            );
        }
    }
    for (pointer, layout) in live.drain(..) {
        // SAFETY: live blocks with their layouts.
        unsafe { a.free(pointer, layout) };
    }
    timer.live = live;
    operations
}

/// 25,000 64-byte blocks, then freed in random order.
fn many_small(a: &mut dyn Allocator, timer: &mut Timer) -> usize {
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut blocks = std::mem::take(&mut timer.blocks);
    assert!(blocks.is_empty() && blocks.capacity() >= 25_000);
    for _ in 0..25_000 {
        blocks.push(timer.time(|| a.alloc(layout)).unwrap());
    }
    let mut rng = Rng(XorShift::new(42));
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, rng.below(i + 1));
    }
    for pointer in blocks.drain(..) {
        // SAFETY: live blocks of this layout.
        timer.time(|| unsafe { a.free(pointer, layout) });
    }
    timer.blocks = blocks;
    50_000
}

/// Live requested bytes / arena at the first failure of a growing mix.
fn efficiency(a: &mut dyn Allocator) -> f64 {
    let mut rng = Rng(XorShift::new(7));
    let mut live: Vec<(*mut u8, Layout)> = Vec::new();
    let mut bytes = 0usize;
    loop {
        if rng.below(100) < 70 || live.is_empty() {
            let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
            match a.alloc(layout) {
                Some(pointer) => {
                    live.push((pointer, layout));
                    bytes += layout.size();
                }
                None => break,
            }
        } else {
            let (pointer, layout) = live.swap_remove(rng.below(live.len()));
            bytes -= layout.size();
            // SAFETY: a live block with its layout.
            unsafe { a.free(pointer, layout) };
        }
    }
    for (pointer, layout) in live {
        // SAFETY: live blocks with their layouts.
        unsafe { a.free(pointer, layout) };
    }
    bytes as f64 / ARENA as f64
}

/// This heap's own efficiency measure: the growing random mix.
fn tuned_efficiency(bench: &mut Bench) {
    bench
        .report
        .step("efficiency", "every allocator until its first failure");
    for (which, name) in NAMES.iter().enumerate() {
        let share = bench.with(which, &mut |a| efficiency(a));
        bench.report.record(Row::new(
            "efficiency",
            name,
            "efficiency",
            "%",
            share * 100.0,
        ));
    }
    bench.report.table(
        "efficiency",
        "live requested bytes / 16 MiB at the first failed allocation of a growing mix",
        "allocator",
    );
    println!(
        "  (this heap keeps 1 bit per 16 bytes of arena and a slab page table outside it: {} KiB for 16 MiB)",
        Heap::<NoGrow>::bitmap_words(ARENA) * 8 / 1024
    );
}

fn main() {
    let ghz = support::tsc_ghz();
    println!(
        "heap benchmark: this heap (slab+TLSF) and its peers, 16 MiB arena each, the same request"
    );
    println!("sequence, one run (TSC {ghz:.2} GHz)");
    let tuned = [
        Workload {
            name: "mix-300-live",
            title: "1,000,000 random allocs, frees and reallocs, ~300 blocks live",
            trace: |a, t| mix(a, 300, 1_000_000, t),
            rounds: ROUNDS,
        },
        Workload {
            name: "mix-4000-live",
            title: "1,000,000 random allocs, frees and reallocs, ~4,000 blocks live",
            trace: |a, t| mix(a, 4000, 1_000_000, t),
            rounds: ROUNDS,
        },
        Workload {
            name: "burst-25k-64b",
            title: "25,000 x 64 B allocated, then freed in random order",
            trace: many_small,
            rounds: ROUNDS,
        },
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // "ours", "talc", ...: time that allocator alone (for profilers).
    const ALONE: [(&str, usize); 5] = [
        ("ours", 0),
        ("talc", 1),
        ("talc4", 2),
        ("rlsf", 3),
        ("dlmalloc", 4),
    ];
    let alone = ALONE
        .iter()
        .find(|(short, _)| filters.iter().any(|f| f == short))
        .map(|&(_, which)| which);
    let wanted: Vec<&String> = filters
        .iter()
        .filter(|f| !ALONE.iter().any(|(short, _)| f == short))
        .collect();
    // A filter selects the workloads whose names contain it; `=name`
    // selects that workload alone (`kernel-objects` also selects the
    // threaded `kernel-objects-...` runs, `=kernel-objects` does not).
    let selected = |name: &str| {
        wanted.is_empty()
            || wanted.iter().any(|f| match f.strip_prefix('=') {
                Some(exact) => name == exact,
                None => name.contains(f.as_str()),
            })
    };
    // Throughput: rounds, each running every allocator of a group once in
    // turn, so that a burst of machine noise hits all of them alike; each
    // timed run is on a fresh allocator after WARM_UPS untimed runs. The
    // list-based allocators, whose runs are 100-1000x longer, go in a
    // second group after the others: right after one of them, this heap's
    // burst ran at 16-25 ns/op instead of 11 even after two warm-up runs
    // (cause not found: not the arena's contents, not page faults, not
    // address randomisation). Reported: the median ns/op, and the median
    // over rounds of the ratio to this heap within the same round (second
    // group: ratio of medians).
    let groups: Vec<Vec<usize>> = match alone {
        Some(which) => vec![vec![which]],
        None => vec![FAST.to_vec(), SLOW.to_vec()],
    };
    let chosen: Vec<&Workload> = tuned
        .iter()
        .chain(untuned::WORKLOADS.iter())
        .filter(|workload| selected(workload.name))
        .collect();
    let threaded = threads::WORKLOADS.iter().any(|name| selected(name));
    let fronts = threads::FRONT_WORKLOADS.iter().any(|name| selected(name));
    // Progress: per workload and group, each round and the latency run.
    let steps = chosen
        .iter()
        .map(|workload| groups.len() * (workload.rounds + 1))
        .sum::<usize>()
        + usize::from(selected("efficiency"))
        + usize::from(selected(untuned::EFFICIENCY))
        + if threaded {
            groups.len() * threads::ROUNDS
        } else {
            0
        }
        + if fronts { 2 * (threads::ROUNDS + 1) } else { 0 };
    let mut bench = Bench {
        arena: Arena::new(ARENA),
        bitmaps: vec![0u64; Heap::<NoGrow>::bitmap_words(ARENA)],
        states: (0..mm::heap::magazine::state_bytes(ARENA) + LINE)
            .map(|_| std::sync::atomic::AtomicU8::new(0))
            .collect(),
        ghz,
        report: Report::new("heap", steps),
        groups,
    };
    for workload in chosen {
        bench.measure(workload);
    }
    if selected("efficiency") {
        tuned_efficiency(&mut bench);
    }
    if selected(untuned::EFFICIENCY) {
        untuned::efficiency(&mut bench);
    }
    if threaded {
        threads::measure(&mut bench);
    }
    if fronts {
        threads::measure_fronts(&mut bench);
    }
    bench.report.finish();
}
