//! Test support for host tests and benchmarks, here and in the kernel
//! crate: how many cases the property tests run, host memory standing in
//! for RAM under the mapper ([`FakeRam`], [`TrackedRam`]), page-aligned
//! arenas for the heap ([`Arena`]), a page source for object caches
//! ([`SlabArena`]). The random numbers come from
//! [`crate::rng`], which the kernel's own tests use too.
//!
//! `make test` uses each property test's default case count; `make fuzz`
//! sets `INCROOS_FUZZ_SCALE` to multiply them for a long run against the
//! models.

mod arena;
mod fake_ram;
mod slab_arena;

pub use arena::Arena;
pub use fake_ram::{FakeRam, TrackedRam, FAKE_BASE};
pub use slab_arena::{SlabArena, JUNK, POISON};

/// `default` cases, times `INCROOS_FUZZ_SCALE` if it is set.
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let scale = std::env::var("INCROOS_FUZZ_SCALE")
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    proptest::test_runner::Config::with_cases(default.saturating_mul(scale))
}
