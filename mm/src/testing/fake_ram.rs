//! Host memory standing in for physical RAM under the mapper: a
//! page-aligned buffer of page tables at a fake physical base with a
//! frame allocator over it ([`FakeRam`], lean enough to benchmark the
//! mapper with), and the same with every frame tracked, a budget and a
//! failure point for tests ([`TrackedRam`]).

use std::collections::BTreeSet;

use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::PhysAddr;

use crate::fail::FailPoint;
use crate::layout::PAGE_SIZE;
use crate::paging::{Mapper, OffsetMem};

/// Fake physical address of the buffer's first page (which holds the
/// PML4 of [`FakeRam::mapper`]).
pub const FAKE_BASE: u64 = 0x10_0000;

/// Page-aligned fake RAM and a LIFO frame allocator over its pages (all
/// but the first).
pub struct FakeRam {
    pages: Vec<PageTable>,
    free: Vec<PhysFrame>,
}

impl FakeRam {
    /// Fake RAM of `pages` pages (at least one: the PML4), all zeroed.
    pub fn new(pages: usize) -> Self {
        assert!(pages >= 1);
        Self {
            pages: (0..pages).map(|_| PageTable::new()).collect(),
            free: (1..pages)
                .rev()
                .map(|index| PhysFrame::containing_address(Self::address_of(index)))
                .collect(),
        }
    }

    fn address_of(index: usize) -> PhysAddr {
        PhysAddr::new(FAKE_BASE + index as u64 * PAGE_SIZE)
    }

    fn index_of(frame: PhysFrame) -> usize {
        ((frame.start_address().as_u64() - FAKE_BASE) / PAGE_SIZE) as usize
    }

    /// A mapper over the tree whose PML4 is the first page.
    ///
    /// # Safety
    /// The mapper reaches the pages through a raw offset: this `FakeRam`
    /// must outlive every use of it (the pages never move: the buffer is
    /// never resized).
    pub unsafe fn mapper(&mut self, gigabyte_pages: bool) -> Mapper<OffsetMem> {
        let offset = (self.pages.as_mut_ptr() as u64).wrapping_sub(FAKE_BASE);
        let pml4 = PhysFrame::containing_address(Self::address_of(0));
        // SAFETY: every frame the allocator hands out is a page of
        // `self.pages`, at FAKE_BASE + i * 4096, so frame + offset points
        // into the Vec, which is never resized and outlives the mapper
        // (this function's contract); page 0 is the PML4, zeroed by
        // PageTable::new.
        unsafe { Mapper::new(pml4, OffsetMem::new(offset), gigabyte_pages) }
    }

    /// The physical memory view the mappers of this RAM use: frames at
    /// their fake addresses, reached inside the buffer.
    ///
    /// # Safety
    /// As for [`FakeRam::mapper`]: this `FakeRam` must outlive every use
    /// of the view.
    pub unsafe fn mem(&mut self) -> OffsetMem {
        let offset = (self.pages.as_mut_ptr() as u64).wrapping_sub(FAKE_BASE);
        // SAFETY: every frame of the buffer is at FAKE_BASE + i * 4096, so
        // frame + offset points into the Vec, which is never resized and
        // outlives the view (this function's contract).
        unsafe { OffsetMem::new(offset) }
    }

    /// The frame of the buffer's first page.
    pub fn first_frame() -> PhysFrame {
        PhysFrame::containing_address(Self::address_of(0))
    }

    /// Number of pages of fake RAM.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// The bytes of `frame` (a frame of this RAM), to read what a mapping
    /// holds.
    pub fn bytes(&self, frame: PhysFrame) -> &[u8; 4096] {
        let table = &self.pages[Self::index_of(frame)];
        // SAFETY: a `PageTable` is 512 plain `u64` entries, 4096 bytes
        // aligned to 4096, so any of its bytes may be read as `u8`s; the
        // borrow of `self` keeps it alive and unchanged.
        unsafe { &*(table as *const PageTable).cast::<[u8; 4096]>() }
    }

    /// The bytes of `frame`, to write as user code would.
    pub fn bytes_mut(&mut self, frame: PhysFrame) -> &mut [u8; 4096] {
        let table = &mut self.pages[Self::index_of(frame)];
        // SAFETY: as in `bytes`; any bit pattern is a valid entry, so any
        // byte written keeps the `PageTable` valid.
        unsafe { &mut *(table as *mut PageTable).cast::<[u8; 4096]>() }
    }

    /// Every entry of every page, in order: a snapshot to compare before
    /// and after an operation that must change nothing.
    pub fn snapshot(&self) -> Vec<u64> {
        self.pages
            .iter()
            .flat_map(|table| {
                table
                    .iter()
                    .map(|entry| entry.addr().as_u64() ^ entry.flags().bits())
            })
            .collect()
    }

    /// Pages handed out and not returned.
    pub fn used(&self) -> usize {
        self.pages.len() - 1 - self.free.len()
    }
}

// SAFETY: hands out each frame of the buffer once until it is returned
// (the free list holds each at most once).
unsafe impl FrameAllocator<Size4KiB> for FakeRam {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.free.pop()
    }
}

impl FrameDeallocator<Size4KiB> for FakeRam {
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.free.push(frame);
    }
}

/// [`FakeRam`] whose allocator knows every frame it handed out (a frame
/// freed twice or never allocated fails the test), fills new frames with
/// junk (so a test sees whether the mapper zeroes its new tables), can run
/// out after a budget, and fails where its failure point says.
pub struct TrackedRam {
    ram: FakeRam,
    /// Addresses of the frames handed out and not yet returned.
    pub outstanding: BTreeSet<u64>,
    /// Fail allocations after this many more succeed.
    pub budget: Option<usize>,
    /// Failure injection in front of every allocation.
    pub fail: FailPoint,
}

impl TrackedRam {
    /// Tracked fake RAM of `pages` pages.
    pub fn new(pages: usize) -> Self {
        Self {
            ram: FakeRam::new(pages),
            outstanding: BTreeSet::new(),
            budget: None,
            fail: FailPoint::off(),
        }
    }

    /// As [`FakeRam::mapper`].
    ///
    /// # Safety
    /// As for [`FakeRam::mapper`]: this `TrackedRam` must outlive every
    /// use of the mapper.
    pub unsafe fn mapper(&mut self, gigabyte_pages: bool) -> Mapper<OffsetMem> {
        // SAFETY: the caller's contract.
        unsafe { self.ram.mapper(gigabyte_pages) }
    }

    /// As [`FakeRam::snapshot`].
    pub fn snapshot(&self) -> Vec<u64> {
        self.ram.snapshot()
    }

    /// As [`FakeRam::mem`].
    ///
    /// # Safety
    /// As for [`FakeRam::mem`].
    pub unsafe fn mem(&mut self) -> OffsetMem {
        // SAFETY: the caller's contract.
        unsafe { self.ram.mem() }
    }

    /// As [`FakeRam::pages`].
    pub fn pages(&self) -> usize {
        self.ram.pages()
    }

    /// As [`FakeRam::bytes`].
    pub fn bytes(&self, frame: PhysFrame) -> &[u8; 4096] {
        self.ram.bytes(frame)
    }

    /// As [`FakeRam::bytes_mut`].
    pub fn bytes_mut(&mut self, frame: PhysFrame) -> &mut [u8; 4096] {
        self.ram.bytes_mut(frame)
    }
}

// SAFETY: hands out the frames `FakeRam` hands out, each once until it is
// returned (checked by `outstanding`).
unsafe impl FrameAllocator<Size4KiB> for TrackedRam {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        if self.fail.hit() {
            return None;
        }
        if let Some(budget) = self.budget.as_mut() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
        }
        let frame = self.ram.allocate_frame()?;
        assert!(self.outstanding.insert(frame.start_address().as_u64()));
        for entry in self.ram.pages[FakeRam::index_of(frame)].iter_mut() {
            entry.set_addr(PhysAddr::new(0xDEAD_0000), PageTableFlags::empty());
        }
        Some(frame)
    }
}

impl FrameDeallocator<Size4KiB> for TrackedRam {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        assert!(
            self.outstanding.remove(&frame.start_address().as_u64()),
            "freed a frame that was not allocated: {frame:?}"
        );
        // SAFETY: the frame was handed out by `ram` (it was outstanding)
        // and is returned once.
        unsafe { self.ram.deallocate_frame(frame) };
    }
}
