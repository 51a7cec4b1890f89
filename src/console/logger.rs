//! `log` crate backend: `[LEVEL target] message` lines on the console.
#![forbid(unsafe_code)]

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::{print_colored, Color};

struct KernelLogger;

static LOGGER: KernelLogger = KernelLogger;

impl Log for KernelLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let color = match record.level() {
            Level::Error => Color::Error,
            Level::Warn => Color::Warning,
            _ => Color::Normal,
        };
        let target = record.target().trim_start_matches("incroos::");
        print_colored(
            color,
            format_args!("[{:<5} {}] {}\n", record.level(), target, record.args()),
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
