//! The mapper: map, unmap, translate and re-flag pages of 4 KiB, 2 MiB and
//! 1 GiB in a 4-level page-table tree.
//!
//! Guarantees: a failed call leaves the tree exactly as it was (tables it
//! allocated are freed again); unmapping frees every table it empties
//! (never the PML4); huge pages never silently overlap tables.

use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::PhysAddr;

use super::flags::{HUGE, PRESENT, USER, WRITABLE};
use super::flush::{Flush, FlushRange};
use crate::MmError;

/// Where the mapper finds a page table, given its frame.
///
/// # Safety
/// `table` must return a pointer through which the 4 KiB frame can be read
/// and written as a `PageTable`, for every frame the tree contains or the
/// frame allocator hands out.
pub unsafe trait PhysMem {
    /// Pointer to the table stored in `frame`.
    fn table(&self, frame: PhysFrame) -> *mut PageTable;
}

/// Physical memory visible at `physical + offset` (the kernel's direct map;
/// on the host, a buffer standing in for RAM).
#[derive(Clone, Copy, Debug)]
pub struct OffsetMem {
    offset: u64,
}

impl OffsetMem {
    /// # Safety
    /// Every frame the mapper will meet must be readable and writable at
    /// `frame + offset`.
    pub const unsafe fn new(offset: u64) -> Self {
        Self { offset }
    }
}

// SAFETY: `new`'s contract is exactly PhysMem's.
unsafe impl PhysMem for OffsetMem {
    fn table(&self, frame: PhysFrame) -> *mut PageTable {
        frame.start_address().as_u64().wrapping_add(self.offset) as *mut PageTable
    }
}

/// The three page sizes of x86-64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, mapped by a PT entry.
    Size4KiB,
    /// 2 MiB, mapped by a PD entry.
    Size2MiB,
    /// 1 GiB, mapped by a PDPT entry.
    Size1GiB,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4KiB => 4096,
            PageSize::Size2MiB => 2 << 20,
            PageSize::Size1GiB => 1 << 30,
        }
    }

    /// The table level (1 = PT .. 4 = PML4) whose entries map this size.
    const fn leaf_level(self) -> usize {
        match self {
            PageSize::Size4KiB => 1,
            PageSize::Size2MiB => 2,
            PageSize::Size1GiB => 3,
        }
    }

    fn at_level(level: usize) -> PageSize {
        match level {
            3 => PageSize::Size1GiB,
            2 => PageSize::Size2MiB,
            _ => PageSize::Size4KiB,
        }
    }
}

/// Where a virtual address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte.
    pub phys: PhysAddr,
    /// Size of the page that maps it.
    pub size: PageSize,
    /// The leaf entry's flags.
    pub flags: PageTableFlags,
}

/// Index into the table at `level` (4 = PML4) for `virt`.
pub(crate) const fn index(virt: u64, level: usize) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 511) as usize
}

/// Whether `virt` is canonical (bits 48..64 copy bit 47).
pub const fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1_FFFF
}

/// A 4-level page-table tree rooted at a PML4 frame.
pub struct Mapper<M: PhysMem> {
    pml4: PhysFrame,
    mem: M,
    gigabyte_pages: bool,
}

impl<M: PhysMem> Mapper<M> {
    /// # Safety
    /// `pml4` must hold a valid PML4 reachable through `mem`, whose tables
    /// are reachable too, and nothing else may change this tree while the
    /// mapper exists. `gigabyte_pages` only if the CPU supports them.
    pub unsafe fn new(pml4: PhysFrame, mem: M, gigabyte_pages: bool) -> Self {
        Self {
            pml4,
            mem,
            gigabyte_pages,
        }
    }

    /// The root table's frame (what CR3 should hold).
    pub fn pml4(&self) -> PhysFrame {
        self.pml4
    }

    /// Whether 1 GiB pages may be mapped.
    pub fn gigabyte_pages(&self) -> bool {
        self.gigabyte_pages
    }

    // The tables are not owned by the mapper (they live in physical memory
    // reached through `mem`), so `&self` does not borrow them; callers keep
    // at most one reference into a given table alive at a time.
    #[allow(clippy::mut_from_ref)]
    fn table(&self, frame: PhysFrame) -> &mut PageTable {
        // SAFETY: `new`'s contract: every frame of the tree is a page table
        // reachable through `mem`, and only this mapper changes the tree.
        // The `&mut` lives only as long as one step of a walk.
        unsafe { &mut *self.mem.table(frame) }
    }

    /// Follows the tree from the PML4 towards `virt`, stopping at `level`
    /// or at the first entry that is absent or a huge page. Returns the
    /// table reached and its level.
    fn descend(&self, virt: u64, stop: usize) -> (&mut PageTable, usize) {
        let mut table = self.table(self.pml4);
        let mut level = 4;
        while level > stop {
            let entry = &table[index(virt, level)];
            if !entry.flags().contains(PRESENT) || entry.flags().contains(HUGE) {
                break;
            }
            table = self.table(PhysFrame::containing_address(entry.addr()));
            level -= 1;
        }
        (table, level)
    }

    fn check(&self, virt: u64, phys: u64, size: PageSize) -> Result<(), MmError> {
        if !is_canonical(virt) {
            return Err(MmError::NonCanonical);
        }
        if size == PageSize::Size1GiB && !self.gigabyte_pages {
            return Err(MmError::PageSizeUnsupported);
        }
        if !virt.is_multiple_of(size.bytes())
            || !phys.is_multiple_of(size.bytes())
            || phys >= 1 << 52
        {
            return Err(MmError::Misaligned);
        }
        Ok(())
    }

    /// Maps the page at `virt` to the frame at `phys`. Intermediate tables
    /// are allocated from `frames` as needed; on any error every table
    /// allocated by this call is freed again and nothing else changed.
    pub fn map<A>(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: PageTableFlags,
        frames: &mut A,
    ) -> Result<Flush, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        self.check(virt, phys, size)?;
        let leaf = size.leaf_level();
        // Tables this call created, deepest last: (parent level, frame).
        let mut created: [Option<(usize, PhysFrame)>; 3] = [None; 3];
        let result = self.map_inner(virt, phys, leaf, flags, frames, &mut created);
        if result.is_err() {
            self.roll_back(virt, &created, frames);
        }
        result.map(|()| Flush::new(virt))
    }

    fn map_inner<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: u64,
        phys: u64,
        leaf: usize,
        flags: PageTableFlags,
        frames: &mut A,
        created: &mut [Option<(usize, PhysFrame)>; 3],
    ) -> Result<(), MmError> {
        let mut table = self.table(self.pml4);
        let mut level = 4;
        // Intermediate entries allow everything; leaves restrict.
        let link = PRESENT | WRITABLE | (flags & USER);
        while level > leaf {
            let entry = &mut table[index(virt, level)];
            if entry.is_unused() {
                let frame = frames.allocate_frame().ok_or(MmError::OutOfFrames)?;
                self.table(frame).zero();
                entry.set_frame(frame, link);
                created[4 - level] = Some((level, frame));
            } else if entry.flags().contains(HUGE) {
                return Err(MmError::HugePageConflict);
            } else if !entry.flags().contains(link) {
                entry.set_flags(entry.flags() | link);
            }
            let next = PhysFrame::containing_address(entry.addr());
            table = self.table(next);
            level -= 1;
        }
        let entry = &mut table[index(virt, leaf)];
        if !entry.is_unused() {
            let is_table = leaf > 1 && !entry.flags().contains(HUGE);
            return Err(if is_table {
                MmError::HugePageConflict
            } else {
                MmError::AlreadyMapped
            });
        }
        let huge = if leaf > 1 {
            HUGE
        } else {
            PageTableFlags::empty()
        };
        entry.set_addr(PhysAddr::new(phys), flags | PRESENT | huge);
        Ok(())
    }

    /// Unlinks and frees the tables a failed `map` created, deepest first.
    fn roll_back<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: u64,
        created: &[Option<(usize, PhysFrame)>; 3],
        frames: &mut D,
    ) {
        for &(level, frame) in created.iter().rev().flatten() {
            let (parent, _) = self.descend(virt, level);
            parent[index(virt, level)].set_unused();
            // SAFETY: the frame came from this allocator in this call and
            // nothing points to it any more.
            unsafe { frames.deallocate_frame(frame) };
        }
    }

    /// Removes the mapping of the page that starts at `virt`, whatever its
    /// size. Frees every table that
    /// becomes empty. Returns the frame that was mapped and the page size.
    pub fn unmap<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: u64,
        frames: &mut D,
    ) -> Result<(PhysAddr, PageSize, Flush), MmError> {
        if !is_canonical(virt) {
            return Err(MmError::NonCanonical);
        }
        if !virt.is_multiple_of(4096) {
            return Err(MmError::Misaligned);
        }
        let (table, level) = self.descend(virt, 1);
        let entry = &mut table[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return Err(MmError::NotMapped);
        }
        let size = PageSize::at_level(level);
        if !virt.is_multiple_of(size.bytes()) {
            // Inside a huge page, not at its start.
            return Err(MmError::HugePageConflict);
        }
        let phys = entry.addr();
        entry.set_unused();
        self.free_empty_tables(virt, level, frames);
        Ok((phys, size, Flush::new(virt)))
    }

    /// After an unmap at `level`, frees the tables on the path to `virt`
    /// that hold no entry any more, bottom-up, stopping below the PML4.
    fn free_empty_tables<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: u64,
        mut level: usize,
        frames: &mut D,
    ) {
        while level < 4 {
            let (child, reached) = self.descend(virt, level);
            if reached != level || child.iter().any(|entry| !entry.is_unused()) {
                return;
            }
            let (parent, _) = self.descend(virt, level + 1);
            let entry = &mut parent[index(virt, level + 1)];
            let frame = PhysFrame::containing_address(entry.addr());
            entry.set_unused();
            // SAFETY: the table is empty and now unlinked; it was allocated
            // for this tree (the caller's allocator decides what to do with
            // frames it does not own, such as the boot tables).
            unsafe { frames.deallocate_frame(frame) };
            level += 1;
        }
    }

    /// Where `virt` leads, through 4 KiB, 2 MiB or 1 GiB pages.
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        if !is_canonical(virt) {
            return None;
        }
        let (table, level) = self.descend(virt, 1);
        let entry = &table[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return None;
        }
        let size = PageSize::at_level(level);
        Some(Translation {
            phys: entry.addr() + (virt % size.bytes()),
            size,
            flags: entry.flags(),
        })
    }

    /// Replaces the flags of the page starting at `virt` (its size and
    /// frame stay).
    pub fn update_flags(&mut self, virt: u64, flags: PageTableFlags) -> Result<Flush, MmError> {
        if !is_canonical(virt) {
            return Err(MmError::NonCanonical);
        }
        let (table, level) = self.descend(virt, 1);
        let entry: &mut PageTableEntry = &mut table[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return Err(MmError::NotMapped);
        }
        let size = PageSize::at_level(level);
        if !virt.is_multiple_of(size.bytes()) {
            return Err(MmError::HugePageConflict);
        }
        let huge = if level > 1 {
            HUGE
        } else {
            PageTableFlags::empty()
        };
        entry.set_flags(flags | PRESENT | huge);
        Ok(Flush::new(virt))
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with the largest
    /// pages alignment allows (only 4 KiB if `small_only`). If any page
    /// fails, everything this call mapped is unmapped again and the error
    /// returned; the caller should then flush the range, since the CPU may
    /// have cached translations of the briefly present pages.
    pub fn map_range<A>(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: PageTableFlags,
        small_only: bool,
        frames: &mut A,
    ) -> Result<FlushRange, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        if len == 0 || !len.is_multiple_of(4096) {
            return Err(MmError::Misaligned);
        }
        if virt.checked_add(len).is_none() || phys.checked_add(len).is_none() {
            return Err(MmError::InvalidArgument);
        }
        let mut offset = 0u64;
        let mut flush = FlushRange::new();
        while offset < len {
            let size = self.best_size(virt + offset, phys + offset, len - offset, small_only);
            match self.map(virt + offset, phys + offset, size, flags, frames) {
                // Folded into the range token returned below.
                Ok(page) => {
                    flush.push(page.address());
                    page.ignore();
                }
                Err(error) => {
                    // Everything below `offset` was mapped by this call.
                    let (_, undo) = self.unmap_range(virt, offset, frames)?;
                    undo.ignore(); // the caller flushes the range on error
                    flush.ignore();
                    return Err(error);
                }
            }
            offset += size.bytes();
        }
        Ok(flush)
    }

    fn best_size(&self, virt: u64, phys: u64, left: u64, small_only: bool) -> PageSize {
        if small_only {
            return PageSize::Size4KiB;
        }
        let fits = |size: PageSize| {
            virt.is_multiple_of(size.bytes())
                && phys.is_multiple_of(size.bytes())
                && left >= size.bytes()
        };
        if self.gigabyte_pages && fits(PageSize::Size1GiB) {
            PageSize::Size1GiB
        } else if fits(PageSize::Size2MiB) {
            PageSize::Size2MiB
        } else {
            PageSize::Size4KiB
        }
    }

    /// Unmaps every page in `[virt, virt + len)`; pages not mapped are
    /// skipped. Returns the number of pages unmapped.
    pub fn unmap_range<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: u64,
        len: u64,
        frames: &mut D,
    ) -> Result<(u64, FlushRange), MmError> {
        if !virt.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return Err(MmError::Misaligned);
        }
        let last = virt
            .checked_add(len.saturating_sub(1))
            .ok_or(MmError::NonCanonical)?;
        if !is_canonical(virt) || !is_canonical(last) {
            return Err(MmError::NonCanonical);
        }
        // Check first, so an error leaves everything mapped: no huge page
        // may stick out of the range.
        let mut offset = 0u64;
        while offset < len {
            match self.translate(virt + offset) {
                Some(t) => {
                    let start = virt + offset;
                    if !start.is_multiple_of(t.size.bytes()) || offset + t.size.bytes() > len {
                        return Err(MmError::HugePageConflict);
                    }
                    offset += t.size.bytes();
                }
                None => offset += 4096,
            }
        }
        let (mut offset, mut pages) = (0u64, 0u64);
        let mut flush = FlushRange::new();
        while offset < len {
            match self.unmap(virt + offset, frames) {
                Ok((_, size, page)) => {
                    flush.push(page.address());
                    page.ignore(); // folded into the range token
                    offset += size.bytes();
                    pages += 1;
                }
                Err(MmError::NotMapped) => offset += 4096,
                Err(error) => unreachable!("checked before unmapping: {error}"),
            }
        }
        Ok((pages, flush))
    }

    /// Visits the tables of the tree: `(level, frame)` of every table below
    /// the PML4, for statistics and tests.
    pub fn for_each_table(&self, mut visit: impl FnMut(usize, PhysFrame)) {
        self.visit_tables(self.pml4, 4, &mut visit);
    }

    fn visit_tables(
        &self,
        frame: PhysFrame,
        level: usize,
        visit: &mut impl FnMut(usize, PhysFrame),
    ) {
        if level == 1 {
            return;
        }
        for entry in self.table(frame).iter() {
            let flags = entry.flags();
            if flags.contains(PRESENT) && !flags.contains(HUGE) {
                let child = PhysFrame::containing_address(entry.addr());
                visit(level - 1, child);
                self.visit_tables(child, level - 1, visit);
            }
        }
    }

    pub(crate) fn table_ref(&self, frame: PhysFrame) -> &PageTable {
        self.table(frame)
    }
}

#[cfg(test)]
mod tests;
