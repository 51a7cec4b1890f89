//! Exceptions from user mode and page faults on user addresses: demand
//! paging and copy-on-write resolve them; anything else ends the program
//! with a report, and the kernel goes on.

use x86_64::VirtAddr;

use super::entry::{self, Exit, Kill, KillReason};
use super::space;
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::exceptions::{vector, TrapFrame};
use mm::aspace::{Access, FaultError};
use mm::layout::is_user;

/// Programs ended by the kernel since boot.
static KILLED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many programs the kernel ended since boot.
pub fn killed() -> u64 {
    KILLED.load(core::sync::atomic::Ordering::Relaxed)
}

/// Tries to resolve a page fault at `address` in the space loaded on this
/// CPU (demand paging, copy-on-write).
pub fn resolve(address: u64, error_code: u64) -> Result<(), KillReason> {
    if !is_user(address) {
        return Err(KillReason::KernelAddress);
    }
    let address = VirtAddr::try_new(address).map_err(|_| KillReason::KernelAddress)?;
    let access = Access::from_error_code(error_code);
    let result = space::with_current(|space| space.handle_fault(address, access))
        .ok_or(KillReason::NoRegion)?;
    match result {
        Ok(_) => Ok(()),
        Err(FaultError::NoRegion { .. }) => Err(KillReason::NoRegion),
        Err(FaultError::NotPermitted { perms, .. }) => Err(KillReason::NotPermitted(perms)),
        Err(FaultError::OutOfMemory) => Err(KillReason::OutOfMemory),
        Err(FaultError::Inconsistent(error)) => {
            log::error!(
                "user fault at {:#x}: the space is inconsistent: {error}",
                address.as_u64()
            );
            Err(KillReason::Inconsistent)
        }
    }
}

/// An exception taken in user mode (interrupts excepted: the dispatcher
/// handles those first). Returns when the fault was resolved (the
/// program goes on); otherwise ends the program.
pub fn from_user(frame: &TrapFrame, address: u64) {
    if cpu::protections().smap {
        // The user may have left RFLAGS.AC set: SMAP must hold here.
        // SAFETY: clac only clears RFLAGS.AC (SMAP is on, so it exists).
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
    let reason = if frame.vector == vector::PAGE_FAULT {
        match resolve(address, frame.error_code) {
            Ok(()) => return,
            Err(reason) => reason,
        }
    } else {
        KillReason::Exception
    };
    KILLED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let kill = Kill {
        vector: frame.vector,
        error_code: frame.error_code,
        address,
        rip: frame.rip,
        reason,
    };
    // Nothing here owns anything that needs dropping: `leave` abandons
    // the exception's frames.
    entry::leave(Exit::Killed(kill))
}
