//! In-kernel tests of user mode and address spaces: programs that run,
//! fill memory on demand, share it copy-on-write, stay apart, are ended
//! when they reach for what is not theirs, and leave nothing behind.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use x86_64::VirtAddr;

use super::reclaim_tests::HeldFrames;
use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::exceptions::vector;
use crate::arch::x86_64::{clock, cpu, sections, smp};
use crate::kernel_mm::{heap, pmm, reclaim, vmm};
use crate::sync::IrqMutex;
use crate::user::programs::{self, probe, Program};
use crate::user::space::{self, UserSpace};
use crate::user::syscall::{EFAULT, ENOSYS};
use crate::user::{Exit, KillReason};
use crate::{kassert, kassert_eq, kprintln};
use mm::aspace::Perms;
use mm::layout::{DIRECT_MAP_OFFSET, HEAP_START, PAGE_SIZE, USER_START};

/// The user-mode tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "user::a_program_runs_writes_and_exits",
        run: runs_and_exits,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::bad_images_are_refused",
        run: bad_images_are_refused,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::64_mib_are_filled_on_demand_and_given_back",
        run: demand_paging,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::two_spaces_never_see_each_other",
        run: spaces_are_isolated,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::clone_cow_100_cycles_copy_only_what_is_written",
        run: clone_cow_cycles,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::bad_accesses_end_the_program_and_the_kernel_goes_on",
        run: bad_accesses_are_ended,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::system_calls_refuse_bad_pointers",
        run: syscalls_refuse_bad_pointers,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::protect_and_unmap_take_effect",
        run: protect_and_unmap,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::1000_spaces_and_a_fault_storm_leak_nothing",
        run: churn_leaks_nothing,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::programs_run_on_every_cpu",
        run: every_cpu_runs_programs,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::changes_reach_exactly_the_cpus_that_load_the_space",
        run: shootdown_targets,
        expects: Expect::NOTHING,
    },
    Test {
        name: "user::out_of_frames_a_fault_takes_what_the_heap_gives_back",
        run: pressure_releases_heap_pages,
        expects: Expect::NOTHING,
    },
];

/// Where the tests map anonymous memory: 4 GiB into the user half.
const SCRATCH: u64 = USER_START + 0x1_0000_0000;

/// Frames, page tables and spaces, to compare before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    free: u64,
    tables: usize,
    live: u64,
    resident: u64,
    lost: u64,
}

fn counters() -> Counters {
    let spaces = space::stats();
    Counters {
        free: pmm::stats().free,
        tables: vmm::table_count(),
        live: spaces.live,
        resident: spaces.resident,
        lost: spaces.lost_frames,
    }
}

fn load_probe() -> Result<Program, super::Failure> {
    programs::load(programs::probe_image())
        .map_err(|_| super::Failure::here("the probe does not load"))
}

/// The exit code, or a failure naming how it ended instead.
fn exited(exit: Exit) -> Result<i64, super::Failure> {
    match exit {
        Exit::Exited(code) => Ok(code),
        Exit::Killed(kill) => {
            kprintln!("    unexpectedly ended: {kill}");
            Err(super::Failure::here("the program was ended by the kernel"))
        }
    }
}

fn runs_and_exits(_: &Context<'_>) -> TestResult {
    let before = counters();
    {
        let program = load_probe()?;
        kassert_eq!(exited(program.run([probe::EXIT, 42, 0]))?, 42);
        kassert_eq!(exited(program.run([probe::EXIT, u64::MAX, 0]))?, -1);
        let greeting = "hello from user mode\n".len() as i64;
        kassert_eq!(exited(program.run([probe::HELLO, 0, 0]))?, greeting);
        // Its own bss, written then read back.
        let bss = program.data().as_u64();
        kassert_eq!(exited(program.run([probe::STORE, bss, 0x1234]))?, 0);
        kassert_eq!(exited(program.run([probe::READ, bss, 0]))?, 0x1234);
        kassert_eq!(exited(program.run([probe::RAW_SYSCALL, 99, 0]))?, ENOSYS);
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn bad_images_are_refused(_: &Context<'_>) -> TestResult {
    let before = counters();
    let good = programs::probe_image();
    let mut bad_magic = alloc::vec::Vec::from(good);
    bad_magic[0] ^= 0xFF;
    let truncated = &good[..good.len() - 1];
    for (image, what) in [
        (&bad_magic[..], "bad magic"),
        (truncated, "truncated"),
        (&good[..16], "shorter than a header"),
    ] {
        match programs::load(image) {
            Err(programs::LoadError::Image(error)) => kprintln!("    {what}: {error}"),
            _ => return Err(super::Failure::here("a bad image was loaded")),
        }
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn demand_paging(_: &Context<'_>) -> TestResult {
    const FULL: u64 = 64 * 1024 * 1024;
    let before = counters();
    // 64 MiB of data, with an eighth more free for the tables and the
    // heap; on a machine too small for that (the 48 and 64 MiB boots,
    // the smallest the kernel accepts), as many MiB as fit the same way.
    let room = before.free * PAGE_SIZE * 8 / 9;
    let bytes = FULL.min(room - room % (1024 * 1024));
    kassert!(bytes >= 1024 * 1024, "not even 1 MiB free");
    if bytes < FULL {
        kprintln!("    only {} MiB free enough: touching that", bytes >> 20);
    }
    let pages = bytes / PAGE_SIZE;
    let faults_before = space::stats();
    {
        let program = load_probe()?;
        let resident = program.space.resident_pages();
        let free_loaded = pmm::stats().free;
        kassert_eq!(
            exited(program.run([probe::TOUCH, SCRATCH, bytes]))?,
            pages as i64
        );
        let faults = space::stats();
        kassert_eq!(faults.demand_zero - faults_before.demand_zero, pages);
        kassert_eq!(program.space.resident_pages() - resident, pages);
        let taken = free_loaded - pmm::stats().free;
        let tables = program.space.table_frames();
        kprintln!(
            "    {pages} pages touched: {pages} demand-zero faults, {taken} frames taken ({tables} page tables in the space)"
        );
        kassert!(taken >= pages, "fewer frames than pages");
        kassert!(
            taken <= pages + tables,
            "frames beyond the pages and tables"
        );
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn spaces_are_isolated(_: &Context<'_>) -> TestResult {
    let before = counters();
    {
        let first = load_probe()?;
        let second = load_probe()?;
        let at = first.data().as_u64();
        kassert_eq!(at, second.data().as_u64());
        kassert_eq!(exited(first.run([probe::STORE, at, 0xAAAA]))?, 0);
        kassert_eq!(exited(second.run([probe::STORE, at, 0xBBBB]))?, 0);
        kassert_eq!(exited(first.run([probe::READ, at, 0]))?, 0xAAAA);
        kassert_eq!(exited(second.run([probe::READ, at, 0]))?, 0xBBBB);
        // Scratch memory of one is no region of the other.
        kassert_eq!(exited(first.run([probe::TOUCH, SCRATCH, PAGE_SIZE]))?, 1);
        match second.run([probe::READ, SCRATCH, 0]) {
            Exit::Killed(kill) => kassert_eq!(kill.reason, KillReason::NoRegion),
            Exit::Exited(_) => return Err(super::Failure::here("read another space's page")),
        }
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn clone_cow_cycles(_: &Context<'_>) -> TestResult {
    const CYCLES: u64 = 100;
    let before = counters();
    let start = space::stats();
    {
        let parent = load_probe()?;
        let at = parent.data().as_u64();
        kassert_eq!(exited(parent.run([probe::STORE, at, 7]))?, 0);
        for cycle in 0..CYCLES {
            let child = parent
                .clone_cow()
                .map_err(|_| super::Failure::here("clone_cow failed"))?;
            let resident = parent.space.resident_pages();
            let free = pmm::stats().free;
            // Child writes: it gets its own copy; the parent keeps its value.
            kassert_eq!(
                exited(child.run([probe::READ, at, 0]))?,
                7 + 2 * cycle as i64
            );
            kassert_eq!(free - pmm::stats().free, 0);
            let value = 1000 + cycle;
            kassert_eq!(exited(child.run([probe::STORE, at, value]))?, 0);
            kassert_eq!(
                exited(parent.run([probe::READ, at, 0]))?,
                7 + 2 * cycle as i64
            );
            kassert_eq!(exited(child.run([probe::READ, at, 0]))?, value as i64);
            // The parent writes too: the child sees only its own.
            let next = 7 + 2 * (cycle + 1);
            kassert_eq!(exited(parent.run([probe::STORE, at, next]))?, 0);
            kassert_eq!(exited(child.run([probe::READ, at, 0]))?, value as i64);
            kassert_eq!(parent.space.resident_pages(), resident);
        }
    }
    let end = space::stats();
    kprintln!(
        "    {CYCLES} cycles: {} pages copied, {} taken over",
        end.cow_copied - start.cow_copied,
        end.cow_taken - start.cow_taken
    );
    // One page written by both sides each cycle: the child's write copies
    // it, the parent's (last reference) takes the original over.
    kassert_eq!(end.cow_copied - start.cow_copied, CYCLES);
    kassert_eq!(end.cow_taken - start.cow_taken, CYCLES);
    kassert_eq!(counters(), before);
    Ok(())
}

/// Runs the probe with `args` and expects it ended with `vector` (and,
/// for page faults, `reason`).
fn expect_kill(
    program: &Program,
    args: [u64; 3],
    vector: u64,
    reason: Option<KillReason>,
    what: &str,
) -> TestResult {
    match program.run(args) {
        Exit::Killed(kill) => {
            kprintln!("    {what}: {kill}");
            kassert_eq!(kill.vector, vector);
            if let Some(reason) = reason {
                kassert_eq!(kill.reason, reason);
            }
            Ok(())
        }
        Exit::Exited(code) => {
            kprintln!("    {what}: exited with {code}");
            Err(super::Failure::here("a bad access was not stopped"))
        }
    }
}

fn bad_accesses_are_ended(_: &Context<'_>) -> TestResult {
    let before = counters();
    let killed = crate::user::fault::killed();
    {
        let program = load_probe()?;
        let text = sections::kernel_image().start + PAGE_SIZE;
        let kernel = Some(KillReason::KernelAddress);
        let pf = vector::PAGE_FAULT;
        expect_kill(
            &program,
            [probe::READ, text, 0],
            pf,
            kernel,
            "read kernel text",
        )?;
        expect_kill(
            &program,
            [probe::READ, DIRECT_MAP_OFFSET + 0x10_0000, 0],
            pf,
            kernel,
            "read the direct map",
        )?;
        expect_kill(
            &program,
            [probe::READ, HEAP_START, 0],
            pf,
            kernel,
            "read the heap",
        )?;
        expect_kill(&program, [probe::READ, 0, 0], pf, kernel, "read page 0")?;
        expect_kill(
            &program,
            [probe::CALL, text, 0],
            pf,
            kernel,
            "call kernel text",
        )?;
        let data = program.data().as_u64();
        expect_kill(
            &program,
            [probe::CALL, data, 0],
            pf,
            Some(KillReason::NotPermitted(Perms::READ_WRITE)),
            "execute its data",
        )?;
        expect_kill(
            &program,
            [probe::WRITE_CODE, 0, 0],
            pf,
            Some(KillReason::NotPermitted(Perms::READ_EXEC)),
            "write its code",
        )?;
        expect_kill(
            &program,
            [probe::READ, SCRATCH, 0],
            pf,
            Some(KillReason::NoRegion),
            "read outside every region",
        )?;
        let non_canonical = 0x8000_0000_0000_0000;
        expect_kill(
            &program,
            [probe::READ, non_canonical, 0],
            vector::GENERAL_PROTECTION,
            None,
            "read a non-canonical address",
        )?;
        if cpu::protections().umip {
            expect_kill(
                &program,
                [probe::SGDT, 0, 0],
                vector::GENERAL_PROTECTION,
                None,
                "sgdt under UMIP",
            )?;
        } else {
            kprintln!("    sgdt under UMIP: not tried, the CPU lacks UMIP");
        }
        // After all that the program still works.
        kassert_eq!(exited(program.run([probe::EXIT, 5, 0]))?, 5);
    }
    kassert!(crate::user::fault::killed() > killed, "no kill counted");
    kassert_eq!(counters(), before);
    Ok(())
}

fn syscalls_refuse_bad_pointers(_: &Context<'_>) -> TestResult {
    let before = counters();
    {
        let program = load_probe()?;
        for (pointer, what) in [
            (HEAP_START, "a kernel pointer"),
            (0x8000_0000_0000_0000, "a non-canonical pointer"),
            (SCRATCH, "an unmapped user pointer"),
            (USER_START - 8, "a range that starts below the user half"),
        ] {
            let result = exited(program.run([probe::WRITE_SYSCALL, pointer, 16]))?;
            kprintln!("    write from {what} ({pointer:#x}): {result}");
            kassert_eq!(result, EFAULT);
        }
        // A good one prints.
        let bss = program.data().as_u64();
        let text = u64::from_le_bytes(*b"user ok\n");
        kassert_eq!(exited(program.run([probe::STORE, bss, text]))?, 0);
        kassert_eq!(exited(program.run([probe::WRITE_SYSCALL, bss, 8]))?, 8);
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn protect_and_unmap(_: &Context<'_>) -> TestResult {
    let before = counters();
    {
        let program = load_probe()?;
        expect_kill(
            &program,
            [probe::PROTECT, SCRATCH, 0],
            vector::PAGE_FAULT,
            Some(KillReason::NotPermitted(Perms::READ)),
            "write after protect(read)",
        )?;
        let other = SCRATCH + 0x10_0000;
        expect_kill(
            &program,
            [probe::UNMAP, other, 4 * PAGE_SIZE],
            vector::PAGE_FAULT,
            Some(KillReason::NoRegion),
            "read after unmap",
        )?;
    }
    kassert_eq!(counters(), before);
    Ok(())
}

fn churn_leaks_nothing(_: &Context<'_>) -> TestResult {
    const SPACES: usize = 1000;
    const FAULTS: usize = 2000;
    let before = counters();
    for round in 0..SPACES {
        let program = load_probe()?;
        kassert_eq!(
            exited(program.run([probe::EXIT, round as u64, 0]))?,
            round as i64
        );
    }
    kassert_eq!(counters(), before);
    let killed = crate::user::fault::killed();
    {
        let program = load_probe()?;
        for fault in 0..FAULTS {
            let address = match fault % 4 {
                0 => HEAP_START,
                1 => SCRATCH + fault as u64 * PAGE_SIZE,
                2 => 0,
                _ => DIRECT_MAP_OFFSET,
            };
            if let Exit::Exited(_) = program.run([probe::READ, address, 0]) {
                return Err(super::Failure::here("a bad read went through"));
            }
        }
    }
    kassert_eq!(crate::user::fault::killed() - killed, FAULTS as u64);
    kprintln!("    {SPACES} spaces created and destroyed, {FAULTS} faulting programs ended");
    kassert_eq!(counters(), before);
    Ok(())
}

/// With every frame taken, a program's first touches fail for want of
/// frames until the heap gives its free end back (memory pressure); the
/// faults then succeed on those frames, and the program exits normally.
fn pressure_releases_heap_pages(_: &Context<'_>) -> TestResult {
    const PAGES: u64 = 16;
    let program = load_probe()?;
    // Free heap pages still mapped, for the pressure to find (a large
    // free keeps 1 MiB of free memory mapped).
    let block = heap::kmalloc(2 * 1024 * 1024);
    kassert!(!block.is_null(), "no 2 MiB heap block");
    kassert!(heap::kfree(block).is_ok(), "the block did not free");
    // Hold every free frame (the heap must not grow while it is being
    // measured).
    let held = HeldFrames::all();
    let (reclaims, _) = reclaim::stats();
    let exit = program.run([probe::TOUCH, SCRATCH, PAGES * PAGE_SIZE]);
    let (reclaims_after, pages) = reclaim::stats();
    let count = held.count;
    drop(held);
    kprintln!(
        "    {count} frames held; {} reclaims gave back {pages} pages since boot; the program {exit}",
        reclaims_after - reclaims
    );
    kassert_eq!(exit, Exit::Exited(PAGES as i64));
    kassert!(reclaims_after > reclaims, "no reclaim ran");
    drop(program);
    kassert_eq!(space::stats().lost_frames, 0);
    Ok(())
}

/// The program every CPU runs in [`every_cpu_runs_programs`].
static FAILED_ON: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn every_cpu_runs_programs(_: &Context<'_>) -> TestResult {
    let before = counters();
    FAILED_ON.store(0, Ordering::SeqCst);
    let work = |index: usize| {
        let ok = programs::load(programs::probe_image()).is_ok_and(|program| {
            let bss = program.data().as_u64();
            program.run([probe::STORE, bss, index as u64 + 1]) == Exit::Exited(0)
                && program.run([probe::READ, bss, 0]) == Exit::Exited(index as i64 + 1)
                && program.run([probe::TOUCH, SCRATCH, 16 * PAGE_SIZE]) == Exit::Exited(16)
        });
        if !ok {
            FAILED_ON.fetch_or(1 << index, Ordering::SeqCst);
        }
    };
    smp::run_on_all(work, 10_000_000).map_err(|_| super::Failure::here("a CPU hung"))?;
    kassert_eq!(FAILED_ON.load(Ordering::SeqCst), 0);
    kprintln!("    {} CPUs ran their own programs", smp::online());
    kassert_eq!(counters(), before);
    Ok(())
}

/// The space CPU 1 loads in [`shootdown_targets`], the handshake, and
/// the boot CPU's verdict.
static SHARED: AtomicPtr<UserSpace> = AtomicPtr::new(ptr::null_mut());
static LOADED: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);
static VERDICT: IrqMutex<Option<TestResult>> = IrqMutex::new(None);

fn shootdown_targets(_: &Context<'_>) -> TestResult {
    if smp::online() < 2 {
        return one_cpu_sends_no_ipi();
    }
    let before = counters();
    {
        let space = UserSpace::new().map_err(|_| super::Failure::here("no space"))?;
        let at = VirtAddr::new(SCRATCH);
        space
            .reserve(at, BULK_AT + BULK * PAGE_SIZE, Perms::READ_WRITE)
            .map_err(|_| super::Failure::here("map failed"))?;
        // The pages the checks unmap, filled without the heap (whose
        // growth would move the frame counts).
        let bulk = (0..BULK).map(|page| at + BULK_AT + page * PAGE_SIZE);
        for page in [at, at + PAGE_SIZE].into_iter().chain(bulk) {
            space
                .populate(page, &[1; 64])
                .map_err(|_| super::Failure::here("populate failed"))?;
        }
        SHARED.store(ptr::from_ref(&*space).cast_mut(), Ordering::SeqCst);
        LOADED.store(false, Ordering::SeqCst);
        RELEASE.store(false, Ordering::SeqCst);
        *VERDICT.lock() = None;
        let hung = smp::run_on_all(shootdown_work, 20_000_000);
        SHARED.store(ptr::null_mut(), Ordering::SeqCst);
        hung.map_err(|_| super::Failure::here("a CPU hung"))?;
        VERDICT
            .lock()
            .take()
            .unwrap_or(Err(super::Failure::here("the boot CPU gave no verdict")))?;
    }
    kassert_eq!(counters(), before);
    Ok(())
}

/// With one CPU: the space is loaded here only, so a change to it sends
/// no IPI at all.
fn one_cpu_sends_no_ipi() -> TestResult {
    let before = counters();
    {
        let space = UserSpace::new().map_err(|_| super::Failure::here("no space"))?;
        let at = VirtAddr::new(SCRATCH);
        space
            .reserve(at, PAGE_SIZE, Perms::READ_WRITE)
            .map_err(|_| super::Failure::here("reserve failed"))?;
        space
            .populate(at, &[1; 64])
            .map_err(|_| super::Failure::here("populate failed"))?;
        let ipis = smp::shootdown_counts();
        {
            let _loaded = space.activate();
            kassert_eq!(space.cpus(), 1);
            space
                .unmap(at, PAGE_SIZE)
                .map_err(|_| super::Failure::here("unmap failed"))?;
        }
        kassert_eq!(space.cpus(), 0);
        kassert_eq!(smp::shootdown_counts(), ipis);
        kprintln!("    one CPU: the change flushed this CPU only, no IPI");
    }
    kassert_eq!(counters(), before);
    Ok(())
}

/// CPU 1 loads the shared space until released; the boot CPU (which
/// runs its part after posting CPU 1's) changes the space meanwhile and
/// after, and counts the shootdowns each CPU served.
fn shootdown_work(index: usize) {
    // SAFETY: shootdown_targets keeps the space alive until run_on_all,
    // which waits for every CPU's part, has returned.
    let space = unsafe { &*SHARED.load(Ordering::SeqCst) };
    match index {
        0 => {
            let verdict = shootdown_checks(space);
            RELEASE.store(true, Ordering::SeqCst);
            *VERDICT.lock() = Some(verdict);
        }
        1 => {
            let loaded = space.activate();
            LOADED.store(true, Ordering::SeqCst);
            clock::wait_us(10_000_000, || RELEASE.load(Ordering::SeqCst));
            drop(loaded);
            LOADED.store(false, Ordering::SeqCst);
        }
        _ => {}
    }
}

/// Pages one change of [`shootdown_checks`] unmaps at once, more than the
/// frames a change holds back (64): the list fills, and a full flush on
/// the CPU that has the space loaded lets them all go back at once.
const BULK: u64 = 100;
/// Where those pages start in the test's region.
const BULK_AT: u64 = 16 * PAGE_SIZE;

fn shootdown_checks(space: &UserSpace) -> TestResult {
    let served = || -> alloc::vec::Vec<u64> {
        (0..smp::MAX_CPUS)
            .filter_map(smp::cpu)
            .map(|cpu| cpu.shootdowns_served.load(Ordering::SeqCst))
            .collect()
    };
    let at = VirtAddr::new(SCRATCH);
    kassert!(
        clock::wait_us(5_000_000, || LOADED.load(Ordering::SeqCst)),
        "CPU 1 did not load the space"
    );
    kassert_eq!(space.cpus(), 1 << 1);
    let first = served();
    space
        .unmap(at, PAGE_SIZE)
        .map_err(|_| super::Failure::here("unmap failed"))?;
    let second = served();
    space
        .unmap(at + BULK_AT, BULK * PAGE_SIZE)
        .map_err(|_| super::Failure::here("unmap failed"))?;
    let bulk = served();
    RELEASE.store(true, Ordering::SeqCst);
    kassert!(
        clock::wait_us(5_000_000, || !LOADED.load(Ordering::SeqCst)),
        "CPU 1 did not unload the space"
    );
    kassert_eq!(space.cpus(), 0);
    space
        .unmap(at + PAGE_SIZE, PAGE_SIZE)
        .map_err(|_| super::Failure::here("unmap failed"))?;
    let third = served();
    for cpu in 0..first.len() {
        let (loaded, many, unloaded) = (
            second[cpu] - first[cpu],
            bulk[cpu] - second[cpu],
            third[cpu] - bulk[cpu],
        );
        kprintln!(
            "    CPU {cpu}: {loaded} shootdowns while CPU 1 had the space, {many} for {BULK} pages at once, {unloaded} after"
        );
        kassert_eq!(loaded, u64::from(cpu == 1));
        // The full flush when the held frames filled, then the batch's.
        kassert_eq!(many, 2 * u64::from(cpu == 1));
        kassert_eq!(unloaded, 0);
    }
    Ok(())
}
