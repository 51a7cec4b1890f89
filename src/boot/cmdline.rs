//! The kernel command line: `test`, `pmm.max=32M`, `log=debug`,
//! `test.filter=NAME`, `crash=KIND`, `fail=pmm:PLAN`, `exit`.
#![forbid(unsafe_code)]

use mm::fail::FailPlan;

/// What the kernel does after it has initialised memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    /// Print the boot report (the default).
    Report,
    /// Run the in-kernel test suite and exit QEMU with its status.
    Test,
}

/// Options parsed from the command line. Unknown words are kept for the
/// boot report (see [`CommandLine::unknown`]), not silently dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// Report or test mode.
    pub mode: BootMode,
    /// `pmm.max=SIZE`: manage at most SIZE bytes of RAM, the lowest usable
    /// memory from 0x400000 on (`pmm.max=32M` is the design's 8192 frames).
    pub pmm_max: Option<u64>,
    /// `log=LEVEL`: error, warn, info, debug or trace.
    pub log_level: Option<log::LevelFilter>,
    /// `test.filter=TEXT`: run only tests whose name contains TEXT.
    pub test_filter: Option<&'a str>,
    /// `exit`: leave QEMU after the boot report instead of halting.
    pub exit_after_report: bool,
    /// `poweroff`: after the report, power the machine off the way the
    /// shell's `shutdown` does (ACPI first), so a boot test sees which way
    /// was taken.
    pub power_off_after_report: bool,
    /// `crash=KIND`: deliberately crash after boot (panic, null, overflow),
    /// to check the fatal-error reports.
    pub crash: Option<&'a str>,
    /// `fail=pmm:PLAN`: inject frame-allocation failures (`nth=N`,
    /// `every=N`, `random=N,seed=S`) from the start of the test run.
    pub fail_pmm: Option<FailPlan>,
    /// `smp=N`: start at most N CPUs, the boot CPU included (`smp=1`: the
    /// others stay parked).
    pub smp: Option<usize>,
    /// The first word that was not understood, if any.
    pub unknown: Option<&'a str>,
}

/// Parses a size with an optional K, M or G suffix (binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    value.checked_mul(1u64 << shift)
}

impl<'a> CommandLine<'a> {
    /// Parses the command line GRUB passed. Never fails: bad words are
    /// reported through [`CommandLine::unknown`].
    pub fn parse(text: &'a str) -> Self {
        let mut line = Self {
            mode: BootMode::Report,
            pmm_max: None,
            log_level: None,
            test_filter: None,
            exit_after_report: false,
            power_off_after_report: false,
            crash: None,
            fail_pmm: None,
            smp: None,
            unknown: None,
        };
        for word in text.split_ascii_whitespace() {
            let understood = match word.split_once('=') {
                None => match word {
                    "test" => {
                        line.mode = BootMode::Test;
                        true
                    }
                    "report" => {
                        line.mode = BootMode::Report;
                        true
                    }
                    "exit" => {
                        line.exit_after_report = true;
                        true
                    }
                    "poweroff" => {
                        line.power_off_after_report = true;
                        true
                    }
                    _ => false,
                },
                Some(("smp", count)) => {
                    line.smp = count.parse().ok().filter(|&count| count >= 1);
                    line.smp.is_some()
                }
                Some(("pmm.max", size)) => {
                    line.pmm_max = parse_size(size);
                    line.pmm_max.is_some()
                }
                Some(("log", level)) => {
                    line.log_level = level.parse().ok();
                    line.log_level.is_some()
                }
                Some(("test.filter", filter)) => {
                    line.test_filter = Some(filter);
                    true
                }
                Some(("crash", kind)) => {
                    line.crash = Some(kind);
                    true
                }
                Some(("fail", spec)) => {
                    line.fail_pmm = spec.strip_prefix("pmm:").and_then(FailPlan::parse);
                    line.fail_pmm.is_some()
                }
                Some(_) => false,
            };
            // The kernel's own path (GRUB passes it first) is not an option.
            if !understood && line.unknown.is_none() && !word.starts_with('/') {
                line.unknown = Some(word);
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_failure_injection() {
        let line = CommandLine::parse("test fail=pmm:every=97");
        assert_eq!(line.fail_pmm, Some(FailPlan::Every(97)));
        assert_eq!(line.unknown, None);
        let line = CommandLine::parse("fail=pmm:random=50,seed=3");
        assert_eq!(
            line.fail_pmm,
            Some(FailPlan::Random {
                one_in: 50,
                seed: 3
            })
        );
        for bad in ["fail=pmm:every=0", "fail=heap:every=3", "fail=pmm:"] {
            let line = CommandLine::parse(bad);
            assert_eq!((line.fail_pmm, line.unknown), (None, Some(bad)));
        }
    }

    #[test]
    fn defaults_to_report_mode() {
        let line = CommandLine::parse("");
        assert_eq!(line.mode, BootMode::Report);
        assert_eq!(line.pmm_max, None);
        assert_eq!(line.unknown, None);
    }

    #[test]
    fn parses_every_option() {
        let line = CommandLine::parse(
            "/boot/kernel.elf test pmm.max=32M log=debug test.filter=pmm crash=panic exit",
        );
        assert_eq!(line.mode, BootMode::Test);
        assert_eq!(line.pmm_max, Some(32 << 20));
        assert_eq!(line.log_level, Some(log::LevelFilter::Debug));
        assert_eq!(line.test_filter, Some("pmm"));
        assert_eq!(line.crash, Some("panic"));
        assert!(line.exit_after_report);
        assert!(CommandLine::parse("report poweroff").power_off_after_report);
        assert_eq!(CommandLine::parse("smp=4").smp, Some(4));
        assert_eq!(CommandLine::parse("smp=0").unknown, Some("smp=0"));
        assert_eq!(CommandLine::parse("smp=x").unknown, Some("smp=x"));
        assert_eq!(line.unknown, None);
    }

    #[test]
    fn reports_the_first_bad_word() {
        let line = CommandLine::parse("pmm.max=lots tset");
        assert_eq!(line.pmm_max, None);
        assert_eq!(line.unknown, Some("pmm.max=lots"));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("6G"), Some(6 << 30));
        assert_eq!(parse_size("0x200000"), Some(0x20_0000));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("17179869184G"), None); // overflows u64
    }
}
