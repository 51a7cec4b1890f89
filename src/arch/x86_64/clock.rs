//! Time for bring-up delays: the TSC, calibrated once against the ACPI PM
//! timer (3.579545 MHz, from the FADT).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use super::cpu;

/// PM timer ticks per second.
const PM_TIMER_HZ: u64 = 3_579_545;
/// TSC cycles per microsecond, once calibrated (0 before).
static TSC_PER_US: AtomicU64 = AtomicU64::new(0);
/// Assumed when there is no PM timer to calibrate against.
const FALLBACK_TSC_PER_US: u64 = 3_000;

/// Measures the TSC against the PM timer at `port` over ~10 ms (24- or
/// 32-bit counter); keeps and returns cycles per microsecond. Without a
/// timer, assumes a 3 GHz TSC (delays are then only roughly right).
pub fn calibrate(pm_timer: Option<(u16, bool)>) -> u64 {
    let per_us = match pm_timer {
        Some((port, wide)) => measure(port, wide),
        None => FALLBACK_TSC_PER_US,
    };
    TSC_PER_US.store(per_us.max(1), Ordering::Relaxed);
    per_us
}

fn measure(port: u16, wide: bool) -> u64 {
    let mask: u32 = if wide { u32::MAX } else { 0x00FF_FFFF };
    let read = || {
        // SAFETY: reading the PM timer port the FADT names has no effect on
        // memory.
        unsafe { Port::<u32>::new(port).read() & mask }
    };
    let ticks = PM_TIMER_HZ / 100; // 10 ms
    let start_ticks = read();
    let start_tsc = cpu::rdtsc();
    loop {
        let elapsed = read().wrapping_sub(start_ticks) & mask;
        if u64::from(elapsed) >= ticks {
            let cycles = cpu::rdtsc() - start_tsc;
            let micros = u64::from(elapsed) * 1_000_000 / PM_TIMER_HZ;
            return cycles / micros.max(1);
        }
        core::hint::spin_loop();
    }
}

/// TSC cycles per microsecond (the fallback before `calibrate`).
pub fn tsc_per_us() -> u64 {
    match TSC_PER_US.load(Ordering::Relaxed) {
        0 => FALLBACK_TSC_PER_US,
        per_us => per_us,
    }
}

/// Microseconds since TSC value `start`.
pub fn micros_since(start: u64) -> u64 {
    (cpu::rdtsc() - start) / tsc_per_us()
}

/// Spins for `micros` microseconds.
pub fn delay_us(micros: u64) {
    let start = cpu::rdtsc();
    while micros_since(start) < micros {
        core::hint::spin_loop();
    }
}

/// Spins until `done` or `micros` microseconds pass; whether `done` came.
pub fn wait_us(micros: u64, done: impl Fn() -> bool) -> bool {
    let start = cpu::rdtsc();
    while micros_since(start) < micros {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}
