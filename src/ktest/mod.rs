//! The in-kernel test runner (`test` on the kernel command line).
//!
//! Each test is a named function that returns `Ok(())` or a failure with
//! its source location. The runner prints `test NAME ... ok` / `FAILED`,
//! then `N passed, N failed`, and exits QEMU through `isa-debug-exit` with
//! the matching status. A hanging test is caught by the runner script's
//! timeout; a panic or an unexpected CPU exception ends the run as failed.

mod boot_tests;
mod c_abi_tests;
mod frame_cache_tests;
mod heap_release_tests;
mod heap_tests;
mod integrity_tests;
mod magazine_tests;
mod numa_tests;
mod pmm_tests;
mod raw_vmm;
mod reclaim_tests;
mod reliability_tests;
mod selftest;
mod slab_tests;
mod smp_tests;
mod user_tests;
mod usercopy_tests;
mod vmm_tests;

pub use selftest::crash;

use core::fmt::{self, Write};

use arrayvec::ArrayString;

use crate::arch::x86_64::cpu::{self, QemuExitCode};
use crate::boot::BootInfo;
use crate::console::logger;
use crate::kprintln;
use crate::sync::IrqMutex;
use mm::fail::FailPlan;

/// Why a test failed.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    /// What was expected.
    pub message: &'static str,
    /// Source file of the failed check.
    pub file: &'static str,
    /// Line of the failed check.
    pub line: u32,
}

impl Failure {
    /// A failed check at the caller's source location.
    #[track_caller]
    pub fn here(message: &'static str) -> Self {
        let location = core::panic::Location::caller();
        Self {
            message,
            file: location.file(),
            line: location.line(),
        }
    }
}

/// What a test returns.
pub type TestResult = Result<(), Failure>;

/// What tests may look at.
pub struct Context<'a> {
    /// The parsed boot information.
    pub boot_info: &'a BootInfo<'a>,
}

/// A named in-kernel test.
pub struct Test {
    /// Name printed by the runner (`module::what_it_checks`).
    pub name: &'static str,
    /// The test itself.
    pub run: fn(&Context<'_>) -> TestResult,
    /// The error counters it moves on purpose (all others must not move).
    pub expects: Expect,
}

/// Error counters a test may move on purpose, and the log sources whose
/// warnings and errors it provokes: a test that passes while a counter it
/// does not expect moved (a red zone overwritten, a free refused
/// somewhere), or that logs a warning or error from another source, fails,
/// since its log holds an error nobody asked for. The expected lines are
/// written `[expected LEVEL source]`, so the boot tests can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Refused frees (heap, PMM, object caches).
    pub bad_frees: bool,
    /// Red-zone violations found by the heap's debug checks.
    pub red_zones: bool,
    /// Log sources (targets such as `kernel_mm::pmm`) of the warnings and
    /// errors the test provokes.
    pub logs: &'static [&'static str],
}

impl Expect {
    /// No error counter moves, nothing is logged above info.
    pub const NOTHING: Expect = Expect {
        bad_frees: false,
        red_zones: false,
        logs: &[],
    };
    /// The test frees badly on purpose.
    pub const BAD_FREES: Expect = Expect {
        bad_frees: true,
        ..Self::NOTHING
    };
    /// The test overruns a block on purpose.
    pub const RED_ZONE: Expect = Expect {
        red_zones: true,
        ..Self::NOTHING
    };

    /// The same, with the warnings and errors of `sources` expected.
    pub const fn logging(self, sources: &'static [&'static str]) -> Self {
        Self {
            logs: sources,
            ..self
        }
    }
}

/// The error counters the runner watches around every test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ErrorCounters {
    heap_refused_frees: u64,
    pmm_refused_frees: u64,
    slab_refused_frees: u64,
    red_zone_violations: u64,
    lost_table_frames: u64,
    lost_user_frames: u64,
    unexpected_log_lines: u64,
}

impl ErrorCounters {
    fn now() -> Self {
        use crate::kernel_mm::{heap, pmm, slab, vmm};
        Self {
            heap_refused_frees: heap::refused_frees(),
            pmm_refused_frees: pmm::refused_frees(),
            slab_refused_frees: slab::refused_frees(),
            red_zone_violations: heap::stats().red_zone_violations,
            lost_table_frames: vmm::lost_table_frames(),
            lost_user_frames: crate::user::space::stats().lost_frames,
            unexpected_log_lines: crate::console::logger::unexpected_problems(),
        }
    }

    /// The first counter that moved since `before` although `expects`
    /// does not allow it: its name and by how much. With frame allocations
    /// failed on purpose while the test ran (`injected`), warnings and
    /// errors from any source are allowed: a heap that could not grow says
    /// so, and the boot declares those lines (`--allow-log`).
    fn unexpected(
        &self,
        before: &Self,
        expects: Expect,
        injected: bool,
    ) -> Option<(&'static str, u64)> {
        let moved = [
            (
                "heap refused frees",
                self.heap_refused_frees - before.heap_refused_frees,
                expects.bad_frees,
            ),
            (
                "PMM refused frees",
                self.pmm_refused_frees - before.pmm_refused_frees,
                expects.bad_frees,
            ),
            (
                "object-cache refused frees",
                self.slab_refused_frees - before.slab_refused_frees,
                expects.bad_frees,
            ),
            (
                "red-zone violations",
                self.red_zone_violations - before.red_zone_violations,
                expects.red_zones,
            ),
            (
                "lost page-table frames",
                self.lost_table_frames - before.lost_table_frames,
                false,
            ),
            (
                "lost user frames",
                self.lost_user_frames - before.lost_user_frames,
                false,
            ),
            (
                "warnings and errors logged from sources it does not name",
                self.unexpected_log_lines - before.unexpected_log_lines,
                injected,
            ),
        ];
        moved
            .into_iter()
            .find(|&(_, by, allowed)| by > 0 && !allowed)
            .map(|(name, by, _)| (name, by))
    }
}

/// Fails the test with the condition's text unless it holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => {
        $crate::kassert!($cond, concat!("assertion failed: ", stringify!($cond)))
    };
    ($cond:expr, $message:expr) => {
        if !$cond {
            return Err($crate::ktest::Failure {
                message: $message,
                file: file!(),
                line: line!(),
            });
        }
    };
}

/// Fails the test unless both sides are equal; prints both values.
#[macro_export]
macro_rules! kassert_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            $crate::ktest::set_detail(format_args!(
                "    left:  {:?}\n    right: {:?}",
                left, right
            ));
            return Err($crate::ktest::Failure {
                message: concat!(
                    "assertion failed: ",
                    stringify!($left),
                    " == ",
                    stringify!($right)
                ),
                file: file!(),
                line: line!(),
            });
        }
    }};
}

/// Why the running test skipped itself, if it did (see [`skip`]).
static SKIPPED: IrqMutex<Option<&'static str>> = IrqMutex::new(None);

/// Ends a test that cannot run here (say why): counted as skipped, not as
/// passed. `return skip("...")` from the test.
pub fn skip(reason: &'static str) -> TestResult {
    *SKIPPED.lock() = Some(reason);
    Ok(())
}

/// Fails the test with a reported out-of-memory unless the heap can give
/// `bytes` right now (probed with a real allocation, freed at once).
/// Tests that use Rust's infallible collections call this first: from the
/// shell the heap may already be nearly full (`alloc 15M`), and an
/// infallible allocation that fails would take the kernel down.
pub fn need_heap(bytes: usize) -> TestResult {
    let probe = crate::kernel_mm::heap::kmalloc(bytes);
    if probe.is_null() {
        let stats = crate::kernel_mm::heap::stats();
        set_detail(format_args!(
            "    the heap cannot give {} now ({} used of {} mapped, cap {})",
            crate::units::HumanSize(bytes as u64),
            crate::units::HumanSize(stats.used as u64),
            crate::units::HumanSize(stats.mapped as u64),
            crate::units::HumanSize(mm::layout::HEAP_MAX_SIZE)
        ));
        return Err(Failure {
            message: "out of memory: not enough heap for this test",
            file: file!(),
            line: line!(),
        });
    }
    // The probe came from kmalloc just above and is freed once.
    let _ = crate::kernel_mm::heap::kfree(probe);
    Ok(())
}

/// Extra lines about the last failure (the values a `kassert_eq!` saw),
/// printed by the runner after `FAILED`.
struct Detail(ArrayString<512>);

impl Write for Detail {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Keep what fits; a cut detail is better than none.
        for character in text.chars() {
            if self.0.try_push(character).is_err() {
                break;
            }
        }
        Ok(())
    }
}

static DETAIL: IrqMutex<Detail> = IrqMutex::new(Detail(ArrayString::new_const()));

/// Records details of a failure for the runner to print.
pub fn set_detail(args: fmt::Arguments<'_>) {
    let mut detail = DETAIL.lock();
    detail.0.clear();
    let _ = detail.write_fmt(args);
}

fn take_detail(print: impl FnOnce(&str)) {
    let mut detail = DETAIL.lock();
    if !detail.0.is_empty() {
        print(&detail.0);
    }
    detail.0.clear();
}

/// Every in-kernel test, in the order they run. The runner's own
/// self-checks (which fail on purpose) run only when the filter names them.
fn all_tests(filter: Option<&str>) -> impl Iterator<Item = &'static Test> {
    let self_checks = match filter {
        Some(filter) if filter.starts_with(selftest::PREFIX) => selftest::TESTS,
        _ => &[],
    };
    boot_tests::TESTS
        .iter()
        .chain(pmm_tests::TESTS)
        .chain(vmm_tests::TESTS)
        .chain(usercopy_tests::TESTS)
        .chain(heap_tests::TESTS)
        .chain(magazine_tests::TESTS)
        .chain(slab_tests::TESTS)
        .chain(c_abi_tests::TESTS)
        .chain(reliability_tests::TESTS)
        .chain(integrity_tests::TESTS)
        .chain(smp_tests::TESTS)
        .chain(numa_tests::TESTS)
        .chain(frame_cache_tests::TESTS)
        .chain(user_tests::TESTS)
        .chain(heap_release_tests::TESTS)
        .chain(reclaim_tests::TESTS)
        .chain(self_checks)
}

/// Runs the tests whose name contains `filter` (all if `None`) and exits
/// QEMU with the result. With `fail` (`fail=pmm:PLAN` on the command line)
/// frame allocations fail by that plan for the whole run: a test may then
/// fail, but only with failures injected while it ran; one that fails
/// without any, or a panic, or a hang, fails the run.
pub fn run(context: &Context<'_>, filter: Option<&str>, fail: Option<FailPlan>) -> ! {
    if let Some(plan) = fail {
        kprintln!(
            "ktest: frame allocations fail by plan {plan} (repeatable) from the first test on"
        );
        crate::kernel_mm::pmm::arm_failures(plan);
    }
    let outcome = run_suite(context, filter);
    if outcome.passed + outcome.failed + outcome.skipped == 0 {
        // A run that ran nothing proves nothing: a typo in the filter must
        // not look like success.
        kprintln!(
            "ktest: no test matched the filter {:?}: failing the run",
            filter.unwrap_or("")
        );
        cpu::qemu_exit(QemuExitCode::Failure);
    }
    if let Some(plan) = fail {
        let (_, calls, injected) = crate::kernel_mm::pmm::failures();
        kprintln!(
            "ktest: under failure injection ({plan}): {injected} of {calls} frame allocations failed; {} tests failed with injected failures, {} without",
            outcome.failed - outcome.failed_clean,
            outcome.failed_clean
        );
    }
    cpu::qemu_exit(if outcome.failed_clean == 0 {
        QemuExitCode::Success
    } else {
        QemuExitCode::Failure
    })
}

/// What a run of the suite found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that skipped themselves (not counted as passed).
    pub skipped: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Of those, the ones that failed with no injected failure while they
    /// ran (all of them without failure injection).
    pub failed_clean: usize,
}

/// Free mapped heap memory every test starts with
/// ([`crate::kernel_mm::heap::settle`]).
const HEAP_SLACK: usize = 512 * 1024;

/// Runs the tests whose name contains `filter`.
pub fn run_suite(context: &Context<'_>, filter: Option<&str>) -> Outcome {
    let selected = || all_tests(filter).filter(|test| filter.is_none_or(|f| test.name.contains(f)));
    kprintln!("running {} in-kernel tests", selected().count());
    let mut outcome = Outcome {
        passed: 0,
        skipped: 0,
        failed: 0,
        failed_clean: 0,
    };
    let injected = || crate::kernel_mm::pmm::failures().2;
    for test in selected() {
        crate::arch::x86_64::nmi::report_pending(|line| kprintln!("{line}"));
        crate::kprint!("test {} ... ", test.name);
        let start = cpu::rdtsc();
        let injected_before = injected();
        // Every test starts with the heap mapped over its whole range and
        // some of it free, however the one before left it (memory pressure
        // gives nearly all of it back): tests count frames exactly while
        // using the heap on the side.
        crate::kernel_mm::heap::settle(HEAP_SLACK);
        let counters = ErrorCounters::now();
        let result = logger::expecting(test.expects.logs, || (test.run)(context));
        let injected_now = injected() != injected_before;
        let result = result.and_then(|()| {
            match ErrorCounters::now().unexpected(&counters, test.expects, injected_now) {
                None => Ok(()),
                Some((counter, by)) => {
                    set_detail(format_args!("    {counter} went up by {by}"));
                    Err(Failure {
                        message: "an error counter moved that this test does not expect",
                        file: file!(),
                        line: line!(),
                    })
                }
            }
        });
        let skipped = SKIPPED.lock().take();
        match (result, skipped) {
            (Ok(()), Some(reason)) => {
                outcome.skipped += 1;
                kprintln!("skipped: {reason}");
            }
            (Ok(()), None) => {
                outcome.passed += 1;
                kprintln!("ok ({} kcycles)", (cpu::rdtsc() - start) / 1000);
            }
            (Err(failure), _) => {
                outcome.failed += 1;
                kprintln!("FAILED");
                take_detail(|detail| kprintln!("{detail}"));
                kprintln!(
                    "    {} at {}:{}",
                    failure.message,
                    failure.file,
                    failure.line
                );
                let during = injected().saturating_sub(injected_before);
                if during > 0 {
                    kprintln!("    ({during} frame allocations failed on purpose while it ran)");
                } else {
                    outcome.failed_clean += 1;
                }
            }
        }
    }
    kprintln!();
    kprintln!(
        "ktest: {} passed, {} failed, {} skipped",
        outcome.passed,
        outcome.failed,
        outcome.skipped
    );
    outcome
}
