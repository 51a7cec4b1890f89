//! Checks of the checkers: a test that fails on purpose, and deliberate
//! crashes (`crash=KIND` on the command line), so `make test` proves that
//! failures, panics and fatal faults are reported and end QEMU as failed.

use core::hint::black_box;

use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::cpu;
use crate::kassert_eq;

/// Filter prefix that enables [`TESTS`].
pub const PREFIX: &str = "selftest::";

/// Tests that must fail; run only with `test.filter=selftest::`.
pub static TESTS: &[Test] = &[Test {
    name: "selftest::this_test_fails_on_purpose",
    run: fails_on_purpose,
    expects: Expect::NOTHING,
}];

fn fails_on_purpose(_: &Context<'_>) -> TestResult {
    kassert_eq!(black_box(1 + 1), 3);
    Ok(())
}

#[allow(unconditional_recursion)]
fn overflow_the_stack(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    black_box(&mut frame);
    overflow_the_stack(depth + 1) + black_box(frame[3])
}

/// `crash=ap-panic`: the highest-numbered online CPU panics.
fn panic_on_the_last_cpu(index: usize) {
    if index + 1 == crate::arch::x86_64::smp::online() {
        panic!("deliberate panic on CPU {index} (crash=ap-panic)");
    }
}

/// Crashes the kernel in the way `kind` names, with no recovery point, so
/// the fatal path runs for real. Unknown kinds are reported and ignored,
/// leaving exit-on-fatal as it was (a test boot must still end QEMU on a
/// later fatal fault).
pub fn crash(kind: &str) {
    let previous = cpu::set_exit_on_fatal(true);
    log::warn!("crash={kind}: crashing on purpose");
    match kind {
        "panic" => panic!("deliberate panic (crash=panic)"),
        "null" => {
            // SAFETY: not safe at all, on purpose: writes to the unmapped
            // page 0 so the fatal page-fault report runs.
            unsafe { core::ptr::write_volatile(black_box(core::ptr::null_mut::<u64>()), 1) };
        }
        "overflow" => {
            black_box(overflow_the_stack(0));
        }
        "oom" => {
            // More than the heap's 16 MiB cap: Rust's alloc fails.
            let vector: alloc::vec::Vec<u8> = alloc::vec::Vec::with_capacity(black_box(32 << 20));
            black_box(vector);
        }
        "ap-panic" => {
            // A panic on another CPU (the last one online; on one CPU, this
            // one): its fatal path must halt the others and report alone.
            let _ = crate::arch::x86_64::smp::run_on_all(panic_on_the_last_cpu, 10_000_000);
            log::error!("crash=ap-panic: no CPU panicked");
        }
        other => log::error!("unknown crash kind {other:?} (panic, null, overflow, oom, ap-panic)"),
    }
    cpu::set_exit_on_fatal(previous);
}
