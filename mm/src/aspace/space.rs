//! The address space itself: a PML4 of its own sharing the kernel's
//! entries, the regions, and the operations that keep the two in step
//! (reserve, map, unmap, protect, destroy).
//!
//! Invariants: every present leaf in the user half is a 4 KiB page inside
//! a region; an Anonymous or Shared page's frame holds one reference and
//! one mapping in the [`FrameTable`] per space mapping it; a present
//! Anonymous page in a writable region is writable in the page table only
//! if its frame is not shared (read-only there means "copy on write").
//!
//! Locking: every method takes `&mut self`, so the kernel keeps each space
//! behind its own lock; the [`FrameTable`] is shared and lock-free.

use core::ptr;

use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::reclaim::{Counted, Reclaim, Unloaded};
use super::regions::{check_user_range, Perms, Region, RegionKind, Regions};
use super::{FIRST_KERNEL_HIGH_ENTRY, KERNEL_LOW_ENTRY};
use crate::layout::{PAGE_SIZE, USER_START, USER_TOP};
use crate::paging::flags::{ACCESSED, DIRTY, NX, USER, WRITABLE};
use crate::paging::{Mapper, PageSize, PhysMem, Tlb, TlbBatch, Translation};
use crate::pmm::meta::{FrameTable, Owner, Release};
use crate::MmError;

/// Regions an address space can hold.
pub const MAX_REGIONS: usize = 64;

/// What an unmap or a teardown gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Present pages whose mappings were removed.
    pub pages_unmapped: u64,
    /// Data frames freed (their last reference gone; never Fixed ones).
    pub pages_freed: u64,
    /// Page tables freed (the PML4 included, for a destroy).
    pub tables_freed: u64,
    /// Pages or tables the bookkeeping disagreed on (a release the frame
    /// table refused, a page outside every region, a table left over):
    /// their frames were kept rather than risk a double free. Zero unless
    /// something is broken.
    pub inconsistencies: u64,
}

/// A user address space over physical memory reached through `M`.
///
/// Dropping it without [`AddressSpace::destroy`] leaks its frames.
pub struct AddressSpace<M: PhysMem> {
    pub(super) mapper: Mapper<M>,
    pub(super) regions: Regions<MAX_REGIONS>,
    pub(super) resident: u64,
    pub(super) tables: u64,
}

/// The leaf flags of a user page with `perms`, writable only if
/// `writable` (and the region allows it).
pub(super) fn user_flags(perms: Perms, writable: bool) -> PageTableFlags {
    let mut flags = USER;
    if writable && perms.writable() {
        flags |= WRITABLE;
    }
    if !perms.executable() {
        flags |= NX;
    }
    flags
}

/// `flags` without the bits the CPU sets (accessed, dirty), for
/// comparisons and for carrying them over.
pub(super) const CPU_BITS: PageTableFlags = ACCESSED.union(DIRTY);

impl<M: PhysMem> AddressSpace<M> {
    /// A new, empty address space in the frame `pml4`.
    ///
    /// The frame is zeroed, then gets the kernel's PML4 entry 0 and
    /// entries 256..511 copied from `kernel_pml4`; user entries 1..=255
    /// stay empty.
    ///
    /// # Safety
    /// 1. `pml4` is a frame from the allocator later passed to this
    ///    space's methods, given to the space (its `destroy` frees it), and
    ///    not `kernel_pml4`.
    /// 2. `kernel_pml4` is the kernel's valid PML4, and `mem` reaches it,
    ///    every table and every frame that allocator hands out, as
    ///    [`PhysMem`] says.
    /// 3. The kernel created the tables of the copied entries once and
    ///    never frees them (its mapper keeps its top tables,
    ///    [`Mapper::keep_top_tables`]), so the copies never dangle.
    pub unsafe fn new(pml4: PhysFrame, kernel_pml4: PhysFrame, mem: M) -> Self {
        // SAFETY: by (1) and (2) `pml4` is a frame reachable through
        // `mem` that only this call touches, distinct from `kernel_pml4`,
        // a valid table that is only read here: the two references do not
        // alias, and both end with this block.
        unsafe {
            let table = &mut *mem.table(pml4);
            let kernel = &*mem.table(kernel_pml4);
            table.zero();
            table[KERNEL_LOW_ENTRY] = kernel[KERNEL_LOW_ENTRY].clone();
            for index in FIRST_KERNEL_HIGH_ENTRY..512 {
                table[index] = kernel[index].clone();
            }
        }
        // SAFETY: the frame now holds a valid PML4 (empty user entries,
        // the kernel's entries by (3)), reachable through `mem` by (2);
        // only this space changes its user half, and it never touches the
        // kernel entries (every range it works on is a user range).
        let mapper = unsafe { Mapper::new(pml4, mem, false) };
        Self {
            mapper,
            regions: Regions::new(),
            resident: 0,
            tables: 1,
        }
    }

    /// The PML4 frame (what CR3 holds while the space runs).
    pub fn pml4(&self) -> PhysFrame {
        self.mapper.pml4()
    }

    /// Present user pages.
    pub fn resident_pages(&self) -> u64 {
        self.resident
    }

    /// The regions, in address order.
    pub fn regions(&self) -> &Regions<MAX_REGIONS> {
        &self.regions
    }

    /// Page tables the space owns, its PML4 included (never the kernel's
    /// tables it shares).
    pub fn table_frames(&self) -> u64 {
        self.tables
    }

    /// Where a user address leads now (`None` if not present or not a
    /// user address).
    pub fn translate(&self, addr: VirtAddr) -> Option<Translation> {
        let user = USER_START..USER_TOP;
        user.contains(&addr.as_u64())
            .then(|| self.mapper.translate(addr))
            .flatten()
    }

    /// Reserves `[start, start + len)` as an anonymous region: nothing is
    /// mapped until touched. Refused as [`Regions::insert`].
    pub fn reserve(&mut self, start: VirtAddr, len: u64, perms: Perms) -> Result<(), MmError> {
        let end = check_user_range(start, len)?;
        self.regions
            .insert(Region::new(start, end, perms, RegionKind::Anonymous))
    }

    /// Adds the region `[start, start + len)` of `kind`: Anonymous is
    /// only reserved; Fixed maps its frames now; Shared allocates, zeroes
    /// and maps fresh frames now. Refused as [`Regions::insert`], and
    /// with `OutOfFrames` (frames or tables), leaving nothing behind.
    ///
    /// # Safety
    /// For a Fixed region, the caller owns the frames from `phys` for
    /// this use: user code reads (and, if writable, writes) them, so no
    /// Rust reference and no other owner may rely on their contents.
    /// Anonymous and Shared regions carry no condition.
    #[allow(
        clippy::too_many_arguments,
        reason = "a region needs its range, permissions and kind, plus the frames, their table and the TLB"
    )]
    pub unsafe fn map<A, T>(
        &mut self,
        start: VirtAddr,
        len: u64,
        perms: Perms,
        kind: RegionKind,
        frames: &mut A,
        meta: &FrameTable<'_>,
        tlb: &mut T,
    ) -> Result<(), MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        let end = check_user_range(start, len)?;
        self.regions.insert(Region::new(start, end, perms, kind))?;
        let filled = match kind {
            RegionKind::Anonymous => Ok(()),
            // SAFETY: this function's contract.
            _ => unsafe { self.fill(start, end, perms, kind, frames, meta) },
        };
        if let Err(error) = filled {
            // The pages were briefly present: user threads may have
            // cached them, so they go through the flush.
            let _ = self.unmap_pages(start.as_u64(), end.as_u64(), frames, meta, tlb);
            self.regions.remove_range(start, len)?;
            return Err(error);
        }
        Ok(())
    }

    /// Maps every page of a new Fixed or Shared region.
    ///
    /// # Safety
    /// As for [`AddressSpace::map`].
    unsafe fn fill<A>(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        perms: Perms,
        kind: RegionKind,
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<(), MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        let flags = user_flags(perms, true);
        let mut at = start;
        while at < end {
            let offset = at - start;
            let frame = match kind {
                RegionKind::Fixed { phys } => PhysFrame::containing_address(phys + offset),
                _ => self.fresh_frame(frames, meta)?,
            };
            // SAFETY: a Fixed frame by the caller's contract; a fresh
            // frame is this space's alone.
            if let Err(error) = unsafe { self.map_page(at, frame, flags, frames) } {
                if kind == RegionKind::Shared {
                    self.discard_fresh(frame, frames, meta);
                }
                return Err(error);
            }
            at += PAGE_SIZE;
        }
        Ok(())
    }

    /// Removes `[start, start + len)` from the regions (holes are fine),
    /// unmaps its present pages, drops their frame references (freeing a
    /// frame with its last one, never a Fixed frame) and frees the tables
    /// it empties, all after one TLB flush per batch of pages. Refused
    /// (nothing changes) as [`Regions::remove_range`].
    pub fn unmap<A, T>(
        &mut self,
        start: VirtAddr,
        len: u64,
        frames: &mut A,
        meta: &FrameTable<'_>,
        tlb: &mut T,
    ) -> Result<Teardown, MmError>
    where
        A: FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        self.regions.check_remove(start, len)?;
        let end = start.as_u64() + len;
        let done = self.unmap_pages(start.as_u64(), end, frames, meta, tlb);
        self.regions.remove_range(start, len)?;
        Ok(done)
    }

    /// Gives `[start, start + len)` the permissions `perms`, in the
    /// regions and on every present page. An Anonymous page that is read
    /// only now (shared copy-on-write, or never written since a clone)
    /// stays read only until its write fault decides. Refused (nothing
    /// changes) as [`Regions::protect_range`].
    pub fn protect<T: Tlb>(
        &mut self,
        start: VirtAddr,
        len: u64,
        perms: Perms,
        tlb: &mut T,
    ) -> Result<(), MmError> {
        self.regions.protect_range(start, len, perms)?;
        let end = start.as_u64() + len;
        let mut batch = TlbBatch::new();
        let mut at = start.as_u64();
        while let Some((virt, _, flags)) = self.next_present(at, end) {
            at = virt.as_u64() + PAGE_SIZE;
            let Some(region) = self.regions.find(virt) else {
                continue;
            };
            let writable = match region.kind {
                RegionKind::Anonymous => flags.contains(WRITABLE),
                _ => true,
            };
            let new = user_flags(perms, writable) | (flags & CPU_BITS);
            if new != flags - PageTableFlags::PRESENT {
                if let Ok(flush) = self.mapper.update_flags(virt, new) {
                    flush.flush(&mut batch);
                }
            }
        }
        if !batch.is_empty() {
            batch.apply(tlb);
        }
        Ok(())
    }

    /// Frees everything the space owns: every user page (dropping shared
    /// references), every table of the user half and the PML4. The
    /// kernel's entries and tables are not touched.
    ///
    /// # Safety
    /// No CPU has the space loaded any more, nor translations from it in
    /// its TLB (it switched CR3 away since, without PCIDs, or flushed).
    pub unsafe fn destroy<A>(mut self, frames: &mut A, meta: &FrameTable<'_>) -> Teardown
    where
        A: FrameDeallocator<Size4KiB>,
    {
        let mut done = self.unmap_pages(USER_START, USER_TOP, frames, meta, &mut Unloaded);
        if self.tables != 1 {
            done.inconsistencies += 1;
        }
        // SAFETY: the PML4 was given to the space at `new` (or
        // `clone_cow`), and by this function's contract no CPU uses it.
        unsafe { frames.deallocate_frame(self.mapper.pml4()) };
        done.tables_freed += 1;
        done
    }

    /// The first present page in `[at, end)` (page-aligned, user
    /// addresses): its address, frame address and flags. Absent tables are
    /// skipped whole.
    pub(super) fn next_present(
        &self,
        mut at: u64,
        end: u64,
    ) -> Option<(VirtAddr, PhysAddr, PageTableFlags)> {
        while at < end {
            let virt = VirtAddr::new_truncate(at);
            let walk = self.mapper.walk(virt);
            let last = walk.steps().last()?;
            if let Some(phys) = walk.phys {
                return Some((virt, phys, last.flags));
            }
            let span = last.level.entry_address_space_alignment();
            at = (at & !(span - 1)) + span;
        }
        None
    }

    /// Unmaps the present pages of `[start, end)`, releasing and freeing
    /// as [`AddressSpace::unmap`] says; the regions stay.
    pub(super) fn unmap_pages<A, T>(
        &mut self,
        start: u64,
        end: u64,
        frames: &mut A,
        meta: &FrameTable<'_>,
        tlb: &mut T,
    ) -> Teardown
    where
        A: FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        let mut reclaim = Reclaim::new();
        let mut done = Teardown::default();
        let mut at = start;
        while let Some((virt, phys, _)) = self.next_present(at, end) {
            at = virt.as_u64() + PAGE_SIZE;
            let kind = self.regions.find(virt).map(|region| region.kind);
            reclaim.room(frames, tlb);
            match self.mapper.unmap(virt, &mut reclaim.tables()) {
                Ok((_, _, flush)) => reclaim.unmapped(flush),
                Err(_) => {
                    done.inconsistencies += 1;
                    continue;
                }
            }
            self.resident = self.resident.saturating_sub(1);
            done.pages_unmapped += 1;
            let frame = PhysFrame::containing_address(phys);
            match kind {
                Some(RegionKind::Fixed { .. }) => {}
                Some(_) => match meta.release(frame) {
                    Ok(Release::Last) => reclaim.free_later(frame),
                    Ok(Release::StillShared) => {}
                    Err(_) => done.inconsistencies += 1,
                },
                None => done.inconsistencies += 1,
            }
        }
        reclaim.finish(frames, tlb);
        done.pages_freed = reclaim.pages_freed;
        done.tables_freed = reclaim.tables_freed;
        self.tables = self.tables.saturating_sub(reclaim.tables_freed);
        done
    }

    /// Maps one 4 KiB user page, counting the tables it takes.
    ///
    /// # Safety
    /// The space owns `frame` for this use (see [`AddressSpace::map`]).
    pub(super) unsafe fn map_page<A>(
        &mut self,
        virt: VirtAddr,
        frame: PhysFrame,
        flags: PageTableFlags,
        frames: &mut A,
    ) -> Result<(), MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        let mut counted = Counted::new(frames);
        let phys = frame.start_address();
        // SAFETY: this function's contract.
        let result = unsafe {
            self.mapper
                .map(virt, phys, PageSize::Size4KiB, flags, &mut counted)
        };
        self.tables += counted.allocated - counted.freed;
        let flush = result?;
        // SAFETY: `map` only fills an empty entry, and x86 never caches a
        // translation that is not present: no TLB holds one for the page.
        unsafe { flush.ignore() };
        self.resident += 1;
        Ok(())
    }

    /// A frame from `frames` claimed for a user page, contents as they
    /// were (the caller fills it).
    pub(super) fn claimed_frame<A>(
        &self,
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<PhysFrame, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        let frame = frames.allocate_frame().ok_or(MmError::OutOfFrames)?;
        if let Err(error) = meta.claim(frame, Owner::User) {
            // SAFETY: just allocated, reachable from nowhere.
            unsafe { frames.deallocate_frame(frame) };
            return Err(error);
        }
        Ok(frame)
    }

    /// A frame from `frames`, zeroed and claimed for a user page.
    pub(super) fn fresh_frame<A>(
        &self,
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<PhysFrame, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        let frame = self.claimed_frame(frames, meta)?;
        // SAFETY: the frame came from the allocator, so `mem` reaches its
        // 4 KiB (the `new` contract); nothing else refers to it yet.
        unsafe { ptr::write_bytes(self.frame_bytes(frame), 0, PAGE_SIZE as usize) };
        Ok(frame)
    }

    /// Gives back a frame from [`AddressSpace::fresh_frame`] that was
    /// never mapped.
    pub(super) fn discard_fresh<D>(&self, frame: PhysFrame, frames: &mut D, meta: &FrameTable<'_>)
    where
        D: FrameDeallocator<Size4KiB>,
    {
        if meta.release(frame) == Ok(Release::Last) {
            // SAFETY: allocated by `fresh_frame` in this call and never
            // mapped, so no translation of it exists anywhere.
            unsafe { frames.deallocate_frame(frame) };
        }
    }

    /// The first byte of `frame`, through `mem`.
    pub(super) fn frame_bytes(&self, frame: PhysFrame) -> *mut u8 {
        self.mapper.mem().table(frame).cast()
    }
}
