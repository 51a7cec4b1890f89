//! Non-maskable interrupts: counted and survived, unless their source says
//! the machine is broken.
//!
//! An NMI can arrive at any instruction, with any lock held and interrupts
//! off, so the handler (on its own IST stack) takes no lock and prints
//! nothing: it reads the legacy source register, counts, and returns. The
//! report is printed later, from a place that may take the console lock
//! ([`report_pending`]: the shell's input loop and the test runner). An NMI
//! whose source is a memory parity error (SERR#) or an I/O channel check
//! is fatal instead: the report comes at once, through the emergency
//! console path, and the kernel stops.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// System control port B: NMI source bits of the PC chipset.
const SYSTEM_CONTROL_PORT_B: u16 = 0x61;
/// Port B bit 7: PCI SERR# / memory parity error.
const PARITY_ERROR: u8 = 1 << 7;
/// Port B bit 6: I/O channel check (IOCHK#).
const CHANNEL_CHECK: u8 = 1 << 6;

static RECEIVED: AtomicU64 = AtomicU64::new(0);
static REPORTED: AtomicU64 = AtomicU64::new(0);
static LAST_RIP: AtomicU64 = AtomicU64::new(0);
static LAST_SOURCE: AtomicU64 = AtomicU64::new(0);

/// An NMI whose source register names a hardware error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardwareError {
    /// System control port B as read in the handler.
    pub port_b: u8,
}

impl fmt::Display for HardwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "system control port B = {:#04x}:", self.port_b)?;
        if self.port_b & PARITY_ERROR != 0 {
            f.write_str(" memory parity error (SERR#)")?;
        }
        if self.port_b & CHANNEL_CHECK != 0 {
            f.write_str(" I/O channel check")?;
        }
        f.write_str("; the machine cannot be trusted")
    }
}

/// Called from the exception dispatcher for vector 2, interrupts off, on
/// the NMI stack. Lock-free: counts the NMI, or says it is fatal.
pub fn record(rip: u64) -> Result<(), HardwareError> {
    // SAFETY: reading port 0x61 has no side effect (its writable bits
    // control the speaker and the NMI source enables; we only read).
    let port_b: u8 = unsafe { Port::new(SYSTEM_CONTROL_PORT_B).read() };
    if port_b & (PARITY_ERROR | CHANNEL_CHECK) != 0 {
        return Err(HardwareError { port_b });
    }
    LAST_RIP.store(rip, Ordering::Relaxed);
    LAST_SOURCE.store(u64::from(port_b), Ordering::Relaxed);
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// NMIs survived so far.
pub fn count() -> u64 {
    RECEIVED.load(Ordering::SeqCst)
}

/// Prints one line about NMIs received since the last call, if any.
/// Call only where the console lock may be taken.
pub fn report_pending(print: impl FnOnce(fmt::Arguments<'_>)) {
    let received = RECEIVED.load(Ordering::SeqCst);
    let reported = REPORTED.swap(received, Ordering::SeqCst);
    if received > reported {
        print(format_args!(
            "NMI: {} received ({} in all), the last at RIP {:#x}; system control port B {:#04x} names no hardware error, so the kernel goes on",
            received - reported,
            received,
            LAST_RIP.load(Ordering::Relaxed),
            LAST_SOURCE.load(Ordering::Relaxed)
        ));
    }
}
