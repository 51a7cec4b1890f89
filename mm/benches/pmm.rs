//! PMM benchmark: this allocator against a buddy allocator
//! (`buddy_system_allocator`'s frame allocator), a plain free-list stack
//! of frames (the floor: no checks at all) and the original design's
//! bit-by-bit bitmap, side by side in one run over the same simulated RAM
//! and the same request sequences:
//!
//! * single-frame pairs (free a random held frame, allocate one) at 50,
//!   90 and 99 % full;
//! * the same pairs on 1 and on each of 2 threads (`scaling`): this PMM
//!   through a frame cache per thread around one locked PMM, and a free
//!   stack per thread (what the machine gives two threads doing such
//!   pairs), the threads leaving a spinning start line and each timing
//!   itself;
//! * a 2 MiB block allocated and freed while scattered single frames are
//!   held below it;
//! * a Linux-like order mix (mostly order 0, some orders 1-3, a few order
//!   9) with random frees around 70 % full;
//! * mobility grouping: free 2 MiB blocks after a long fragmenting
//!   workload, with grouping on and off;
//! * init over 4 GiB and 64 GiB.
//!
//! Run with `make bench` or `cargo host-bench --bench pmm`.

use std::hint::black_box;
use std::time::Instant;

use buddy_system_allocator::FrameAllocator as Buddy;
use mm::pmm::cache::{self, FrameCache, FrameStates, Given, Near};
use mm::pmm::{usable_ranges, FrameAllocator, MapEntry, Mobility, PhysRange, RangeSet, MAX_RANGES};
use mm::rng::XorShift;
use std::sync::atomic::AtomicU8;
use x86_64::PhysAddr;

mod support;
use support::start_line::{wall, Span, SpinBarrier};
use support::{median, Report, Row};

const FRAMES: usize = 262_144; // 1 GiB of 4 KiB frames
const BASE: u64 = 0x20_0000;
const PAGE: u64 = 4096;

/// The original design: a flat bitmap, allocation scans bit by bit from
/// frame 0 for the first clear bit.
struct NaiveBitmap {
    bits: Vec<u64>,
    frames: usize,
}

impl NaiveBitmap {
    fn new(frames: usize) -> Self {
        Self {
            bits: vec![0; frames.div_ceil(64)],
            frames,
        }
    }

    fn alloc(&mut self) -> Option<u64> {
        for frame in 0..self.frames {
            if self.bits[frame / 64] & (1 << (frame % 64)) == 0 {
                self.bits[frame / 64] |= 1 << (frame % 64);
                return Some(BASE + frame as u64 * PAGE);
            }
        }
        None
    }

    fn free(&mut self, address: u64) {
        let frame = ((address - BASE) / PAGE) as usize;
        self.bits[frame / 64] &= !(1 << (frame % 64));
    }
}

/// The floor: a stack of free frame addresses, no checks.
struct FreeStack(Vec<u64>);

impl FreeStack {
    fn new(frames: usize) -> Self {
        Self((0..frames as u64).rev().map(|f| BASE + f * PAGE).collect())
    }
}

fn buddy(frames: usize) -> Buddy<32> {
    let mut buddy = Buddy::<32>::new();
    let first = (BASE / PAGE) as usize;
    buddy.add_frame(first, first + frames);
    buddy
}

fn rng() -> XorShift {
    XorShift::new(0x9E37_79B9_7F4A_7C15)
}

fn usable_bytes(bytes: u64) -> RangeSet<MAX_RANGES> {
    let entry = MapEntry {
        range: PhysRange::from_len(BASE, bytes),
        usable: true,
    };
    usable_ranges(
        core::iter::once(entry),
        PhysRange {
            start: 0,
            end: u64::MAX,
        },
    )
    .unwrap()
}

/// The frame caches' state bytes for every frame from address 0 to the
/// end of the simulated RAM, on a cache line as the kernel's are.
fn state_bytes() -> &'static [AtomicU8] {
    mm::testing::line_aligned_states((BASE / PAGE) as usize + FRAMES)
}

/// An allocator under test: blocks of 2^order frames by address.
trait Frames {
    fn alloc(&mut self, order: u32, mobility: Mobility) -> Option<u64>;
    fn free(&mut self, address: u64, order: u32);
}

impl Frames for FrameAllocator<'_> {
    #[inline]
    fn alloc(&mut self, order: u32, mobility: Mobility) -> Option<u64> {
        self.alloc_order(order, mobility)
            .ok()
            .map(|frame| frame.start_address().as_u64())
    }
    #[inline]
    fn free(&mut self, address: u64, order: u32) {
        self.free_order(PhysAddr::new(address), order).unwrap()
    }
}

/// How a frame cache reaches the PMM behind it: directly on one thread,
/// through the lock when threads share it (the `scaling` section).
trait Behind {
    /// Runs `f` on the PMM (holding its lock, if it has one).
    fn with<R>(&mut self, f: impl FnOnce(&mut FrameAllocator<'_>) -> R) -> R;
}

impl Behind for FrameAllocator<'_> {
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut FrameAllocator<'_>) -> R) -> R {
        f(self)
    }
}

impl Behind for &std::sync::Mutex<FrameAllocator<'_>> {
    #[inline]
    fn with<R>(&mut self, f: impl FnOnce(&mut FrameAllocator<'_>) -> R) -> R {
        f(&mut self.lock().unwrap())
    }
}

/// This PMM behind a per-CPU frame cache, as the kernel runs it (minus
/// the interrupt masking around the cache, which the host cannot do).
struct Cached<'s, P> {
    pmm: P,
    cache: FrameCache,
    states: FrameStates<'s>,
}

impl<'s, P> Cached<'s, P> {
    /// `pmm` behind a cache of the kernel's geometry (96 frames, batches
    /// of 64), over the frame-state bytes `states`.
    fn new(pmm: P, states: &'s [AtomicU8]) -> Self {
        Self {
            pmm,
            cache: FrameCache::new(96, 64),
            states: FrameStates::new(states, 0).unwrap(),
        }
    }
}

impl<P: Behind> Frames for Cached<'_, P> {
    #[inline]
    fn alloc(&mut self, order: u32, mobility: Mobility) -> Option<u64> {
        if order != 0 {
            return self.pmm.with(|pmm| pmm.alloc(order, mobility));
        }
        if let Some(frame) = cache::take(&mut self.cache, &self.states) {
            return Some(frame);
        }
        let (cache, states) = (&mut self.cache, &self.states);
        self.pmm.with(|pmm| {
            let mut source = Near {
                allocator: pmm,
                node: 0,
            };
            cache::refill(cache, states, &mut source)
        });
        cache::take(&mut self.cache, &self.states)
    }
    #[inline]
    fn free(&mut self, address: u64, order: u32) {
        if order != 0 {
            return self.pmm.with(|pmm| pmm.free(address, order));
        }
        match cache::give(&mut self.cache, &self.states, address).unwrap() {
            Given::Cached(false) => {}
            Given::Cached(true) => {
                let (cache, states) = (&mut self.cache, &self.states);
                let batch = cache.batch();
                self.pmm.with(|pmm| {
                    let mut source = Near {
                        allocator: pmm,
                        node: 0,
                    };
                    cache::drain(cache, states, &mut source, batch);
                });
            }
            Given::ToAllocator => self.pmm.with(|pmm| pmm.free(address, 0)),
        }
    }
}

impl Frames for Buddy<32> {
    #[inline]
    fn alloc(&mut self, order: u32, _: Mobility) -> Option<u64> {
        Buddy::alloc(self, 1 << order).map(|frame| frame as u64 * PAGE)
    }
    #[inline]
    fn free(&mut self, address: u64, order: u32) {
        self.dealloc((address / PAGE) as usize, 1 << order)
    }
}

impl Frames for FreeStack {
    #[inline]
    fn alloc(&mut self, order: u32, _: Mobility) -> Option<u64> {
        assert_eq!(order, 0, "the stack holds single frames");
        self.0.pop()
    }
    #[inline]
    fn free(&mut self, address: u64, _: u32) {
        self.0.push(address)
    }
}

impl Frames for NaiveBitmap {
    fn alloc(&mut self, _: u32, _: Mobility) -> Option<u64> {
        NaiveBitmap::alloc(self)
    }
    fn free(&mut self, address: u64, _: u32) {
        NaiveBitmap::free(self, address)
    }
}

/// Single frames allocated until `fill` of the frames are held.
fn fill_to(frames: &mut impl Frames, fill: f64) -> Vec<u64> {
    let target = (FRAMES as f64 * fill) as usize;
    (0..target)
        .map(|_| frames.alloc(0, Mobility::Unmovable).expect("fill"))
        .collect()
}

/// One steady-state pair: frees the held frame at `slot`, allocates one
/// in its place.
#[inline(always)]
fn pair(frames: &mut impl Frames, held: &mut [u64], slot: usize) {
    frames.free(held[slot], 0);
    held[slot] = black_box(frames.alloc(0, Mobility::Unmovable).expect("just freed"));
}

/// Fills to `fill` and times `pairs` steady-state pairs (free a random
/// held frame, allocate one). Returns ns per pair.
fn pairs_ns(frames: &mut impl Frames, fill: f64, pairs: usize) -> f64 {
    let mut held = fill_to(frames, fill);
    let mut rng = rng();
    let start = Instant::now();
    for _ in 0..pairs {
        let slot = rng.below(held.len() as u64) as usize;
        pair(frames, &mut held, slot);
    }
    start.elapsed().as_nanos() as f64 / pairs as f64
}

/// Pairs timed one by one in a latency run.
const LATENCY_PAIRS: usize = 200_000;

/// As `pairs_ns`, but reads the TSC around every pair: the latency of
/// each, in ns (`ghz`: TSC ticks per ns), for the percentile rows.
fn pairs_latency(frames: &mut impl Frames, fill: f64, ghz: f64) -> Vec<f64> {
    let mut held = fill_to(frames, fill);
    let mut rng = rng();
    let mut samples = Vec::with_capacity(LATENCY_PAIRS);
    for _ in 0..LATENCY_PAIRS {
        let slot = rng.below(held.len() as u64) as usize;
        // SAFETY: RDTSC is available on every x86-64 CPU.
        let start = unsafe { std::arch::x86_64::_rdtsc() };
        pair(frames, &mut held, slot);
        // SAFETY: as above.
        let ticks = unsafe { std::arch::x86_64::_rdtsc() } - start;
        samples.push(ticks as f64 / ghz);
    }
    samples
}

/// Pairs each thread does in a timed `scaling` run: 120-215 ms on one
/// thread here (140-260 pairs/us), so that a scheduler tick or a short
/// burst of another process is a small part of a run. (With 2,000,000
/// pairs, 7 ms, such a burst made some runs' ratio 0.9x: docs/pmm.md.)
const SCALING_PAIRS: usize = 30_000_000;
/// Timed rounds of the `scaling` section, each running every subject on
/// 1 thread, then on 2.
const SCALING_ROUNDS: usize = 11;
/// The `scaling` section's subjects, as its table names them.
const SCALING_SUBJECTS: [&str; 2] = ["this-pmm-cached", "free-stack"];

/// `threads` threads, each with the allocator `handle(thread)` makes
/// (outside the timing), each holding 1/4 of memory and doing `pairs`
/// (free a random held frame, allocate one); returns the pairs per
/// microsecond of all threads together, over the wall time from the
/// first thread's start to the last one's end, each read by the thread
/// itself as it leaves a spinning start line ([`SpinBarrier`]).
fn scaled_pairs_per_us<F: Frames>(
    threads: usize,
    pairs: usize,
    handle: impl Fn(usize) -> F + Sync,
) -> f64 {
    let start = SpinBarrier::new(threads);
    let spans: Vec<Span> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, handle) = (&start, &handle);
                scope.spawn(move || {
                    let mut frames = handle(thread);
                    let mut held: Vec<u64> = (0..FRAMES / 4)
                        .map(|_| frames.alloc(0, Mobility::Unmovable).expect("fill"))
                        .collect();
                    let mut rng = XorShift::new(0x9E37_79B9 + thread as u64);
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..pairs {
                        let slot = rng.below(held.len() as u64) as usize;
                        frames.free(held[slot], 0);
                        held[slot] =
                            black_box(frames.alloc(0, Mobility::Unmovable).expect("just freed"));
                    }
                    (began, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker thread panicked"))
            .collect()
    });
    (threads * pairs) as f64 / (wall(spans.into_iter()).as_secs_f64() * 1e6)
}

/// Scattered single frames held in the lower half (every 7th freed),
/// then `rounds` 2 MiB alloc+free pairs. Returns ns per pair.
fn huge_under_fragmentation_ns(frames: &mut impl Frames, rounds: usize) -> f64 {
    let singles: Vec<u64> = (0..FRAMES / 2)
        .map(|_| frames.alloc(0, Mobility::Unmovable).unwrap())
        .collect();
    for &frame in singles.iter().step_by(7) {
        frames.free(frame, 0);
    }
    let start = Instant::now();
    for _ in 0..rounds {
        let block = black_box(frames.alloc(9, Mobility::Movable).unwrap());
        frames.free(block, 9);
    }
    start.elapsed().as_nanos() as f64 / rounds as f64
}

/// One request of the order mix: (order, mobility).
fn mix_request(rng: &mut XorShift) -> (u32, Mobility) {
    match rng.below(100) {
        0..=59 => (0, Mobility::Movable),
        60..=84 => (0, Mobility::Unmovable),
        85..=90 => (1, Mobility::Unmovable),
        91..=94 => (2, Mobility::Unmovable),
        95..=97 => (3, Mobility::Movable),
        _ => (9, Mobility::Movable),
    }
}

/// The order mix around 70 % full: returns (ns per operation, refused
/// allocations).
fn order_mix(frames: &mut impl Frames, operations: usize) -> (f64, u64) {
    let mut rng = rng();
    let mut held: Vec<(u64, u32)> = Vec::new();
    let mut used = 0usize;
    let (low, high) = (FRAMES * 68 / 100, FRAMES * 72 / 100);
    while used < low {
        let (order, mobility) = mix_request(&mut rng);
        if let Some(block) = frames.alloc(order, mobility) {
            held.push((block, order));
            used += 1 << order;
        }
    }
    let mut refused = 0;
    let start = Instant::now();
    for _ in 0..operations {
        let free = used > high || (used > low && rng.below(2) == 0);
        if free {
            let slot = rng.below(held.len() as u64) as usize;
            let (block, order) = held.swap_remove(slot);
            frames.free(block, order);
            used -= 1 << order;
        } else {
            let (order, mobility) = mix_request(&mut rng);
            match frames.alloc(order, mobility) {
                Some(block) => {
                    held.push((black_box(block), order));
                    used += 1 << order;
                }
                None => refused += 1,
            }
        }
    }
    (
        start.elapsed().as_nanos() as f64 / operations as f64,
        refused,
    )
}

/// A long fragmenting workload in steady state: unmovable frames (about
/// 10 % of memory, slowly replaced: page tables, kernel objects) among
/// movable blocks (about 70 %, orders 0-3, freed at random: user and cache
/// data). Returns (free 2 MiB chunks at the end, free 2 MiB chunks once
/// every movable block is gone: what a compaction could make).
fn fragmenting(pmm: &mut FrameAllocator<'_>, operations: usize) -> (usize, usize) {
    let mut rng = rng();
    let mut movable: Vec<(u64, u32)> = Vec::new();
    let mut unmovable: Vec<u64> = Vec::new();
    let (unmovable_target, movable_target) = (FRAMES / 10, FRAMES * 7 / 10);
    let mut movable_used = 0usize;
    for _ in 0..operations {
        if rng.below(100) < 5 {
            if unmovable.len() < unmovable_target || rng.below(2) == 0 {
                if let Some(frame) = pmm.alloc(0, Mobility::Unmovable) {
                    unmovable.push(frame);
                }
            } else {
                let slot = rng.below(unmovable.len() as u64) as usize;
                pmm.free(unmovable.swap_remove(slot), 0);
            }
        } else if movable_used < movable_target * 9 / 10
            || (movable_used < movable_target && rng.below(2) == 0)
        {
            let order = if rng.below(10) < 8 {
                0
            } else {
                1 + rng.below(3) as u32
            };
            if let Some(block) = pmm.alloc(order, Mobility::Movable) {
                movable.push((block, order));
                movable_used += 1 << order;
            }
        } else {
            let slot = rng.below(movable.len() as u64) as usize;
            let (block, order) = movable.swap_remove(slot);
            pmm.free(block, order);
            movable_used -= 1 << order;
        }
    }
    let at_end = pmm.free_chunks();
    for (block, order) in movable {
        pmm.free(block, order);
    }
    (at_end, pmm.free_chunks())
}

/// Whether the section `name` runs: every section, or those named on the
/// command line (`cargo host-bench --bench pmm -- pairs mix`).
fn selected(name: &str) -> bool {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()))
}

/// Records the median of `theirs` for `subject` against this PMM, with
/// the median of the per-round ratios theirs / `ours` (the same rounds:
/// above 1, this PMM is faster).
fn versus(
    report: &mut Report,
    workload: &str,
    subject: &str,
    unit: &str,
    theirs: &[f64],
    ours: &[f64],
) {
    report.record(
        Row::mean(workload, subject, unit, median(theirs.to_vec()))
            .against(OURS, median(per_round(theirs, ours))),
    );
}

/// Round by round, `a` over `b`.
fn per_round(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// Rounds of the pairs, huge and mix sections: in each, every subject
/// runs once, one after the other.
const ROUNDS: usize = 5;

const OURS: &str = "this-pmm";

fn main() {
    let usable = usable_bytes(FRAMES as u64 * PAGE);
    let mut storage = vec![0u64; FrameAllocator::storage_words_for(&usable)];
    let sections = ["pairs", "scaling", "huge", "mix", "grouping", "init"];
    let steps =
        sections.iter().filter(|s| selected(s)).count() + 2 * usize::from(selected("pairs"));
    let mut report = Report::new("pmm", steps);
    let ghz = support::tsc_ghz();
    println!("PMM benchmark: 1 GiB of frames ({FRAMES}), same request sequences for every");
    println!("allocator; mean = a run's time / its operations, median of 5 rounds (each runs");
    println!("every subject once); ratios are medians of the per-round ratios. Latency");
    println!("(pairs): one more run of {LATENCY_PAIRS} pairs per subject, each pair timed.");

    if selected("pairs") {
        for fill in [50, 90, 99] {
            let workload = format!("pairs-fill-{fill}");
            report.step(
                &workload,
                "this PMM, buddy, free stack x5; bit-by-bit x1 (2,000 pairs)",
            );
            let fill_level = f64::from(fill) / 100.0;
            let states = state_bytes();
            let (mut ours, mut cached, mut buddy_ns, mut floor) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let mut pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
                ours.push(pairs_ns(&mut pmm, fill_level, 1_000_000));
                let pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
                let mut with_cache = Cached::new(pmm, states);
                cached.push(pairs_ns(&mut with_cache, fill_level, 1_000_000));
                buddy_ns.push(pairs_ns(&mut buddy(FRAMES), fill_level, 1_000_000));
                floor.push(pairs_ns(&mut FreeStack::new(FRAMES), fill_level, 1_000_000));
            }
            // Too slow for rounds: one short run, against every round of ours.
            let naive = pairs_ns(&mut NaiveBitmap::new(FRAMES), fill_level, 2_000);
            // Latency: one more run of each, every pair timed.
            let mut pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
            let mut latency = vec![(OURS, pairs_latency(&mut pmm, fill_level, ghz))];
            let pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
            let mut with_cache = Cached::new(pmm, states);
            latency.push((
                "this-pmm-cached",
                pairs_latency(&mut with_cache, fill_level, ghz),
            ));
            latency.push(("buddy", pairs_latency(&mut buddy(FRAMES), fill_level, ghz)));
            latency.push((
                "free-stack",
                pairs_latency(&mut FreeStack::new(FRAMES), fill_level, ghz),
            ));
            report.record(Row::mean(&workload, OURS, "ns/pair", median(ours.clone())).baseline());
            versus(
                &mut report,
                &workload,
                "this-pmm-cached",
                "ns/pair",
                &cached,
                &ours,
            );
            versus(&mut report, &workload, "buddy", "ns/pair", &buddy_ns, &ours);
            versus(
                &mut report,
                &workload,
                "free-stack",
                "ns/pair",
                &floor,
                &ours,
            );
            report.record(Row::new(
                &workload,
                "this-pmm-cached",
                "vs-floor",
                "x",
                median(per_round(&cached, &floor)),
            ));
            versus(
                &mut report,
                &workload,
                "bit-by-bit",
                "ns/pair",
                &[naive; ROUNDS],
                &ours,
            );
            for (subject, mut samples) in latency {
                report.latencies(&workload, subject, &mut samples);
            }
            report.table(
                &workload,
                &format!(
                    "single-frame pairs (free a random held frame, allocate one), {fill} % full"
                ),
                "allocator",
            );
        }
    }

    if selected("scaling") {
        let workload = "scaling-cached-pairs";
        report.step(
            workload,
            format_args!(
                "{SCALING_ROUNDS} rounds of 1 and 2 threads, this PMM (a frame cache per \
                 thread) and the free stack (one per thread), {} M pairs per thread",
                SCALING_PAIRS / 1_000_000
            ),
        );
        let states = state_bytes();
        // Subject 0 (of SCALING_SUBJECTS): this PMM; 1: the floor.
        let mut run = |subject: usize, threads: usize| {
            if subject == 1 {
                return scaled_pairs_per_us(threads, SCALING_PAIRS, |_| FreeStack::new(FRAMES / 2));
            }
            let pmm = std::sync::Mutex::new(
                FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap(),
            );
            scaled_pairs_per_us(threads, SCALING_PAIRS, |_| Cached::new(&pmm, states))
        };
        // One untimed run first, as the heap's threaded runs have.
        black_box(run(0, 2));
        // Per round and subject, pairs/us on 1 and on 2 threads.
        let rounds: Vec<[[f64; 2]; 2]> = (0..SCALING_ROUNDS)
            .map(|_| [0, 1].map(|subject| [run(subject, 1), run(subject, 2)]))
            .collect();
        // Per subject, 2-thread / 1-thread throughput per round.
        let scaling = [0, 1].map(|subject| {
            rounds
                .iter()
                .map(|round| round[subject][1] / round[subject][0])
                .collect::<Vec<f64>>()
        });
        for (subject, name) in SCALING_SUBJECTS.into_iter().enumerate() {
            eprintln!(
                "  {name}, per round: scaling (pairs/us on 1 / 2 threads) {}",
                scaling[subject]
                    .iter()
                    .zip(&rounds)
                    .map(|(s, round)| {
                        let [one, two] = round[subject];
                        format!("{s:.2} ({one:.0}/{two:.0})")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for (threads, metric) in ["1-thread", "2-threads"].into_iter().enumerate() {
                let throughput = median(rounds.iter().map(|r| r[subject][threads]).collect());
                report.record(Row::new(workload, name, metric, "pairs/us", throughput));
            }
            let row = Row::new(
                workload,
                name,
                "scaling",
                "x",
                median(scaling[subject].clone()),
            );
            report.record(if subject == 1 {
                row.baseline()
            } else {
                // What this PMM keeps of the scaling the machine gave
                // the floor in the same round.
                let kept = scaling[0]
                    .iter()
                    .zip(&scaling[1])
                    .map(|(ours, floor)| ours / floor);
                row.against(SCALING_SUBJECTS[1], median(kept.collect()))
            });
        }
        report.table(
            workload,
            "single-frame pairs on 1 and on each of 2 threads: this PMM through a frame cache \
             per thread around one locked PMM, and the floor, a free stack per thread; \
             throughput (higher is better), scaling (2-thread / 1-thread throughput) and \
             scaling vs the floor's in the same round, each the median over the rounds",
            "allocator",
        );
    }

    if selected("huge") {
        let workload = "huge-2m-fragmented";
        report.step(workload, "this PMM, buddy x5, 200,000 pairs each");
        let (mut ours, mut buddy_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let mut pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
            ours.push(huge_under_fragmentation_ns(&mut pmm, 200_000));
            buddy_ns.push(huge_under_fragmentation_ns(&mut buddy(FRAMES), 200_000));
        }
        report.record(Row::mean(workload, OURS, "ns/pair", median(ours.clone())).baseline());
        versus(&mut report, workload, "buddy", "ns/pair", &buddy_ns, &ours);
        report.table(
            workload,
            "2 MiB block alloc+free, scattered single frames held below it",
            "allocator",
        );
    }

    if selected("mix") {
        let workload = "order-mix";
        report.step(workload, "this PMM, buddy x5, 2,000,000 operations each");
        let mut refused = (0, 0);
        let (mut ours, mut buddy_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let mut pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
            let (ns, failed) = order_mix(&mut pmm, 2_000_000);
            ours.push(ns);
            refused.0 = failed;
            let (ns, failed) = order_mix(&mut buddy(FRAMES), 2_000_000);
            buddy_ns.push(ns);
            refused.1 = failed;
        }
        report.record(Row::mean(workload, OURS, "ns/op", median(ours.clone())).baseline());
        versus(&mut report, workload, "buddy", "ns/op", &buddy_ns, &ours);
        report.record(Row::new(
            workload,
            OURS,
            "refused",
            "allocations",
            refused.0 as f64,
        ));
        report.record(Row::new(
            workload,
            "buddy",
            "refused",
            "allocations",
            refused.1 as f64,
        ));
        report.table(
            workload,
            "order mix (orders 0-3 and 9, random frees, 68-72 % full)",
            "allocator",
        );
    }

    if selected("grouping") {
        let workload = "grouping";
        report.step(workload, "4,000,000 operations with grouping on, then off");
        for (subject, grouping) in [("grouping-on", true), ("grouping-off", false)] {
            let mut pmm = FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap();
            pmm.set_grouping(grouping);
            let (at_end, compactable) = fragmenting(&mut pmm, 4_000_000);
            report.record(Row::new(
                workload,
                subject,
                "free-2m-now",
                "chunks",
                at_end as f64,
            ));
            report.record(Row::new(
                workload,
                subject,
                "free-2m-without-movable",
                "chunks",
                compactable as f64,
            ));
        }
        report.table(
            workload,
            "free 2 MiB chunks (of 512) after a fragmenting workload (~10 % unmovable, ~70 % \
             movable), as they stand and once every movable block is gone (what a compaction \
             could free)",
            "policy",
        );
    }

    if selected("init") {
        let workload = "init";
        report.step(workload, "4 GiB and 64 GiB x5");
        for (subject, bytes) in [("4-gib", 4u64 << 30), ("64-gib", 64u64 << 30)] {
            let usable = usable_bytes(bytes);
            let mut storage = vec![0u64; FrameAllocator::storage_words_for(&usable)];
            let elapsed = median(
                (0..5)
                    .map(|_| {
                        let start = Instant::now();
                        black_box(FrameAllocator::new(usable.clone(), &[], &mut storage).unwrap());
                        start.elapsed().as_secs_f64() * 1e6
                    })
                    .collect(),
            );
            report.record(Row::new(workload, subject, "time", "us", elapsed));
            report.record(Row::new(
                workload,
                subject,
                "storage",
                "KiB",
                (storage.len() * 8 / 1024) as f64,
            ));
        }
        report.table(
            workload,
            "building the allocator (bitmaps, chunk lists)",
            "RAM",
        );
    }
    report.finish();
}
