//! Frames a change to page tables frees (data pages and emptied tables),
//! held until the change's TLB shootdown has run, then given back: a CPU
//! may still cache a translation through them (in its TLB or its
//! paging-structure caches), so they must not be reused before then.
//!
//! One type for the kernel's tables (every CPU may cache them) and for a
//! user space (only the CPUs that have it loaded may). The list lives in
//! the type, not on the heap: the VMM's paths run under locks the heap's
//! come before. When it is full, every CPU that may cache the frames
//! drops all its translations at once (a CPU waiting for a lock still
//! serves a shootdown), and everything held goes back: nothing is kept.

use core::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

use crate::arch::x86_64::smp;
use mm::paging::{Tlb, TlbBatch};

/// Frames one change holds before it flushes everything.
const HELD: usize = 64;

/// Frames freed by one change, held until its shootdown; new frames come
/// from `source`, held ones go back to it.
pub struct DeferredFrees<'a, S> {
    source: S,
    held: ArrayVec<PhysFrame, HELD>,
    /// The CPUs that have the space loaded, read at each free (a CPU that
    /// sets its bit later loads CR3 later, after the entry was cleared, so
    /// it cannot hold the old translation); `None`: every CPU (the
    /// kernel's tables).
    cpus: Option<&'a AtomicU64>,
}

impl<'a, S> DeferredFrees<'a, S>
where
    S: FrameDeallocator<Size4KiB>,
{
    /// For the kernel's own tables, which every CPU may cache: every
    /// freed frame waits for the shootdown.
    pub fn everywhere(source: S) -> Self {
        Self {
            source,
            held: ArrayVec::new(),
            cpus: None,
        }
    }

    /// For a user space loaded on the CPUs in `cpus` (`None`: loaded
    /// nowhere). With no other CPU holding the space in CR3, nothing can
    /// reach a freed frame through a stale translation (this CPU stays in
    /// the kernel until the change's own flush), so frames go back at
    /// once.
    pub fn for_space(source: S, cpus: Option<&'a AtomicU64>) -> Self {
        Self {
            source,
            held: ArrayVec::new(),
            cpus: Some(cpus.unwrap_or(&NOWHERE)),
        }
    }

    /// The other CPUs that may cache a translation through a frame freed
    /// now.
    fn others(&self) -> u64 {
        let me = smp::current().map_or(0, |cpu| cpu.index);
        self.cpus
            .map_or(u64::MAX, |cpus| cpus.load(Ordering::SeqCst))
            & !(1 << me)
    }

    /// Frames held now (a change that frees many ends its batch before the
    /// list is full, to keep the shootdowns to its own pages).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Gives every held frame back: call after the change's shootdown.
    pub fn release(mut self) {
        self.give_back_held();
    }

    fn give_back_held(&mut self) {
        for frame in self.held.drain(..) {
            // SAFETY: the frame came from `source` and was freed by the
            // change, which no longer refers to it, and no CPU caches a
            // translation through it any more (the shootdown ran).
            unsafe { self.source.deallocate_frame(frame) };
        }
    }
}

/// No CPU (a space loaded nowhere).
static NOWHERE: AtomicU64 = AtomicU64::new(0);

// SAFETY: allocation is the source's, which hands each frame out once.
unsafe impl<S> FrameAllocator<Size4KiB> for DeferredFrees<'_, S>
where
    S: FrameAllocator<Size4KiB>,
{
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.source.allocate_frame()
    }
}

impl<S> FrameDeallocator<Size4KiB> for DeferredFrees<'_, S>
where
    S: FrameDeallocator<Size4KiB>,
{
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        let others = self.others();
        if self.cpus.is_some() && others == 0 {
            // SAFETY: the caller's contract (the frame came from the source
            // and is no longer used), and no other CPU may cache it (see
            // `for_space`).
            unsafe { self.source.deallocate_frame(frame) };
            return;
        }
        let Err(full) = self.held.try_push(frame) else {
            return;
        };
        // Full: every CPU that may cache these frames drops all its
        // translations now, so that all of them may go back at once.
        let mut everything = TlbBatch::new();
        everything.flush_all();
        smp::shootdown_to(&everything, others);
        self.give_back_held();
        // SAFETY: as in `give_back_held`: the flush above ran on every CPU
        // that may cache it.
        unsafe { self.source.deallocate_frame(full.element()) };
    }
}
