//! Heap benchmark: this kernel's heap (slabs + TLSF) against the
//! best-known no_std allocators, side by side in one run, the same request
//! sequence for all, a 16 MiB arena each.
//!
//! Workloads: random alloc/free/realloc mixes with ~300 and ~4,000 live
//! blocks (sizes skewed small: mostly 8 B-4 KiB, some up to 30 KiB);
//! 25,000 64-byte blocks freed in random order; and heap efficiency (live
//! requested bytes / arena at the first failed allocation of a growing
//! random mix). Throughput is the whole workload's time per operation with
//! nothing else timed, over 7 rounds that each run every allocator once in
//! turn, each timed run on a fresh allocator after two untimed warm-up runs
//! of the same workload (ratios: the median of the per-round ratios; the
//! two list-based allocators run as a second group, see `main`); latencies
//! (p50, p99, p99.9) come from a separate run that reads the TSC around
//! every operation.
//!
//! Run with `make bench` or `cargo host-bench --bench heap`; arguments
//! (`-- 4000 burst`) keep only workloads whose name contains one of them,
//! `ours` keeps only this heap (for profiling). Progress goes to stderr,
//! tables to stdout, every figure to `build/bench/heap.csv` (`support`).

use std::alloc::Layout;
use std::arch::x86_64::_rdtsc;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

mod support;
use support::{Report, Row};

use mm::heap::{DebugChecks, Heap, NoGrow};
use mm::rng::XorShift;
use mm::testing::Arena;

const ARENA: usize = 16 << 20;
/// Throughput rounds per workload (each runs every allocator once).
const ROUNDS: usize = 7;
/// Untimed runs before each timed run.
const WARM_UPS: usize = 2;

/// What the benchmark needs of an allocator.
trait Allocator {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8>;
    /// # Safety
    /// `pointer` came from `alloc` with `layout` and is live.
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout);
    /// # Safety
    /// As `free`.
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8>;
}

/// Realloc by alloc + copy + free, for allocators without one.
unsafe fn move_realloc<A: Allocator>(
    a: &mut A,
    pointer: *mut u8,
    layout: Layout,
    new_size: usize,
) -> Option<*mut u8> {
    let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
    let moved = a.alloc(new_layout)?;
    // SAFETY: both blocks are live and at least min(old, new) bytes long.
    unsafe {
        std::ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
        a.free(pointer, layout);
    }
    Some(moved)
}

struct Ours(Heap<'static, NoGrow>);

impl Allocator for Ours {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.alloc(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, _: Layout) {
        self.0.free(pointer).unwrap();
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        self.0
            .realloc(pointer, layout, new_size)
            .ok()
            .map(NonNull::as_ptr)
    }
}

struct LinkedList(linked_list_allocator::Heap);

impl Allocator for LinkedList {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.allocate_first_fit(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(NonNull::new_unchecked(pointer), layout) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, pointer, layout, new_size) }
    }
}

struct Talc(talc::Talc<talc::ErrOnOom>);

impl Allocator for Talc {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        // SAFETY: talc's malloc has no preconditions beyond a claimed heap.
        unsafe { self.0.malloc(layout) }.ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.free(NonNull::new_unchecked(pointer), layout) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe {
            let pointer = NonNull::new_unchecked(pointer);
            if new_size <= layout.size() {
                self.0.shrink(pointer, layout, new_size.max(1));
                Some(pointer.as_ptr())
            } else {
                self.0
                    .grow(pointer, layout, new_size)
                    .ok()
                    .map(NonNull::as_ptr)
            }
        }
    }
}

struct Rlsf(rlsf::Tlsf<'static, u32, u32, 20, 16>);

impl Allocator for Rlsf {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.allocate(layout).map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe {
            self.0
                .deallocate(NonNull::new_unchecked(pointer), layout.align())
        }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // SAFETY: forwarded contract.
        unsafe {
            self.0
                .reallocate(NonNull::new_unchecked(pointer), new_layout)
        }
        .map(NonNull::as_ptr)
    }
}

struct Buddy(buddy_system_allocator::Heap<32>);

impl Allocator for Buddy {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.alloc(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        self.0
            .dealloc(unsafe { NonNull::new_unchecked(pointer) }, layout)
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, pointer, layout, new_size) }
    }
}

/// The subjects, as the tables and `build/bench/heap.csv` name them.
const NAMES: [&str; 5] = [
    "this-heap",
    "linked_list_allocator",
    "talc",
    "rlsf",
    "buddy_system_allocator",
];

/// Runs `f` with a fresh allocator number `which` over `arena`.
fn with_allocator<R>(
    which: usize,
    arena: &Arena,
    bitmaps: &mut Vec<u64>,
    f: &mut dyn FnMut(&mut dyn Allocator) -> R,
) -> R {
    let base = arena.base().as_ptr();
    match which {
        0 => {
            bitmaps.iter_mut().for_each(|w| *w = 0);
            // SAFETY: the arena is ours for the heap's lifetime; the bitmap
            // Vec outlives it (the 'static is confined to this call).
            let bitmaps: &'static mut [u64] =
                unsafe { &mut *(bitmaps.as_mut_slice() as *mut [u64]) };
            // SAFETY: as above.
            let heap = unsafe {
                Heap::new(
                    NonNull::new(base).unwrap(),
                    ARENA,
                    ARENA,
                    NoGrow,
                    bitmaps,
                    DebugChecks::Off,
                )
            }
            .unwrap();
            f(&mut Ours(heap))
        }
        1 => {
            let mut heap = linked_list_allocator::Heap::empty();
            // SAFETY: the arena is ours while the heap lives.
            unsafe { heap.init(base, ARENA) };
            f(&mut LinkedList(heap))
        }
        2 => {
            let mut talc = talc::Talc::new(talc::ErrOnOom);
            // SAFETY: as above.
            unsafe { talc.claim(talc::Span::from_base_size(base, ARENA)) }.unwrap();
            f(&mut Talc(talc))
        }
        3 => {
            let mut tlsf = rlsf::Tlsf::new();
            // SAFETY: as above.
            unsafe {
                tlsf.insert_free_block_ptr(NonNull::new_unchecked(
                    std::ptr::slice_from_raw_parts_mut(base, ARENA),
                ))
            };
            f(&mut Rlsf(tlsf))
        }
        _ => {
            let mut heap = buddy_system_allocator::Heap::<32>::new();
            // SAFETY: as above.
            unsafe { heap.init(base as usize, ARENA) };
            f(&mut Buddy(heap))
        }
    }
}

type Workload = fn(&mut dyn Allocator, &mut Timer) -> usize;

/// Runs `workload` WARM_UPS times untimed, each on a fresh allocator.
fn warm_up(which: usize, arena: &Arena, bitmaps: &mut Vec<u64>, workload: &Workload) {
    for _ in 0..WARM_UPS {
        with_allocator(which, arena, bitmaps, &mut |a| {
            black_box(workload(a, &mut Timer::new(false)))
        });
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

/// Timer: either nothing (throughput) or the TSC around every operation.
struct Timer {
    per_op: bool,
    samples: Vec<u32>,
    /// The workloads' own bookkeeping, allocated once up front: the
    /// driver's mallocs (and the page faults of fresh mmap'd memory) would
    /// otherwise land in some allocators' timed runs and not others'.
    live: Vec<(*mut u8, Layout)>,
    blocks: Vec<*mut u8>,
}

impl Timer {
    fn new(per_op: bool) -> Self {
        Self {
            per_op,
            samples: Vec::with_capacity(if per_op { 1_100_000 } else { 0 }),
            live: Vec::with_capacity(8_000),
            blocks: Vec::with_capacity(25_000),
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

fn tsc_ghz() -> f64 {
    let start = Instant::now();
    // SAFETY: RDTSC is available on every x86-64 CPU.
    let tsc = unsafe { _rdtsc() };
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: as above.
    let cycles = unsafe { _rdtsc() } - tsc;
    cycles as f64 / start.elapsed().as_nanos() as f64
}

fn main() {
    let ghz = tsc_ghz();
    println!(
        "heap benchmark: this heap (slab+TLSF) and its peers, 16 MiB arena each, the same request"
    );
    println!("sequence, one run (TSC {ghz:.2} GHz)");
    let arena = Arena::new(ARENA);
    let mut bitmaps = vec![0u64; Heap::<NoGrow>::bitmap_words(ARENA)];
    let workloads: [(&str, &str, Workload); 3] = [
        (
            "mix-300-live",
            "1,000,000 random allocs, frees and reallocs, ~300 blocks live",
            |a, t| mix(a, 300, 1_000_000, t),
        ),
        (
            "mix-4000-live",
            "1,000,000 random allocs, frees and reallocs, ~4,000 blocks live",
            |a, t| mix(a, 4000, 1_000_000, t),
        ),
        (
            "burst-25k-64b",
            "25,000 x 64 B allocated, then freed in random order",
            many_small,
        ),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // "ours", "talc", "rlsf": time that allocator alone (for profilers).
    const ALONE: [(&str, usize); 3] = [("ours", 0), ("talc", 2), ("rlsf", 3)];
    let alone = ALONE
        .iter()
        .find(|(short, _)| filters.iter().any(|f| f == short))
        .map(|&(_, which)| which);
    let wanted: Vec<&String> = filters
        .iter()
        .filter(|f| !ALONE.iter().any(|(short, _)| f == short))
        .collect();
    let selected =
        |name: &str| wanted.is_empty() || wanted.iter().any(|f| name.contains(f.as_str()));
    // Throughput: ROUNDS rounds, each running every allocator of a group
    // once in turn, so that a burst of machine noise hits all of them
    // alike; each timed run is on a fresh allocator after WARM_UPS untimed
    // runs. The list-based allocators, whose runs are 100-1000x longer, go
    // in a second group after the others: right after one of them, this
    // heap's burst ran at 16-25 ns/op instead of 11 even after two warm-up
    // runs (cause not found: not the arena's contents, not page faults,
    // not address randomisation). Reported: the median ns/op, and the
    // median over rounds of the ratio to this heap within the same round
    // (second group: ratio of medians).
    let alone_group = [alone.unwrap_or(0)];
    let groups: &[&[usize]] = if alone.is_some() {
        &[&alone_group]
    } else {
        &[&[0, 2, 3], &[1, 4]]
    };
    let chosen: Vec<_> = workloads
        .iter()
        .filter(|(name, ..)| selected(name))
        .collect();
    // Progress: per workload and group, each round and the latency run.
    let steps = chosen.len() * groups.len() * (ROUNDS + 1) + usize::from(selected("efficiency"));
    let mut report = Report::new("heap", steps);
    let names = |group: &[usize]| {
        group
            .iter()
            .map(|&w| NAMES[w])
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (name, title, workload) in chosen {
        let mut runs = vec![[f64::NAN; 5]; ROUNDS];
        let mut samples: Vec<Vec<u32>> = vec![Vec::new(); NAMES.len()];
        for group in groups {
            for (round, times) in runs.iter_mut().enumerate() {
                report.step(
                    name,
                    format_args!("round {}/{ROUNDS}, {}", round + 1, names(group)),
                );
                for &which in group.iter() {
                    warm_up(which, &arena, &mut bitmaps, workload);
                    times[which] = with_allocator(which, &arena, &mut bitmaps, &mut |a| {
                        let mut timer = Timer::new(false);
                        let start = Instant::now();
                        let ops = black_box(workload(a, &mut timer));
                        start.elapsed().as_nanos() as f64 / ops as f64
                    });
                }
            }
            report.step(name, format_args!("latency of each op, {}", names(group)));
            for &which in group.iter() {
                warm_up(which, &arena, &mut bitmaps, workload);
                samples[which] = with_allocator(which, &arena, &mut bitmaps, &mut |a| {
                    let mut timer = Timer::new(true);
                    workload(a, &mut timer);
                    timer.samples
                });
            }
        }
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let ours = median(runs.iter().map(|round| round[0]).collect());
        for (which, samples) in samples.iter().enumerate() {
            if samples.is_empty() {
                continue;
            }
            let ns = median(runs.iter().map(|round| round[which]).collect());
            let row = Row::mean(name, NAMES[which], "ns/op", ns);
            report.record(if which == 0 {
                row.baseline()
            } else if ours.is_nan() {
                row
            } else if groups[0].contains(&which) {
                row.against(
                    NAMES[0],
                    median(runs.iter().map(|round| round[which] / round[0]).collect()),
                )
            } else {
                row.against(NAMES[0], ns / ours)
            });
            let mut nanoseconds: Vec<f64> = samples.iter().map(|&c| f64::from(c) / ghz).collect();
            report.latencies(name, NAMES[which], &mut nanoseconds);
        }
        report.table(name, title, "allocator");
    }
    if selected("efficiency") {
        report.step("efficiency", "every allocator until its first failure");
        for (which, name) in NAMES.iter().enumerate() {
            let share = with_allocator(which, &arena, &mut bitmaps, &mut |a| efficiency(a));
            report.record(Row::new(
                "efficiency",
                name,
                "efficiency",
                "%",
                share * 100.0,
            ));
        }
        report.table(
            "efficiency",
            "live requested bytes / 16 MiB at the first failed allocation of a growing mix",
            "allocator",
        );
        println!(
            "  (this heap keeps 1 bit per 16 bytes of arena and a slab page table outside it: {} KiB for 16 MiB)",
            Heap::<NoGrow>::bitmap_words(ARENA) * 8 / 1024
        );
    }
    report.finish();
}
