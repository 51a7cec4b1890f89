//! A page source for object caches under test: blocks of every order from
//! an [`Arena`], each tracked, filled with junk when handed out (a cache
//! must not expect zeroes) and with poison when taken back, with a budget
//! and a failure point.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use super::Arena;
use crate::fail::FailPoint;
use crate::layout::PAGE_SIZE;
use crate::slab::{SlabPages, MAX_SLAB_ORDER};

const PAGE: usize = PAGE_SIZE as usize;
/// Byte a new block is filled with.
pub const JUNK: u8 = 0x5A;
/// Byte a returned block is filled with.
pub const POISON: u8 = 0xDD;

/// Blocks of 2^order pages, aligned to their size, first fit over a page
/// map of the arena.
pub struct SlabArena {
    arena: Arena,
    /// Offset of the first page aligned to the largest slab.
    start: usize,
    used: Vec<bool>,
    /// Blocks handed out and not returned: offset from `start` -> order.
    outstanding: BTreeMap<usize, u32>,
    /// Fail allocations after this many more succeed.
    pub budget: Option<usize>,
    /// Failure injection in front of every allocation.
    pub fail: FailPoint,
}

impl SlabArena {
    /// An arena of `pages` pages for blocks up to the index's largest
    /// order.
    pub fn new(pages: usize) -> Self {
        let align = PAGE << MAX_SLAB_ORDER.max(8);
        let arena = Arena::new(pages * PAGE + align);
        let address = arena.base().as_ptr().addr();
        let start = address.next_multiple_of(align) - address;
        Self {
            arena,
            start,
            used: vec![false; pages],
            outstanding: BTreeMap::new(),
            budget: None,
            fail: FailPoint::off(),
        }
    }

    /// The first byte of the arena's aligned part.
    fn base(&self) -> *mut u8 {
        self.arena.base().as_ptr().wrapping_add(self.start)
    }

    /// Pages handed out and not returned.
    pub fn pages_out(&self) -> usize {
        self.outstanding.values().map(|order| 1 << order).sum()
    }

    /// Blocks handed out and not returned.
    pub fn blocks_out(&self) -> usize {
        self.outstanding.len()
    }

    /// The block handed out that contains `address`, as (start, bytes).
    pub fn block_of(&self, address: usize) -> Option<(usize, usize)> {
        let offset = address.checked_sub(self.base().addr())?;
        let (&start, &order) = self.outstanding.range(..=offset).next_back()?;
        let bytes = PAGE << order;
        (offset < start + bytes).then(|| (self.base().addr() + start, bytes))
    }

    /// Whether `address` is inside the arena's aligned part.
    pub fn contains(&self, address: usize) -> bool {
        address
            .checked_sub(self.base().addr())
            .is_some_and(|offset| offset < self.used.len() * PAGE)
    }

    /// A pointer to `offset` bytes into the arena (for foreign-pointer
    /// tests), with the arena's provenance.
    pub fn pointer(&self, offset: usize) -> *mut u8 {
        self.base().wrapping_add(offset)
    }

    /// Forgets the blocks still out (for a test that leaks them on
    /// purpose), so dropping the arena does not fail the test.
    pub fn forget_outstanding(&mut self) {
        self.outstanding.clear();
    }

    /// Every byte of the arena: a snapshot to compare before and after an
    /// operation that must change nothing.
    pub fn snapshot(&self) -> Vec<u8> {
        let bytes = self.used.len() * PAGE;
        // SAFETY: the aligned part is `bytes` long inside the arena, and
        // every byte of it was written (junk, poison, or by a cache) or is
        // read as plain bytes only.
        unsafe { std::slice::from_raw_parts(self.base(), bytes) }.to_vec()
    }
}

impl Drop for SlabArena {
    fn drop(&mut self) {
        // A test that leaks blocks should say so itself; this is a backstop
        // only for blocks that were never given back while panicking.
        if !std::thread::panicking() {
            assert!(
                self.outstanding.is_empty(),
                "{} blocks never given back",
                self.outstanding.len()
            );
        }
    }
}

// SAFETY: each block is a run of pages of the arena marked used in the map
// while it is out, so no two blocks overlap; it is aligned to its size
// (the aligned part starts at a multiple of the largest block and blocks
// start at multiples of their own size); the arena outlives every block
// (dropping it with blocks out fails the test).
unsafe impl SlabPages for SlabArena {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        if self.fail.hit() {
            return None;
        }
        if let Some(budget) = self.budget.as_mut() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
        }
        let pages = 1 << order;
        let first = (0..self.used.len()).step_by(pages).find(|&page| {
            page + pages <= self.used.len() && !self.used[page..page + pages].contains(&true)
        })?;
        self.used[first..first + pages].fill(true);
        self.outstanding.insert(first * PAGE, order);
        let block = self.base().wrapping_add(first * PAGE);
        // SAFETY: the block lies inside the arena and is ours alone now.
        unsafe { block.write_bytes(JUNK, pages * PAGE) };
        NonNull::new(block)
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        let offset = block.as_ptr().addr() - self.base().addr();
        assert_eq!(
            self.outstanding.remove(&offset),
            Some(order),
            "gave back a block that was not handed out with this order: {offset:#x}"
        );
        let pages = 1 << order;
        self.used[offset / PAGE..offset / PAGE + pages].fill(false);
        // SAFETY: the block was ours and is no longer used (the caller's
        // contract).
        unsafe { block.as_ptr().write_bytes(POISON, pages * PAGE) };
    }
}

// SAFETY: forwards to the arena, which keeps the promise.
unsafe impl SlabPages for &RefCell<SlabArena> {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        self.borrow_mut().alloc_slab(order)
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.borrow_mut().free_slab(block, order) }
    }
}
