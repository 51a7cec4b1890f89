//! The mapper: map, unmap, translate and re-flag pages of 4 KiB, 2 MiB and
//! 1 GiB in a 4-level page-table tree.
//!
//! Guarantees: a failed call leaves the tree exactly as it was (tables it
//! allocated are freed again); unmapping frees every table it empties
//! (never the PML4, and with [`Mapper::keep_top_tables`] never a table
//! the chosen PML4 entries point to); huge pages never silently overlap
//! tables.
//!
//! Addresses are the `x86_64` crate's types: a [`VirtAddr`] is canonical
//! and a [`PhysAddr`] fits 52 bits by construction, so the checks left here
//! are alignment, ranges and what the tree already holds. Table levels are
//! [`PageTableLevel`]s.

use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::flags::{HUGE, PRESENT, USER, WRITABLE};
use super::flush::{Flush, FlushRange};
use crate::layout::{GIANT_PAGE_SIZE, HUGE_PAGE_SIZE, PAGE_SIZE};
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
            PageSize::Size4KiB => PAGE_SIZE,
            PageSize::Size2MiB => HUGE_PAGE_SIZE,
            PageSize::Size1GiB => GIANT_PAGE_SIZE,
        }
    }

    /// The table level whose entries map pages of this size.
    pub const fn leaf_level(self) -> PageTableLevel {
        match self {
            PageSize::Size4KiB => PageTableLevel::One,
            PageSize::Size2MiB => PageTableLevel::Two,
            PageSize::Size1GiB => PageTableLevel::Three,
        }
    }

    /// The size of a leaf entry at `level` (PML4 entries are never leaves;
    /// the walk stops below them).
    pub const fn of_leaf(level: PageTableLevel) -> PageSize {
        match level {
            PageTableLevel::One => PageSize::Size4KiB,
            PageTableLevel::Two => PageSize::Size2MiB,
            PageTableLevel::Three | PageTableLevel::Four => PageSize::Size1GiB,
        }
    }

    /// "4 KiB", "2 MiB" or "1 GiB".
    pub const fn name(self) -> &'static str {
        match self {
            PageSize::Size4KiB => "4 KiB",
            PageSize::Size2MiB => "2 MiB",
            PageSize::Size1GiB => "1 GiB",
        }
    }

    /// "4K", "2M" or "1G", for tables.
    pub const fn short_name(self) -> &'static str {
        match self {
            PageSize::Size4KiB => "4K",
            PageSize::Size2MiB => "2M",
            PageSize::Size1GiB => "1G",
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

/// Whether `address` is a multiple of `align` (a power of two; the
/// crate's `is_aligned` asserts that on every call).
#[inline]
const fn aligned(address: u64, align: u64) -> bool {
    address & (align - 1) == 0
}

/// Index of `virt`'s entry in the table at `level` (the crate's
/// `page_table_index` costs a few instructions more per step of a walk).
#[inline]
pub(crate) const fn index(virt: VirtAddr, level: PageTableLevel) -> usize {
    ((virt.as_u64() >> (12 + 9 * (level as u64 - 1))) & 511) as usize
}

/// A leaf entry's flags at `level`: present, and huge above the PTs.
fn leaf_flags(level: PageTableLevel, flags: PageTableFlags) -> PageTableFlags {
    if level > PageTableLevel::One {
        flags | PRESENT | HUGE
    } else {
        flags | PRESENT
    }
}

/// `virt + offset`, for offsets inside a span [`check_span`] accepted.
fn offset_by(virt: VirtAddr, offset: u64) -> VirtAddr {
    VirtAddr::new_truncate(virt.as_u64().wrapping_add(offset))
}

/// Checks that `len` bytes from `virt` stay in one canonical half (else
/// `NonCanonical`), so that every address inside is a valid `VirtAddr`.
pub fn check_span(virt: VirtAddr, len: u64) -> Result<(), MmError> {
    let last = virt
        .as_u64()
        .checked_add(len.saturating_sub(1))
        .ok_or(MmError::NonCanonical)?;
    match VirtAddr::try_new(last) {
        Ok(last) if (last.as_u64() >> 47) == (virt.as_u64() >> 47) => Ok(()),
        _ => Err(MmError::NonCanonical),
    }
}

/// Tables a `map` call created: (level of the table holding the new
/// entry, the new table's frame), PML4 side first.
type Created = [Option<(PageTableLevel, PhysFrame)>; 3];

/// A 4-level page-table tree rooted at a PML4 frame.
pub struct Mapper<M: PhysMem> {
    pml4: PhysFrame,
    mem: M,
    gigabyte_pages: bool,
    /// PML4 entries whose tables are kept (bit i = entry i).
    keep_top_tables: [u64; 8],
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
            keep_top_tables: [0; 8],
        }
    }

    /// From now on, unmapping keeps the tables the PML4 `entries` point
    /// to (their PDPTs) even when they become empty; entries past 511 are
    /// ignored. None by default. The kernel's mapper keeps its own entries
    /// (0 and 256..=511): every user address space copies them, so a PDPT
    /// freed under one of them would be freed under every space too. The
    /// other entries' tables are freed as usual.
    pub fn keep_top_tables(&mut self, entries: impl IntoIterator<Item = usize>) {
        for entry in entries.into_iter().filter(|&entry| entry < 512) {
            self.keep_top_tables[entry / 64] |= 1 << (entry % 64);
        }
    }

    /// Whether the table PML4 entry `entry` points to is kept
    /// ([`Mapper::keep_top_tables`]).
    pub fn keeps_top_table(&self, entry: usize) -> bool {
        entry < 512 && self.keep_top_tables[entry / 64] & (1 << (entry % 64)) != 0
    }

    /// How the mapper reaches physical memory (for the address spaces,
    /// which also zero and copy data frames through it).
    pub(crate) fn mem(&self) -> &M {
        &self.mem
    }

    /// The root table's frame (what CR3 should hold).
    pub fn pml4(&self) -> PhysFrame {
        self.pml4
    }

    /// Whether 1 GiB pages may be mapped.
    pub fn gigabyte_pages(&self) -> bool {
        self.gigabyte_pages
    }

    /// The table in `frame`, to read.
    pub(crate) fn table(&self, frame: PhysFrame) -> &PageTable {
        // SAFETY: `new`'s contract: every frame of the tree is a page table
        // reachable through `mem`, and only this mapper changes the tree;
        // the shared borrow of `self` keeps every `&mut` away meanwhile.
        unsafe { &*self.mem.table(frame) }
    }

    /// The table in `frame`, to change: only through `&mut self`, so no
    /// other reference into the tree is alive.
    fn table_mut(&mut self, frame: PhysFrame) -> &mut PageTable {
        // SAFETY: as in `table`; the exclusive borrow of `self` makes this
        // the only reference into the tree until it is dropped.
        unsafe { &mut *self.mem.table(frame) }
    }

    /// Follows the tree from the PML4 towards `virt`, stopping at `stop`
    /// or at the first entry that is absent or a huge page. Returns the
    /// frame of the table reached and its level.
    fn descend(&self, virt: VirtAddr, stop: PageTableLevel) -> (PhysFrame, PageTableLevel) {
        let mut frame = self.pml4;
        let mut level = PageTableLevel::Four;
        while level > stop {
            let entry = &self.table(frame)[index(virt, level)];
            let Some(lower) = level.next_lower_level() else {
                break;
            };
            if !entry.flags().contains(PRESENT) || entry.flags().contains(HUGE) {
                break;
            }
            frame = PhysFrame::containing_address(entry.addr());
            level = lower;
        }
        (frame, level)
    }

    fn check(&self, virt: VirtAddr, phys: PhysAddr, size: PageSize) -> Result<(), MmError> {
        if size == PageSize::Size1GiB && !self.gigabyte_pages {
            return Err(MmError::PageSizeUnsupported);
        }
        if !aligned(virt.as_u64(), size.bytes()) || !aligned(phys.as_u64(), size.bytes()) {
            return Err(MmError::Misaligned);
        }
        Ok(())
    }

    /// Maps the page at `virt` to the frame at `phys`. Intermediate tables
    /// are allocated from `frames` as needed; on any error every table
    /// allocated by this call is freed again and nothing else changed.
    ///
    /// # Safety
    /// The mapping makes the frame reachable (writable, if `flags` say so)
    /// at `virt`: the caller must own the frame for that use, so that no
    /// Rust reference to it (a heap block, a kernel section, a page table)
    /// is aliased by the new mapping.
    pub unsafe fn map<A>(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        size: PageSize,
        flags: PageTableFlags,
        frames: &mut A,
    ) -> Result<Flush, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        self.check(virt, phys, size)?;
        let mut created: Created = [None; 3];
        let result = self.map_inner(virt, phys, size.leaf_level(), flags, frames, &mut created);
        if result.is_err() {
            self.roll_back(virt, &created, frames);
        }
        result.map(|()| Flush::new(virt))
    }

    fn map_inner<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        leaf: PageTableLevel,
        flags: PageTableFlags,
        frames: &mut A,
        created: &mut Created,
    ) -> Result<(), MmError> {
        let mut frame = self.pml4;
        let mut level = PageTableLevel::Four;
        // Intermediate entries allow everything; leaves restrict.
        let link = PRESENT | WRITABLE | (flags & USER);
        while level > leaf {
            let Some(lower) = level.next_lower_level() else {
                break;
            };
            let index = index(virt, level);
            let entry = self.table(frame)[index].clone();
            let next = if entry.is_unused() {
                let table = frames.allocate_frame().ok_or(MmError::OutOfFrames)?;
                self.table_mut(table).zero();
                self.table_mut(frame)[index].set_frame(table, link);
                created[PageTableLevel::Four as usize - level as usize] = Some((level, table));
                table
            } else if entry.flags().contains(HUGE) {
                return Err(MmError::HugePageConflict);
            } else {
                if !entry.flags().contains(link) {
                    self.table_mut(frame)[index].set_flags(entry.flags() | link);
                }
                PhysFrame::containing_address(entry.addr())
            };
            frame = next;
            level = lower;
        }
        let entry = &mut self.table_mut(frame)[index(virt, leaf)];
        if !entry.is_unused() {
            let is_table = leaf > PageTableLevel::One && !entry.flags().contains(HUGE);
            return Err(if is_table {
                MmError::HugePageConflict
            } else {
                MmError::AlreadyMapped
            });
        }
        entry.set_addr(phys, leaf_flags(leaf, flags));
        Ok(())
    }

    /// Unlinks and frees the tables a failed `map` created, deepest first.
    fn roll_back<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: VirtAddr,
        created: &Created,
        frames: &mut D,
    ) {
        for &(level, frame) in created.iter().rev().flatten() {
            let (parent, _) = self.descend(virt, level);
            self.table_mut(parent)[index(virt, level)].set_unused();
            // SAFETY: the frame came from this allocator in this call and
            // nothing points to it any more.
            unsafe { frames.deallocate_frame(frame) };
        }
    }

    /// Removes the mapping of the page that starts at `virt`, whatever its
    /// size. Frees every table that becomes empty. Returns the frame that
    /// was mapped and the page size.
    pub fn unmap<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: VirtAddr,
        frames: &mut D,
    ) -> Result<(PhysAddr, PageSize, Flush), MmError> {
        if !aligned(virt.as_u64(), PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        let (table, level) = self.descend(virt, PageTableLevel::One);
        let index = index(virt, level);
        let entry = self.table(table)[index].clone();
        if !entry.flags().contains(PRESENT) {
            return Err(MmError::NotMapped);
        }
        let size = PageSize::of_leaf(level);
        if !aligned(virt.as_u64(), size.bytes()) {
            // Inside a huge page, not at its start.
            return Err(MmError::HugePageConflict);
        }
        self.table_mut(table)[index].set_unused();
        self.free_empty_tables(virt, level, frames);
        Ok((entry.addr(), size, Flush::new(virt)))
    }

    /// After an unmap at `level`, frees the tables on the path to `virt`
    /// that hold no entry any more, bottom-up, stopping below the PML4.
    fn free_empty_tables<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        virt: VirtAddr,
        mut level: PageTableLevel,
        frames: &mut D,
    ) {
        while let Some(parent_level) = level.next_higher_level() {
            if parent_level == PageTableLevel::Four
                && self.keeps_top_table(index(virt, PageTableLevel::Four))
            {
                return;
            }
            let (child, reached) = self.descend(virt, level);
            if reached != level || self.table(child).iter().any(|entry| !entry.is_unused()) {
                return;
            }
            let (parent, _) = self.descend(virt, parent_level);
            let entry = &mut self.table_mut(parent)[index(virt, parent_level)];
            let frame = PhysFrame::containing_address(entry.addr());
            entry.set_unused();
            // SAFETY: the table is empty and now unlinked; it was allocated
            // for this tree (the caller's allocator decides what to do with
            // frames it does not own, such as the boot tables).
            unsafe { frames.deallocate_frame(frame) };
            level = parent_level;
        }
    }

    /// Where `virt` leads, through 4 KiB, 2 MiB or 1 GiB pages.
    pub fn translate(&self, virt: VirtAddr) -> Option<Translation> {
        let (table, level) = self.descend(virt, PageTableLevel::One);
        let entry = &self.table(table)[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return None;
        }
        let size = PageSize::of_leaf(level);
        Some(Translation {
            phys: entry.addr() + virt.as_u64() % size.bytes(),
            size,
            flags: entry.flags(),
        })
    }

    /// Points the 4 KiB page at `virt`, which must be mapped, at the
    /// frame `phys` with `flags`, in place: no table is freed or
    /// allocated, so it cannot run out of frames. Returns the frame that
    /// was mapped. Refused (nothing changes) with `Misaligned`,
    /// `NotMapped`, or `HugePageConflict` for a huge page.
    ///
    /// # Safety
    /// As for [`Mapper::map`]: the caller owns `phys` for this use.
    pub unsafe fn replace(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        flags: PageTableFlags,
    ) -> Result<(PhysAddr, Flush), MmError> {
        if !aligned(virt.as_u64(), PAGE_SIZE) || !aligned(phys.as_u64(), PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        let (table, level) = self.descend(virt, PageTableLevel::One);
        let entry = &mut self.table_mut(table)[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return Err(MmError::NotMapped);
        }
        if level != PageTableLevel::One {
            return Err(MmError::HugePageConflict);
        }
        let old = entry.addr();
        entry.set_addr(phys, leaf_flags(level, flags));
        Ok((old, Flush::new(virt)))
    }

    /// Replaces the flags of the page starting at `virt` (its size and
    /// frame stay).
    pub fn update_flags(
        &mut self,
        virt: VirtAddr,
        flags: PageTableFlags,
    ) -> Result<Flush, MmError> {
        let (table, level) = self.descend(virt, PageTableLevel::One);
        let entry = &mut self.table_mut(table)[index(virt, level)];
        if !entry.flags().contains(PRESENT) {
            return Err(MmError::NotMapped);
        }
        if !aligned(virt.as_u64(), PageSize::of_leaf(level).bytes()) {
            return Err(MmError::HugePageConflict);
        }
        entry.set_flags(leaf_flags(level, flags));
        Ok(Flush::new(virt))
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with the largest
    /// pages alignment allows (only 4 KiB if `small_only`). If any page
    /// fails, everything this call mapped is unmapped again and the error
    /// returned; the caller should then flush the range, since the CPU may
    /// have cached translations of the briefly present pages.
    ///
    /// # Safety
    /// As for [`Mapper::map`], for every frame of the range.
    pub unsafe fn map_range<A>(
        &mut self,
        virt: VirtAddr,
        phys: PhysAddr,
        len: u64,
        flags: PageTableFlags,
        small_only: bool,
        frames: &mut A,
    ) -> Result<FlushRange, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        check_span(virt, len)?;
        let phys_last = phys.as_u64().checked_add(len - 1);
        if phys_last
            .and_then(|last| PhysAddr::try_new(last).ok())
            .is_none()
        {
            return Err(MmError::InvalidArgument);
        }
        let mut offset = 0u64;
        let mut flush = FlushRange::new();
        while offset < len {
            let (page, frame) = (offset_by(virt, offset), phys + offset);
            let size = self.best_size(page, frame, len - offset, small_only);
            // SAFETY: the caller owns every frame of the range for this use.
            match unsafe { self.map(page, frame, size, flags, frames) } {
                Ok(mapped) => flush.fold(mapped),
                Err(error) => {
                    // Everything below `offset` was mapped by this call;
                    // the caller flushes the range on error.
                    let (_, undo) = self.unmap_range(virt, offset, frames)?;
                    undo.forget_for_error();
                    flush.forget_for_error();
                    return Err(error);
                }
            }
            offset += size.bytes();
        }
        Ok(flush)
    }

    fn best_size(&self, virt: VirtAddr, phys: PhysAddr, left: u64, small_only: bool) -> PageSize {
        if small_only {
            return PageSize::Size4KiB;
        }
        let fits = |size: PageSize| {
            aligned(virt.as_u64(), size.bytes())
                && aligned(phys.as_u64(), size.bytes())
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
        virt: VirtAddr,
        len: u64,
        frames: &mut D,
    ) -> Result<(u64, FlushRange), MmError> {
        if !aligned(virt.as_u64(), PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        check_span(virt, len)?;
        // Check first, so an error leaves everything mapped: no huge page
        // may stick out of the range.
        let mut offset = 0u64;
        while offset < len {
            let page = offset_by(virt, offset);
            match self.translate(page) {
                Some(t) => {
                    if !aligned(page.as_u64(), t.size.bytes()) || offset + t.size.bytes() > len {
                        return Err(MmError::HugePageConflict);
                    }
                    offset += t.size.bytes();
                }
                None => offset += PAGE_SIZE,
            }
        }
        let (mut offset, mut pages) = (0u64, 0u64);
        let mut flush = FlushRange::new();
        while offset < len {
            match self.unmap(offset_by(virt, offset), frames) {
                Ok((_, size, page)) => {
                    flush.fold(page);
                    offset += size.bytes();
                    pages += 1;
                }
                Err(MmError::NotMapped) => offset += PAGE_SIZE,
                // The pass above found every page aligned and inside.
                Err(error) => return Err(error),
            }
        }
        Ok((pages, flush))
    }

    /// Visits the tables of the tree: `(level, frame)` of every table below
    /// the PML4, for statistics and tests.
    pub fn for_each_table(&self, mut visit: impl FnMut(PageTableLevel, PhysFrame)) {
        self.visit_tables(self.pml4, PageTableLevel::Four, &mut visit);
    }

    fn visit_tables(
        &self,
        frame: PhysFrame,
        level: PageTableLevel,
        visit: &mut impl FnMut(PageTableLevel, PhysFrame),
    ) {
        // Tables of level 1 (PTs) hold only leaves.
        let Some(lower) = level.next_lower_level() else {
            return;
        };
        for entry in self.table(frame).iter() {
            let flags = entry.flags();
            if flags.contains(PRESENT) && !flags.contains(HUGE) {
                let child = PhysFrame::containing_address(entry.addr());
                visit(lower, child);
                self.visit_tables(child, lower, visit);
            }
        }
    }
}

#[cfg(test)]
mod tests;
