//! Test support for host tests and benchmarks, here and in the kernel
//! crate: how many cases the property tests run, host memory standing in
//! for RAM under the mapper ([`FakeRam`], [`TrackedRam`]), page-aligned
//! arenas for the heap ([`Arena`]), page sources for object caches
//! ([`SlabArena`], and [`TaggedSlabs`] for caches with magazines). The random numbers come from
//! [`crate::rng`], which the kernel's own tests use too.
//!
//! `make test` uses each property test's default case count; `make fuzz`
//! sets `INCROOS_FUZZ_SCALE` to multiply them for a long run against the
//! models.

mod arena;
mod fake_ram;
mod slab_arena;
mod tagged_slabs;

pub use arena::Arena;
pub use fake_ram::{FakeRam, TrackedRam, FAKE_BASE};
pub use slab_arena::{SlabArena, JUNK, POISON};
pub use tagged_slabs::{PageTags, TaggedSlabs};

/// Frame-cache state bytes for `frames` frames, starting on a cache line
/// as the kernel's do (it takes them from whole pages;
/// `FrameStates::new` insists); leaked, as the kernel's are. A plain `Vec`
/// of this size comes from `mmap` with its data 16 bytes into a page,
/// which puts every aligned refill run's bytes across two lines shared
/// with its neighbours (docs/pmm.md, "Two CPUs").
pub fn line_aligned_states(frames: usize) -> &'static [std::sync::atomic::AtomicU8] {
    use crate::pmm::cache::FRAMES_PER_LINE;
    let raw: &'static [std::sync::atomic::AtomicU8] = Box::leak(
        (0..frames + FRAMES_PER_LINE)
            .map(|_| std::sync::atomic::AtomicU8::new(0))
            .collect(),
    );
    let skip = raw.as_ptr().addr().wrapping_neg() % FRAMES_PER_LINE;
    &raw[skip..skip + frames]
}

/// `default` cases, times `INCROOS_FUZZ_SCALE` if it is set.
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let scale = std::env::var("INCROOS_FUZZ_SCALE")
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    proptest::test_runner::Config::with_cases(default.saturating_mul(scale))
}
