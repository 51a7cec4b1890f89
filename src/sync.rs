//! An interrupt-safe, fair spin lock: interrupts stay off while the lock
//! is held, and waiters are served in the order they arrived.
//!
//! A plain spin lock deadlocks when an interrupt handler wants a lock that
//! the code it interrupted holds. `IrqMutex` disables interrupts before it
//! spins and restores the previous state when the guard drops, so a handler
//! can never run on this CPU while the lock is held here.
//!
//! With several CPUs it is a ticket lock (no CPU starves behind the others
//! on a contended allocator lock), and a CPU spinning for it runs the spin
//! hook on every turn: the SMP code installs one that serves TLB shootdown
//! requests aimed at this CPU, so a CPU waiting for a lock with interrupts
//! off still answers a shootdown (docs/smp.md; lock order there too).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

/// What a CPU runs while it spins for a lock (a `fn()`; 0: nothing).
static SPIN_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs `hook`, run by every CPU on every turn of a lock wait. It must
/// take no `IrqMutex` and must not block.
pub fn set_spin_hook(hook: fn()) {
    SPIN_HOOK.store(hook as usize, Ordering::Release);
}

fn run_spin_hook() {
    let hook = SPIN_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: `set_spin_hook` stores only `fn()` pointers.
        let hook = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
}

/// A ticket spin lock whose guard keeps interrupts disabled.
pub struct IrqMutex<T> {
    next_ticket: AtomicUsize,
    now_serving: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: the tickets give one holder at a time exclusive access to `data`
// (acquire on taking, release on giving back), so sharing the lock between
// CPUs shares `T` only as a `&mut` handed from holder to holder.
unsafe impl<T: Send> Sync for IrqMutex<T> {}
// SAFETY: moving the lock moves `T`.
unsafe impl<T: Send> Send for IrqMutex<T> {}

/// Guard of an [`IrqMutex`]; re-enables interrupts on drop if they were on.
pub struct IrqMutexGuard<'a, T> {
    lock: &'a IrqMutex<T>,
    interrupts_were_enabled: bool,
}

impl<T> IrqMutex<T> {
    /// Creates an unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            next_ticket: AtomicUsize::new(0),
            now_serving: AtomicUsize::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Disables interrupts, then takes a ticket and waits for its turn.
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let interrupts_were_enabled = interrupts::are_enabled();
        interrupts::disable();
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        while self.now_serving.load(Ordering::Acquire) != ticket {
            run_spin_hook();
            core::hint::spin_loop();
        }
        IrqMutexGuard {
            lock: self,
            interrupts_were_enabled,
        }
    }

    /// Takes the lock if it is free, without spinning.
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        let interrupts_were_enabled = interrupts::are_enabled();
        interrupts::disable();
        let serving = self.now_serving.load(Ordering::Acquire);
        let taken = self
            .next_ticket
            .compare_exchange(serving, serving + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            return Some(IrqMutexGuard {
                lock: self,
                interrupts_were_enabled,
            });
        }
        if interrupts_were_enabled {
            interrupts::enable();
        }
        None
    }

    /// Breaks the lock, for the fatal-error path only (panic, fault report),
    /// where the holder will never run again: serves the next ticket.
    ///
    /// # Safety
    /// The caller guarantees that no guard of this lock is used afterwards by
    /// the code that held it (that code is abandoned).
    pub unsafe fn force_unlock(&self) {
        self.now_serving.fetch_add(1, Ordering::Release);
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the current ticket: no one else touches
        // the data until it is dropped.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Release the lock first, then allow interrupts again.
        self.lock.now_serving.fetch_add(1, Ordering::Release);
        if self.interrupts_were_enabled {
            interrupts::enable();
        }
    }
}
