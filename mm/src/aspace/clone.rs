//! Cloning an address space copy-on-write (for `fork`).
//!
//! The child gets the same regions and maps the same frames: Anonymous
//! pages read-only in both spaces with one more reference each, so the
//! first write on either side copies (or, once the other side is gone,
//! takes the frame over); Shared pages writable in both; Fixed pages
//! as they are. The child is built completely before the parent changes,
//! so running out of frames only has the child to undo.

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

use super::regions::RegionKind;
use super::space::AddressSpace;
use crate::layout::PAGE_SIZE;
use crate::paging::flags::WRITABLE;
use crate::paging::{PhysMem, Tlb, TlbBatch};
use crate::pmm::meta::FrameTable;
use crate::MmError;

impl<M: PhysMem + Clone> AddressSpace<M> {
    /// A copy-on-write clone of this space in the frame `new_pml4`.
    ///
    /// Every present Anonymous page becomes shared (COW flag, +1
    /// reference) and read-only in both spaces; the parent's writable
    /// pages are flushed from `tlb` once at the end. Refused with
    /// `OutOfFrames` (tables of the child), or the frame table's error for
    /// a page it refuses to share, with everything this call did undone
    /// and `new_pml4` given back to `frames`.
    ///
    /// # Safety
    /// `new_pml4` is a frame from `frames` given to the new space, as for
    /// [`AddressSpace::new`] (`mem` and the kernel entries are this
    /// space's).
    pub unsafe fn clone_cow<A, T>(
        &mut self,
        new_pml4: PhysFrame,
        frames: &mut A,
        meta: &FrameTable<'_>,
        tlb: &mut T,
    ) -> Result<AddressSpace<M>, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        let mem = self.mapper.mem().clone();
        // SAFETY: the caller gives `new_pml4`; this space's PML4 holds the
        // kernel's entries unchanged (spaces never touch them), and its
        // `mem` satisfied `new`'s contract already.
        let mut child = unsafe { AddressSpace::new(new_pml4, self.pml4(), mem) };
        child.regions = self.regions.clone();
        if let Err(error) = self.share_into(&mut child, frames, meta) {
            // SAFETY: the child was never loaded on any CPU.
            let _ = unsafe { child.destroy(frames, meta) };
            return Err(error);
        }
        self.write_protect_anonymous(tlb);
        Ok(child)
    }

    /// Maps every present page of this space into `child` as the clone
    /// wants it.
    fn share_into<A>(
        &self,
        child: &mut AddressSpace<M>,
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<(), MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        for region in self.regions.iter() {
            let (mut at, end) = (region.start.as_u64(), region.end.as_u64());
            while let Some((virt, phys, flags)) = self.next_present(at, end) {
                at = virt.as_u64() + PAGE_SIZE;
                let frame = PhysFrame::containing_address(phys);
                let flags = flags - x86_64::structures::paging::PageTableFlags::PRESENT;
                let (flags, counted) = match region.kind {
                    RegionKind::Anonymous => (flags - WRITABLE, true),
                    RegionKind::Shared => (flags, true),
                    RegionKind::Fixed { .. } => (flags, false),
                };
                if counted {
                    meta.share(frame)?;
                }
                // SAFETY: the frame is this space's page, shared with the
                // child as the region's kind says (read-only copy-on-write,
                // shared memory, or the caller's Fixed frames).
                if let Err(error) = unsafe { child.map_page(virt, frame, flags, frames) } {
                    if counted {
                        // Undo the share just taken; the parent's
                        // reference keeps the frame.
                        let _ = meta.release(frame);
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Makes every writable Anonymous page read-only (now shared).
    fn write_protect_anonymous<T: Tlb>(&mut self, tlb: &mut T) {
        let mut batch = TlbBatch::new();
        for index in 0..self.regions.len() {
            let region = self.regions.as_slice()[index];
            if region.kind != RegionKind::Anonymous || !region.perms.writable() {
                continue;
            }
            let (mut at, end) = (region.start.as_u64(), region.end.as_u64());
            while let Some((virt, _, flags)) = self.next_present(at, end) {
                at = virt.as_u64() + PAGE_SIZE;
                if !flags.contains(WRITABLE) {
                    continue;
                }
                let flags = flags - WRITABLE - x86_64::structures::paging::PageTableFlags::PRESENT;
                if let Ok(flush) = self.mapper.update_flags(virt, flags) {
                    flush.flush(&mut batch);
                }
            }
        }
        if !batch.is_empty() {
            batch.apply(tlb);
        }
    }
}
