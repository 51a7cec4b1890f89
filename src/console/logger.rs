//! `log` crate backend: `[LEVEL target] message` lines on the console.
//!
//! Warnings and errors are what the boot tests look for: every one fails
//! a boot that did not declare it (`scripts/boot-test.sh --expect-log`).
//! A test that provokes them on purpose names their sources
//! ([`expecting`]); those lines are written `[expected LEVEL target]`, and
//! only the others are counted ([`unexpected_problems`]).
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::{print_colored, Color};
use crate::sync::IrqMutex;

struct KernelLogger;

static LOGGER: KernelLogger = KernelLogger;

/// The log sources (targets without `incroos::`) whose warnings and errors
/// are expected right now; empty outside [`expecting`].
static EXPECTED_SOURCES: IrqMutex<&'static [&'static str]> = IrqMutex::new(&[]);

/// Warnings and errors logged since boot from sources nobody expected.
static UNEXPECTED_PROBLEMS: AtomicU64 = AtomicU64::new(0);

impl Log for KernelLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = record.target().trim_start_matches("incroos::");
        let (color, problem) = match record.level() {
            Level::Error => (Color::Error, true),
            Level::Warn => (Color::Warning, true),
            _ => (Color::Normal, false),
        };
        let expected = problem && EXPECTED_SOURCES.lock().contains(&target);
        if problem && !expected {
            UNEXPECTED_PROBLEMS.fetch_add(1, Ordering::Relaxed);
        }
        print_colored(
            color,
            format_args!(
                "[{}{:<5} {}] {}\n",
                if expected { "expected " } else { "" },
                record.level(),
                target,
                record.args()
            ),
        );
    }

    fn flush(&self) {}
}

/// Installs the console logger with the given maximum level.
pub fn init(level: LevelFilter) {
    // set_logger fails only if a logger is already set: then keep that one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Runs `f` with the warnings and errors of `sources` (log targets such as
/// `kernel_mm::pmm`) marked as expected: the test runner wraps each test
/// in it with the sources the test provokes on purpose.
pub fn expecting<R>(sources: &'static [&'static str], f: impl FnOnce() -> R) -> R {
    let outer = core::mem::replace(&mut *EXPECTED_SOURCES.lock(), sources);
    let result = f();
    *EXPECTED_SOURCES.lock() = outer;
    result
}

/// How many warnings and errors were logged since boot from sources not
/// expected at the time.
pub fn unexpected_problems() -> u64 {
    UNEXPECTED_PROBLEMS.load(Ordering::Relaxed)
}
