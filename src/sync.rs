//! An interrupt-safe spin lock: interrupts stay off while the lock is held.
//!
//! A plain spin lock deadlocks when an interrupt handler wants a lock that
//! the code it interrupted holds. `IrqMutex` disables interrupts before it
//! spins and restores the previous state when the guard drops, so a handler
//! can never run on this CPU while the lock is held here.
//!
//! With several CPUs the lock is a ticket lock: waiters are served in the
//! order they arrived, so no CPU starves behind the others on a contended
//! allocator lock (lock order: docs/smp.md).

use core::ops::{Deref, DerefMut};

use x86_64::instructions::interrupts;

/// A spin lock whose guard keeps interrupts disabled.
pub struct IrqMutex<T> {
    inner: spin::mutex::TicketMutex<T>,
}

/// Guard of an [`IrqMutex`]; re-enables interrupts on drop if they were on.
pub struct IrqMutexGuard<'a, T> {
    guard: Option<spin::mutex::TicketMutexGuard<'a, T>>,
    interrupts_were_enabled: bool,
}

impl<T> IrqMutex<T> {
    /// Creates an unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::mutex::TicketMutex::new(value),
        }
    }

    /// Disables interrupts, then takes the lock.
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let interrupts_were_enabled = interrupts::are_enabled();
        interrupts::disable();
        IrqMutexGuard {
            guard: Some(self.inner.lock()),
            interrupts_were_enabled,
        }
    }

    /// Takes the lock if it is free, without spinning.
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        let interrupts_were_enabled = interrupts::are_enabled();
        interrupts::disable();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqMutexGuard {
                guard: Some(guard),
                interrupts_were_enabled,
            }),
            None => {
                if interrupts_were_enabled {
                    interrupts::enable();
                }
                None
            }
        }
    }

    /// Breaks the lock, for the fatal-error path only (panic, fault report),
    /// where the holder will never run again.
    ///
    /// # Safety
    /// The caller guarantees that no guard of this lock is used afterwards by
    /// the code that held it (that code is abandoned).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard is present until drop")
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard is present until drop")
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Release the lock first, then allow interrupts again.
        drop(self.guard.take());
        if self.interrupts_were_enabled {
            interrupts::enable();
        }
    }
}
