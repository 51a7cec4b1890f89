//! The legacy PIT as a periodic timer interrupt (IRQ 0 -> vector 32 after
//! remapping the 8259 PICs), with one hook the kernel can install: used to
//! prove that allocating from an interrupt handler cannot deadlock.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock in Hz.
const PIT_HZ: u32 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// The hook, as a `fn()` address; 0 = none.
static HOOK: AtomicUsize = AtomicUsize::new(0);

fn out(port: u16, value: u8) {
    let mut port = Port::<u8>::new(port);
    // SAFETY: callers only write the 8259 PIC and 8253 PIT registers, which
    // have no effect on memory.
    unsafe { port.write(value) };
}

/// Remaps the PICs to vectors 32-47 (away from the CPU exceptions, where
/// the firmware leaves IRQ 0-7 at vectors 8-15) with every line masked.
/// Runs at boot, before anything enables interrupts: user mode runs with
/// interrupts on, and a timer tick left on vector 8 would arrive there as
/// a double fault.
pub fn remap_and_mask_pics() {
    // ICW1: initialise, expect ICW4; ICW2: vector offsets; ICW3: cascade on
    // IRQ 2; ICW4: 8086 mode.
    out(0x20, 0x11);
    out(0xA0, 0x11);
    out(0x21, 32);
    out(0xA1, 40);
    out(0x21, 4);
    out(0xA1, 2);
    out(0x21, 0x01);
    out(0xA1, 0x01);
    out(0x21, 0xFF);
    out(0xA1, 0xFF);
}

/// Remaps the PICs to vectors 32-47, unmasks only IRQ 0 and starts the PIT
/// at `hz` interrupts per second. Interrupts stay disabled until the caller
/// enables them.
pub fn start(hz: u32, hook: Option<fn()>) {
    HOOK.store(hook.map_or(0, |hook| hook as usize), Ordering::SeqCst);
    remap_and_mask_pics();
    // Masks: only IRQ 0 on the master, nothing on the slave.
    out(0x21, 0xFE);
    out(0xA1, 0xFF);
    // PIT channel 0, lobyte/hibyte, mode 2 (rate generator).
    let divisor = (PIT_HZ / hz.max(19)).min(0xFFFF) as u16;
    out(0x43, 0x34);
    out(0x40, divisor as u8);
    out(0x40, (divisor >> 8) as u8);
}

/// Masks every PIC line and removes the hook.
pub fn stop() {
    out(0x21, 0xFF);
    out(0xA1, 0xFF);
    HOOK.store(0, Ordering::SeqCst);
}

/// Timer interrupts handled so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::SeqCst)
}

/// Called by the exception dispatcher for vector 32, interrupts off.
pub(super) fn interrupt() {
    TICKS.fetch_add(1, Ordering::SeqCst);
    let hook = HOOK.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: HOOK only ever holds 0 or the address of a `fn()` stored
        // by `start`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    out(0x20, 0x20); // end of interrupt
}
