//! Tests that use every online CPU at once: the work IPI reaches every
//! CPU, and the frame allocator, the heap and the page tables stay
//! consistent while all CPUs allocate, free (also what another CPU
//! allocated), map and unmap together.
//!
//! [`on_all_cpus`] runs a body on every CPU behind a start barrier and
//! joins with a timeout that names a CPU that hung. With one CPU online
//! the tests still run, on it alone.

use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::{set_detail, Context, Expect, Failure, Test, TestResult};
use crate::arch::x86_64::exceptions::{catch_fault, vector};
use crate::arch::x86_64::{clock, smp};
use crate::boot::MemoryKind;
use crate::kernel_mm::{heap, phys_to_virt, pmm, vmm};
use crate::sync::IrqMutex;
use crate::{kassert, kassert_eq, kprintln};
use mm::paging::{PageSize, NX, WRITABLE};
use mm::rng::XorShift;
use x86_64::{PhysAddr, VirtAddr};

/// The SMP tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "smp::every_cpu_runs_work_woken_by_an_ipi",
        run: every_cpu_runs_work,
        expects: Expect::NOTHING,
    },
    Test {
        name: "smp::an_unmapped_page_is_gone_from_every_cpu_tlb",
        run: shootdown_reaches_every_cpu,
        expects: Expect::NOTHING,
    },
    Test {
        name: "smp::fault_tests_pass_on_another_cpu",
        run: fault_tests_on_another_cpu,
        expects: Expect::NOTHING,
    },
    Test {
        name: "smp::allocators_stay_consistent_on_every_cpu_at_once",
        run: allocators_on_every_cpu,
        expects: Expect::NOTHING,
    },
];

/// How long a body may run on any CPU (TCG with 8 CPUs on 2 host cores is
/// slow).
const JOIN_TIMEOUT_US: u64 = 120_000_000;
/// How long the start barrier waits for every CPU.
const BARRIER_TIMEOUT_US: u64 = 10_000_000;

/// The body `on_all_cpus` runs, as a `fn(usize) -> TestResult` address.
static BODY: AtomicUsize = AtomicUsize::new(0);
/// CPUs that reached the start barrier.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// Each CPU's result (None: it never finished).
static RESULTS: IrqMutex<[Option<TestResult>; smp::MAX_CPUS]> =
    IrqMutex::new([None; smp::MAX_CPUS]);

/// Runs `body(cpu index)` on every online CPU at once (all start together
/// after a barrier) and returns the first failure, or names the CPU that
/// did not finish in time.
pub(super) fn on_all_cpus(body: fn(usize) -> TestResult) -> TestResult {
    BODY.store(body as usize, Ordering::SeqCst);
    ARRIVED.store(0, Ordering::SeqCst);
    *RESULTS.lock() = [None; smp::MAX_CPUS];
    let joined = smp::run_on_all(run_body, JOIN_TIMEOUT_US);
    if let Err(hung) = joined {
        set_detail(format_args!(
            "    CPU {} (APIC id {}) did not finish within {} s",
            hung.index,
            hung.apic_id,
            JOIN_TIMEOUT_US / 1_000_000
        ));
        return Err(Failure::here("a CPU hung in the all-CPU body"));
    }
    let results = RESULTS.lock();
    for (index, result) in results.iter().enumerate().take(smp::MAX_CPUS) {
        if smp::cpu(index).is_none() && index != 0 {
            continue;
        }
        match result {
            Some(Ok(())) => {}
            Some(Err(failure)) => return Err(*failure),
            None => return Err(Failure::here("a CPU finished without a result")),
        }
    }
    Ok(())
}

/// Rounds that every CPU runs in lock step, for tests that hand objects
/// between CPUs: in each round every CPU fills (allocates its share),
/// waits for all the others, drains (frees the next CPU's share), and
/// waits again. A CPU whose part fails stops the others from waiting for
/// it.
pub(super) struct LockStep {
    /// CPUs through each half of a round, counting up.
    filled: AtomicUsize,
    drained: AtomicUsize,
    abort: AtomicBool,
    /// Objects freed by another CPU than the one that allocated them.
    crossed: AtomicUsize,
}

impl LockStep {
    pub(super) const fn new() -> Self {
        Self {
            filled: AtomicUsize::new(0),
            drained: AtomicUsize::new(0),
            abort: AtomicBool::new(false),
            crossed: AtomicUsize::new(0),
        }
    }

    /// Starts over: call before [`on_all_cpus`].
    pub(super) fn reset(&self) {
        self.filled.store(0, Ordering::SeqCst);
        self.drained.store(0, Ordering::SeqCst);
        self.abort.store(false, Ordering::SeqCst);
        self.crossed.store(0, Ordering::SeqCst);
    }

    /// Counts an object CPU `to` frees that CPU `from` allocated, if they
    /// differ.
    pub(super) fn handed(&self, from: usize, to: usize) {
        if from != to {
            self.crossed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Objects freed by another CPU so far.
    pub(super) fn crossed(&self) -> usize {
        self.crossed.load(Ordering::Relaxed)
    }

    /// Checks that every object of `rounds` rounds of `per_cpu` each was
    /// freed by another CPU (none with one CPU: it frees its own).
    pub(super) fn check_all_crossed(&self, rounds: usize, per_cpu: usize) -> TestResult {
        let online = smp::online();
        let expected = if online > 1 {
            rounds * per_cpu * online
        } else {
            0
        };
        kassert_eq!(self.crossed(), expected);
        Ok(())
    }

    /// This CPU's part: `rounds` times `fill(round)`, the barrier,
    /// `drain(round)`, the barrier.
    pub(super) fn run(
        &self,
        rounds: usize,
        mut fill: impl FnMut(usize) -> TestResult,
        mut drain: impl FnMut(usize) -> TestResult,
    ) -> TestResult {
        let result = (|| {
            let online = smp::online();
            for round in 0..rounds {
                fill(round)?;
                self.filled.fetch_add(1, Ordering::SeqCst);
                kassert!(
                    self.all_reached(&self.filled, (round + 1) * online),
                    "a CPU did not allocate in time"
                );
                drain(round)?;
                self.drained.fetch_add(1, Ordering::SeqCst);
                kassert!(
                    self.all_reached(&self.drained, (round + 1) * online),
                    "a CPU did not free in time"
                );
            }
            Ok(())
        })();
        if result.is_err() {
            self.abort.store(true, Ordering::SeqCst);
        }
        result
    }

    /// Waits until `counter` reaches `target` (or a CPU gave up).
    fn all_reached(&self, counter: &AtomicUsize, target: usize) -> bool {
        clock::wait_us(10_000_000, || {
            counter.load(Ordering::SeqCst) >= target || self.abort.load(Ordering::SeqCst)
        }) && !self.abort.load(Ordering::SeqCst)
    }
}

/// What every CPU runs for `on_all_cpus`: the barrier, then the body.
fn run_body(index: usize) {
    let body = BODY.load(Ordering::SeqCst);
    // SAFETY: `on_all_cpus` stores only `fn(usize) -> TestResult` here.
    let body = unsafe { core::mem::transmute::<usize, fn(usize) -> TestResult>(body) };
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    let everyone = smp::online();
    let result = if clock::wait_us(BARRIER_TIMEOUT_US, || {
        ARRIVED.load(Ordering::SeqCst) >= everyone
    }) {
        body(index)
    } else {
        Err(Failure::here("the start barrier timed out"))
    };
    if let Some(slot) = RESULTS.lock().get_mut(index) {
        *slot = Some(result);
    }
}

/// Which CPUs ran the probe (bit per CPU index).
static SEEN: AtomicU64 = AtomicU64::new(0);

fn probe(index: usize) -> TestResult {
    let me = smp::current().map_or(0, |cpu| cpu.index);
    kassert_eq!(me, index);
    SEEN.fetch_or(1 << index, Ordering::SeqCst);
    Ok(())
}

/// The work IPI wakes every parked CPU, each runs the body under its own
/// per-CPU record (GS base), and the join sees every result.
fn every_cpu_runs_work(_: &Context<'_>) -> TestResult {
    SEEN.store(0, Ordering::SeqCst);
    let ipis = smp::ipis_sent();
    on_all_cpus(probe)?;
    let online = smp::online();
    kassert_eq!(SEEN.load(Ordering::SeqCst), (1u64 << online) - 1);
    kassert_eq!(smp::ipis_sent() - ipis, online as u64 - 1);
    for index in 1..online {
        let cpu = smp::cpu(index).ok_or(Failure::here("an online CPU has no record"))?;
        kassert!(
            cpu.ipis_received.load(Ordering::SeqCst) > 0,
            "a CPU never received an IPI"
        );
    }
    Ok(())
}

/// Rounds of random operations per CPU.
const ROUNDS: u64 = 400;
/// Where each CPU maps its private pages: 1 GiB apart, so no two CPUs
/// share a page table there.
const PRIVATE_PAGES: u64 = 0x6000_0000_0000;
/// Where every CPU maps pages next to the others' (interleaved slots), so
/// that the CPUs share, create and free the same page tables.
const SHARED_PAGES: u64 = 0x6400_0000_0000;
/// Where each CPU maps a 2 MiB page: 1 GiB apart.
const HUGE_PAGES: u64 = 0x6200_0000_0000;

/// Which frames are held, one bit per frame of RAM: a frame handed to two
/// holders at once is caught when the second sets a bit already set.
static HELD: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());
static HELD_WORDS: AtomicUsize = AtomicUsize::new(0);
/// Heap blocks left by one CPU for another to free: (address, length,
/// pattern byte, the CPU that allocated it).
static EXCHANGE: IrqMutex<ArrayVec<(usize, usize, u8, usize), 64>> =
    IrqMutex::new(ArrayVec::new_const());
static CROSS_FREES: AtomicU64 = AtomicU64::new(0);
static FRAMES_HANDED_OUT: AtomicU64 = AtomicU64::new(0);
static PAGES_MAPPED: AtomicU64 = AtomicU64::new(0);
static SHARED_MAPPED: AtomicU64 = AtomicU64::new(0);
static HUGE_MAPPED: AtomicU64 = AtomicU64::new(0);

/// The word and bit of `frame` in HELD.
fn held(frame: u64) -> Option<(&'static AtomicU64, u64)> {
    let index = usize::try_from(frame / 4096).ok()?;
    let base = HELD.load(Ordering::Acquire);
    if base.is_null() || index / 64 >= HELD_WORDS.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: HELD points at HELD_WORDS atomics kept alive by the test for
    // as long as the bodies run.
    Some((unsafe { &*base.add(index / 64) }, 1 << (index % 64)))
}

/// Stamps the first and last word of `frame` (through the direct map).
fn stamp(frame: u64, value: u64) {
    let words = phys_to_virt(PhysAddr::new(frame)).as_mut_ptr::<u64>();
    // SAFETY: the caller holds `frame` (fresh from the PMM, owned through
    // OWNERS): RAM, direct-mapped, used by nobody else.
    unsafe {
        words.write_volatile(value);
        words.add(511).write_volatile(!value);
    }
}

fn stamp_intact(frame: u64, value: u64) -> bool {
    let words = phys_to_virt(PhysAddr::new(frame)).as_ptr::<u64>();
    // SAFETY: as in `stamp`.
    unsafe { words.read_volatile() == value && words.add(511).read_volatile() == !value }
}

fn fill(address: usize, len: usize, pattern: u8) {
    // SAFETY: a live heap block of at least `len` bytes held by the caller.
    unsafe { ptr::write_bytes(address as *mut u8, pattern, len) };
}

fn filled(address: usize, len: usize, pattern: u8) -> bool {
    // SAFETY: as in `fill`.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
    bytes.iter().all(|&byte| byte == pattern)
}

/// Gives back a frame this CPU holds, after checking its stamp and bit.
fn release_frame(frame: u64, value: u64) -> TestResult {
    kassert!(
        stamp_intact(frame, value),
        "a held frame was written by someone else"
    );
    if let Some((word, bit)) = held(frame) {
        kassert!(
            word.fetch_and(!bit, Ordering::SeqCst) & bit != 0,
            "a held frame's bit was clear"
        );
    }
    kassert_eq!(pmm::free_page(PhysAddr::new(frame)), Ok(()));
    Ok(())
}

fn release_block(address: usize, len: usize, pattern: u8) -> TestResult {
    kassert!(
        filled(address, len, pattern),
        "a held heap block was written by someone else"
    );
    kassert_eq!(heap::kfree(address as *mut u8), Ok(()));
    Ok(())
}

/// One CPU's share of the stress: frames, heap blocks (some freed by
/// another CPU) and private pages, at random, every one checked.
fn stress(index: usize) -> TestResult {
    let mut rng = XorShift::new(0x5EED_0000 + index as u64);
    let mut frames: ArrayVec<(u64, u64), 16> = ArrayVec::new();
    let mut blocks: ArrayVec<(usize, usize, u8), 24> = ArrayVec::new();
    let private = PRIVATE_PAGES + ((index as u64) << 30);
    for round in 0..ROUNDS {
        match rng.below(8) {
            0 | 1 if !frames.is_full() => {
                let Some(frame) = pmm::alloc_page() else {
                    continue;
                };
                let frame = frame.start_address().as_u64();
                if let Some((word, bit)) = held(frame) {
                    kassert!(
                        word.fetch_or(bit, Ordering::SeqCst) & bit == 0,
                        "a frame was handed to two holders at once"
                    );
                }
                let value = (index as u64) << 48 | round;
                stamp(frame, value);
                frames.push((frame, value));
                FRAMES_HANDED_OUT.fetch_add(1, Ordering::Relaxed);
            }
            0..=2 if !frames.is_empty() => {
                let at = rng.below(frames.len() as u64) as usize;
                let (frame, value) = frames.swap_remove(at);
                release_frame(frame, value)?;
            }
            3 if !blocks.is_full() => {
                let len = 8 + rng.below(3000) as usize;
                let address = heap::kmalloc(len) as usize;
                if address == 0 {
                    continue;
                }
                let pattern = (index as u8).wrapping_mul(31) ^ round as u8 | 1;
                fill(address, len, pattern);
                if rng.below(3) == 0 {
                    let left = EXCHANGE.lock().try_push((address, len, pattern, index));
                    if let Err(full) = left {
                        let (address, len, pattern, _) = full.element();
                        release_block(address, len, pattern)?;
                    }
                } else {
                    blocks.push((address, len, pattern));
                }
            }
            3 | 4 => {
                let taken = EXCHANGE.lock().pop();
                if let Some((address, len, pattern, allocator)) = taken {
                    release_block(address, len, pattern)?;
                    if allocator != index {
                        CROSS_FREES.fetch_add(1, Ordering::Relaxed);
                    }
                } else if !blocks.is_empty() {
                    let at = rng.below(blocks.len() as u64) as usize;
                    let (address, len, pattern) = blocks.swap_remove(at);
                    release_block(address, len, pattern)?;
                }
            }
            6 => {
                let slot = (round % 16) * smp::online() as u64 + index as u64;
                let page = VirtAddr::new(SHARED_PAGES + slot * 4096);
                // Out of frames (under failure injection) is no error here.
                let Ok(mapping) = vmm::map_fresh(page, 4096, WRITABLE | NX) else {
                    continue;
                };
                let word = page.as_mut_ptr::<u64>();
                // SAFETY: the page was just mapped for this CPU alone (its
                // slot is its own; only the tables are shared).
                unsafe { word.write_volatile(round ^ index as u64) };
                // SAFETY: as above.
                kassert_eq!(unsafe { word.read_volatile() }, round ^ index as u64);
                drop(mapping);
                SHARED_MAPPED.fetch_add(1, Ordering::Relaxed);
            }
            7 if round % 8 == 7 => huge_page(index, round)?,
            _ => {
                let page = VirtAddr::new(private + (round % 64) * 4096);
                let Ok(mapping) = vmm::map_fresh(page, 4096, WRITABLE | NX) else {
                    continue;
                };
                let word = page.as_mut_ptr::<u64>();
                // SAFETY: the page was just mapped for this CPU alone.
                unsafe { word.write_volatile(round) };
                // SAFETY: as above.
                kassert_eq!(unsafe { word.read_volatile() }, round);
                drop(mapping);
                PAGES_MAPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for (frame, value) in frames {
        release_frame(frame, value)?;
    }
    for (address, len, pattern) in blocks {
        release_block(address, len, pattern)?;
    }
    Ok(())
}

/// Maps a fresh 2 MiB run as one 2 MiB page in this CPU's window, checks
/// it, unmaps it (a shootdown) and frees the run; skipped when no aligned
/// run is free.
fn huge_page(index: usize, round: u64) -> TestResult {
    const FRAMES: usize = 512;
    let Ok(run) = pmm::alloc_contiguous(FRAMES, FRAMES) else {
        return Ok(());
    };
    let phys = run.start_address();
    let virt = VirtAddr::new(HUGE_PAGES + ((index as u64) << 30));
    // SAFETY: the run is this CPU's alone (fresh from the PMM); the window
    // is this CPU's.
    let mapped = unsafe { vmm::map(virt, phys, PageSize::Size2MiB, WRITABLE | NX) };
    if mapped.is_err() {
        // Out of frames for a page table (under failure injection).
        kassert_eq!(pmm::free_contiguous(phys, FRAMES), Ok(()));
        return Ok(());
    }
    let last = (virt + (2u64 << 20) - 8u64).as_mut_ptr::<u64>();
    // SAFETY: both words lie in the 2 MiB page just mapped.
    unsafe {
        virt.as_mut_ptr::<u64>().write_volatile(round);
        last.write_volatile(!round);
    }
    // SAFETY: as above.
    let intact =
        unsafe { virt.as_ptr::<u64>().read_volatile() == round && last.read_volatile() == !round };
    // SAFETY: nothing uses the page after this.
    let unmapped = unsafe { vmm::unmap(virt) };
    kassert!(intact, "a 2 MiB page did not hold what was written");
    kassert_eq!(unmapped, Ok((phys, PageSize::Size2MiB)));
    kassert_eq!(pmm::free_contiguous(phys, FRAMES), Ok(()));
    HUGE_MAPPED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Every CPU at once: frames (each held one marked in a bitmap), heap blocks
/// with patterns (a third of them freed by another CPU) and private page
/// mappings; afterwards every counter is back and the heap verifies.
fn allocators_on_every_cpu(context: &Context<'_>) -> TestResult {
    let heap_before = heap::stats();
    let frames = context
        .boot_info
        .memory_map()
        .iter()
        .filter(|region| region.kind == MemoryKind::Available)
        .map(|region| region.range().end)
        .max()
        .unwrap_or(0)
        / 4096;
    let words = (frames as usize).div_ceil(64);
    let held_bits: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
    let pmm_before = pmm::stats();
    let tables_before = vmm::table_count();
    let ipis = smp::ipis_sent();
    let (shootdowns_before, _) = smp::shootdown_counts();
    HELD.store(held_bits.as_ptr() as *mut AtomicU64, Ordering::Release);
    HELD_WORDS.store(held_bits.len(), Ordering::Release);
    for counter in [
        &CROSS_FREES,
        &FRAMES_HANDED_OUT,
        &PAGES_MAPPED,
        &SHARED_MAPPED,
        &HUGE_MAPPED,
    ] {
        counter.store(0, Ordering::SeqCst);
    }
    let result = on_all_cpus(stress);
    HELD_WORDS.store(0, Ordering::Release);
    HELD.store(ptr::null_mut(), Ordering::Release);
    // Blocks still waiting for another CPU.
    while let Some((address, len, pattern, _)) = EXCHANGE.lock().pop() {
        release_block(address, len, pattern)?;
    }
    drop(held_bits);
    result?;
    let online = smp::online() as u64;
    let (shootdowns, _) = smp::shootdown_counts();
    kprintln!(
        "    {} CPUs x {ROUNDS} rounds: {} frames handed out, {} heap blocks freed by another CPU, {} private, {} shared-range and {} 2 MiB pages mapped, {} work IPIs, {} shootdowns",
        online,
        FRAMES_HANDED_OUT.load(Ordering::Relaxed),
        CROSS_FREES.load(Ordering::Relaxed),
        PAGES_MAPPED.load(Ordering::Relaxed),
        SHARED_MAPPED.load(Ordering::Relaxed),
        HUGE_MAPPED.load(Ordering::Relaxed),
        smp::ipis_sent() - ipis,
        shootdowns - shootdowns_before
    );
    kassert_eq!(pmm::stats(), pmm_before);
    let heap_after = heap::stats();
    kassert_eq!(heap_after.used, heap_before.used);
    kassert_eq!(heap_after.live_allocations, heap_before.live_allocations);
    kassert_eq!(vmm::table_count(), tables_before);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// The page the shootdown test remaps, and its phases.
const SHOOTDOWN_PAGE: u64 = 0x6800_0000_0000;
const OLD: u64 = 0x01D0_01D0_01D0_01D0;
const STALE: u64 = 0x57A1_E57A_1E57_A1E5;
const NEW: u64 = 0x0E30_0E30_0E30_0E30;
static READERS_READY: AtomicUsize = AtomicUsize::new(0);
static READERS_FAULTED: AtomicUsize = AtomicUsize::new(0);
/// 0: mapped to the first frame; 1: unmapped; 2: mapped to the second;
/// [`ABORTED`]: the boot CPU's side failed (readers stop waiting).
static PHASE: AtomicUsize = AtomicUsize::new(0);
const ABORTED: usize = usize::MAX;

fn read_shootdown_page() -> u64 {
    // SAFETY: the page is mapped while readers read it (the boot CPU
    // remaps it only between the two phases, when nobody reads).
    unsafe {
        VirtAddr::new(SHOOTDOWN_PAGE)
            .as_ptr::<u64>()
            .read_volatile()
    }
}

/// Readers (every other CPU) read the page, caching its translation. The
/// boot CPU unmaps it (one shootdown) and writes a new value into the old
/// frame: each reader's next read must fault (a page fault at the page,
/// caught on that CPU), never return the old frame's new value. Then the
/// boot CPU maps the page to another frame: each reader must read that
/// frame's value.
fn shootdown_reader(index: usize) -> TestResult {
    if index == 0 {
        let result = shootdown_writer();
        if result.is_err() {
            // An injected allocation failure, say: let the readers go
            // instead of leaving them to time out.
            PHASE.store(ABORTED, Ordering::SeqCst);
        }
        return result;
    }
    kassert_eq!(read_shootdown_page(), OLD);
    READERS_READY.fetch_add(1, Ordering::SeqCst);
    let unmapped = clock::wait_us(JOIN_TIMEOUT_US / 2, || PHASE.load(Ordering::SeqCst) >= 1);
    kassert!(unmapped, "the boot CPU never unmapped the page");
    kassert!(
        PHASE.load(Ordering::SeqCst) != ABORTED,
        "the boot CPU gave up"
    );
    let mut seen = 0;
    let fault = catch_fault(|| seen = read_shootdown_page());
    kassert!(seen != STALE, "a CPU read through a stale translation");
    let fault = fault.ok_or(Failure::here("reading the unmapped page did not fault"))?;
    kassert_eq!(
        (fault.vector, fault.address),
        (vector::PAGE_FAULT, SHOOTDOWN_PAGE)
    );
    READERS_FAULTED.fetch_add(1, Ordering::SeqCst);
    let remapped = clock::wait_us(JOIN_TIMEOUT_US / 2, || PHASE.load(Ordering::SeqCst) >= 2);
    kassert!(remapped, "the boot CPU never remapped the page");
    kassert!(
        PHASE.load(Ordering::SeqCst) != ABORTED,
        "the boot CPU gave up"
    );
    let seen = read_shootdown_page();
    kassert!(seen != STALE, "a CPU read through a stale translation");
    kassert_eq!(seen, NEW);
    Ok(())
}

fn shootdown_writer() -> TestResult {
    let others = smp::online() - 1;
    let ready = clock::wait_us(JOIN_TIMEOUT_US / 2, || {
        READERS_READY.load(Ordering::SeqCst) >= others
    });
    kassert!(ready, "a reader never read the page");
    let page = VirtAddr::new(SHOOTDOWN_PAGE);
    // SAFETY: the readers touch the page only inside their fault catchers
    // from now on.
    let (old, _) = unsafe { vmm::unmap(page) }.map_err(|_| Failure::here("unmap failed"))?;
    SHOOTDOWN_FRAMES.lock().push(old);
    let old_word = phys_to_virt(old).as_mut_ptr::<u64>();
    // SAFETY: `old` is this test's frame, unmapped now, reached through
    // the direct map.
    unsafe { old_word.write_volatile(STALE) };
    PHASE.store(1, Ordering::SeqCst);
    let faulted = clock::wait_us(JOIN_TIMEOUT_US / 2, || {
        READERS_FAULTED.load(Ordering::SeqCst) >= others
    });
    kassert!(faulted, "a reader never faulted on the unmapped page");
    let new = pmm::alloc_page().ok_or(Failure::here("no frame"))?;
    SHOOTDOWN_FRAMES.lock().push(new.start_address());
    let new_word = phys_to_virt(new.start_address()).as_mut_ptr::<u64>();
    // SAFETY: a fresh frame of this test.
    unsafe { new_word.write_volatile(NEW) };
    // SAFETY: the frame is this test's alone; the page is free again.
    unsafe { vmm::map(page, new.start_address(), PageSize::Size4KiB, WRITABLE | NX) }
        .map_err(|_| Failure::here("remap failed"))?;
    PHASE.store(2, Ordering::SeqCst);
    Ok(())
}

/// The frames the shootdown test used, freed after the join.
static SHOOTDOWN_FRAMES: IrqMutex<ArrayVec<PhysAddr, 2>> = IrqMutex::new(ArrayVec::new_const());

fn shootdown_reaches_every_cpu(_: &Context<'_>) -> TestResult {
    let pmm_before = pmm::stats();
    let (shootdowns, ipis) = smp::shootdown_counts();
    let first = pmm::alloc_page().ok_or(Failure::here("no frame"))?;
    let word = phys_to_virt(first.start_address()).as_mut_ptr::<u64>();
    // SAFETY: a fresh frame of this test.
    unsafe { word.write_volatile(OLD) };
    let page = VirtAddr::new(SHOOTDOWN_PAGE);
    // SAFETY: the frame is this test's alone; the page is unused.
    unsafe {
        vmm::map(
            page,
            first.start_address(),
            PageSize::Size4KiB,
            WRITABLE | NX,
        )
    }
    .map_err(|_| Failure::here("map failed"))?;
    READERS_READY.store(0, Ordering::SeqCst);
    READERS_FAULTED.store(0, Ordering::SeqCst);
    PHASE.store(0, Ordering::SeqCst);
    let result = on_all_cpus(shootdown_reader);
    if PHASE.load(Ordering::SeqCst) != 1 {
        // SAFETY: every reader finished (or the test failed and stops here).
        let _ = unsafe { vmm::unmap(page) };
    }
    let frames: ArrayVec<PhysAddr, 2> = core::mem::take(&mut *SHOOTDOWN_FRAMES.lock());
    if frames.is_empty() {
        let _ = pmm::free_page(first.start_address());
    }
    for frame in frames {
        let _ = pmm::free_page(frame);
    }
    result?;
    let (shootdowns_after, ipis_after) = smp::shootdown_counts();
    let others = smp::online() as u64 - 1;
    kprintln!(
        "    {} shootdowns reached other CPUs, {} IPIs, for {others} other CPUs",
        shootdowns_after - shootdowns,
        ipis_after - ipis
    );
    if others > 0 {
        // The unmap between the phases and the cleanup unmap: one IPI to
        // each other CPU each.
        kassert_eq!(shootdowns_after - shootdowns, 2);
        kassert_eq!(ipis_after - ipis, 2 * others);
    }
    kassert_eq!(pmm::stats(), pmm_before);
    Ok(())
}

/// The suite's tests that fault on purpose (page faults, #GP, #UD, a
/// double fault on the guard page, NMIs, W^X): run again on the last CPU.
const FAULT_TESTS: &[&str] = &[
    "boot::invalid_opcode_is_reported",
    "boot::nmi_is_counted_and_survived",
    "boot::non_canonical_access_general_protection",
    "boot::null_read_page_faults_with_cr2_0",
    "boot::stack_overflow_hits_guard_then_double_fault",
    "heap::unmapped_heap_page_faults",
    "fault::executing_heap_memory_faults",
    "vmm::boot_page_tables_not_writable_through_low_memory",
    "vmm::cr4_protections_on_where_offered",
    "vmm::kernel_text_is_not_writable",
    "vmm::map_write_read_back_unmap_faults",
    "vmm::rodata_is_not_writable",
];

/// The context of the running test, for bodies on other CPUs.
static CONTEXT: AtomicUsize = AtomicUsize::new(0);
/// How many fault tests ran on the other CPU.
static FAULT_TESTS_RUN: AtomicUsize = AtomicUsize::new(0);

fn fault_tests_on_last_cpu(index: usize) -> TestResult {
    if index + 1 != smp::online() {
        return Ok(());
    }
    // SAFETY: `fault_tests_on_another_cpu` stored the address of its
    // context, which outlives the join of this body.
    let context = unsafe { &*(CONTEXT.load(Ordering::SeqCst) as *const Context<'_>) };
    let all = super::boot_tests::TESTS
        .iter()
        .chain(super::heap_tests::TESTS)
        .chain(super::reliability_tests::TESTS)
        .chain(super::vmm_tests::TESTS);
    for test in all.filter(|test| FAULT_TESTS.contains(&test.name)) {
        if let Err(failure) = (test.run)(context) {
            set_detail(format_args!("    {} failed on CPU {index}", test.name));
            return Err(failure);
        }
        FAULT_TESTS_RUN.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// Every test that faults on purpose passes on the last CPU too (its own
/// recovery point, its own double-fault and NMI stacks); on one CPU they
/// run on it again.
fn fault_tests_on_another_cpu(context: &Context<'_>) -> TestResult {
    CONTEXT.store(context as *const Context<'_> as usize, Ordering::SeqCst);
    FAULT_TESTS_RUN.store(0, Ordering::SeqCst);
    let result = on_all_cpus(fault_tests_on_last_cpu);
    CONTEXT.store(0, Ordering::SeqCst);
    result?;
    kassert_eq!(FAULT_TESTS_RUN.load(Ordering::SeqCst), FAULT_TESTS.len());
    Ok(())
}
