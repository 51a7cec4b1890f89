//! Frame bookkeeping around the mapper for an address space: counting the
//! tables it allocates, and holding every frame an unmap gives up until
//! the TLBs have forgotten it.
//!
//! A frame (data or page table) that was reachable through a translation
//! may only go back to the allocator once no CPU can still use that
//! translation, or another owner's data could be read or written through
//! it. [`Reclaim`] therefore keeps the frames of up to [`BATCH_PAGES`]
//! unmapped pages (and the tables emptied with them), flushes the pages
//! as one batch, and only then frees the frames.

use arrayvec::ArrayVec;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use x86_64::VirtAddr;

use crate::paging::{Flush, Tlb, TlbBatch, BATCH_PAGES};

/// An allocator passed on to the mapper that counts the frames (tables)
/// it takes and gives back.
pub(crate) struct Counted<'a, A> {
    inner: &'a mut A,
    /// Frames handed out.
    pub allocated: u64,
    /// Frames given back.
    pub freed: u64,
}

impl<'a, A> Counted<'a, A> {
    pub(crate) fn new(inner: &'a mut A) -> Self {
        Self {
            inner,
            allocated: 0,
            freed: 0,
        }
    }
}

// SAFETY: hands out exactly the frames of the inner allocator, which is
// itself a `FrameAllocator` (each frame once until it is returned).
unsafe impl<A: FrameAllocator<Size4KiB>> FrameAllocator<Size4KiB> for Counted<'_, A> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = self.inner.allocate_frame()?;
        self.allocated += 1;
        Some(frame)
    }
}

impl<A: FrameDeallocator<Size4KiB>> FrameDeallocator<Size4KiB> for Counted<'_, A> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.freed += 1;
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { self.inner.deallocate_frame(frame) };
    }
}

/// Frames one unmapped page can give up: its data frame and the PT, PD
/// and PDPT emptied with it.
const FRAMES_PER_PAGE: usize = 4;

/// The pages unmapped since the last flush and the frames waiting for it.
pub(crate) struct Reclaim {
    batch: TlbBatch,
    pages: usize,
    frames: ArrayVec<PhysFrame, { BATCH_PAGES * FRAMES_PER_PAGE }>,
    /// Tables given back in total.
    pub tables_freed: u64,
    /// Data frames given back in total.
    pub pages_freed: u64,
}

impl Reclaim {
    pub(crate) fn new() -> Self {
        Self {
            batch: TlbBatch::new(),
            pages: 0,
            frames: ArrayVec::new_const(),
            tables_freed: 0,
            pages_freed: 0,
        }
    }

    /// Makes room for one more page: flushes and frees when the batch is
    /// full.
    pub(crate) fn room<D, T>(&mut self, frames: &mut D, tlb: &mut T)
    where
        D: FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        if self.pages >= BATCH_PAGES || self.frames.remaining_capacity() < FRAMES_PER_PAGE {
            self.finish(frames, tlb);
        }
    }

    /// A page whose translation is gone.
    pub(crate) fn unmapped(&mut self, flush: Flush) {
        flush.flush(&mut self.batch);
        self.pages += 1;
    }

    /// A data frame to free after the flush.
    pub(crate) fn free_later(&mut self, frame: PhysFrame) {
        // `room` left space for this page's frames.
        if self.frames.try_push(frame).is_ok() {
            self.pages_freed += 1;
        }
    }

    /// Where the mapper puts the tables it empties.
    pub(crate) fn tables(&mut self) -> TableSink<'_> {
        TableSink { reclaim: self }
    }

    /// Flushes the batch, then frees every frame held.
    pub(crate) fn finish<D, T>(&mut self, frames: &mut D, tlb: &mut T)
    where
        D: FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        if !self.batch.is_empty() {
            self.batch.apply(tlb);
        }
        self.batch = TlbBatch::new();
        self.pages = 0;
        for frame in self.frames.drain(..) {
            // SAFETY: the frame belonged to the address space (a data frame
            // whose last reference it dropped, or one of its tables), is
            // reachable through no table any more, and the flush above made
            // every TLB forget the translations that used it.
            unsafe { frames.deallocate_frame(frame) };
        }
    }
}

/// The deallocator an unmap hands the mapper: emptied tables wait in the
/// [`Reclaim`] for the flush.
pub(crate) struct TableSink<'a> {
    reclaim: &'a mut Reclaim,
}

impl FrameDeallocator<Size4KiB> for TableSink<'_> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // `room` left space for the tables of one page.
        if self.reclaim.frames.try_push(frame).is_ok() {
            self.reclaim.tables_freed += 1;
        }
    }
}

/// The TLB of a space that no CPU has loaded: nothing to flush.
pub(crate) struct Unloaded;

impl Tlb for Unloaded {
    fn flush_page(&mut self, _virt: VirtAddr) {}
    fn flush_all(&mut self) {}
}
