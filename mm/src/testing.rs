//! Test support for host tests here and in the kernel crate: how many
//! cases the property tests run.
//!
//! `make test` uses each test's default; `make fuzz` sets
//! `INCROOS_FUZZ_SCALE` to multiply them for a long run against the models.
#![forbid(unsafe_code)]

/// `default` cases, times `INCROOS_FUZZ_SCALE` if it is set.
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let scale = std::env::var("INCROOS_FUZZ_SCALE")
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    proptest::test_runner::Config::with_cases(default.saturating_mul(scale))
}
