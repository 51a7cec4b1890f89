//! A cache's slab index: the base of every slab it owns, sorted, so a
//! freed pointer is checked against the cache's own slabs (a binary search)
//! before any slab memory is read.
//!
//! Up to [`INLINE`] bases live in the index itself; beyond that in a block
//! from the cache's page source, doubled when full and given back when the
//! slabs fit inline again.

use core::ptr::{self, NonNull};

use super::geometry::slab_bytes;
use super::pages::SlabPages;

/// Bases kept without a block from the page source.
pub const INLINE: usize = 8;
/// The largest index block: 2^8 pages, the bases of 131,072 slabs.
pub const MAX_INDEX_ORDER: u32 = 8;

/// Sorted slab bases (each pointer carries its block's provenance).
pub struct SlabIndex {
    inline: [*mut u8; INLINE],
    /// The block holding the bases when they outgrow `inline` (`None`:
    /// they are inline).
    block: Option<(NonNull<*mut u8>, u32)>,
    len: usize,
}

impl SlabIndex {
    /// An empty index.
    pub const fn new() -> Self {
        Self {
            inline: [ptr::null_mut(); INLINE],
            block: None,
            len: 0,
        }
    }

    /// Slabs in the index.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Pages of the index's block (0 while inline).
    pub fn pages(&self) -> usize {
        self.block.map_or(0, |(_, order)| 1 << order)
    }

    fn capacity(&self) -> usize {
        self.block.map_or(INLINE, |(_, order)| capacity_of(order))
    }

    /// The bases, in address order.
    pub fn bases(&self) -> &[*mut u8] {
        match self.block {
            // SAFETY: the block holds `capacity_of(order)` pointers, the
            // first `len` of them written by `insert`; it is ours until
            // `shrink_to_inline`/`release` gives it back, which takes `&mut`.
            Some((block, _)) => unsafe { core::slice::from_raw_parts(block.as_ptr(), self.len) },
            None => &self.inline[..self.len],
        }
    }

    /// The first of `capacity` slots, the first `len` of them used.
    fn slots(&mut self) -> *mut *mut u8 {
        match self.block {
            Some((block, _)) => block.as_ptr(),
            None => self.inline.as_mut_ptr(),
        }
    }

    /// The slab whose base is `address`, if the index holds it.
    pub fn find(&self, address: usize) -> Option<*mut u8> {
        let bases = self.bases();
        bases
            .binary_search_by_key(&address, |base| base.addr())
            .ok()
            .map(|at| bases[at])
    }

    /// Makes room for one more base, moving to a block twice the size (or
    /// the first block) if it is full: `false` if the source has no such
    /// block (then nothing changed).
    pub fn reserve_one(&mut self, pages: &mut impl SlabPages) -> bool {
        if self.len < self.capacity() {
            return true;
        }
        let order = self.block.map_or(0, |(_, order)| order + 1);
        if order > MAX_INDEX_ORDER {
            return false;
        }
        let Some(block) = pages.alloc_slab(order) else {
            return false;
        };
        let block = block.cast::<*mut u8>();
        // SAFETY: the new block holds capacity_of(order) > len pointers,
        // is 4096-aligned and ours (the source's contract); the old bases
        // are `len` valid pointers, elsewhere.
        unsafe { ptr::copy_nonoverlapping(self.bases().as_ptr(), block.as_ptr(), self.len) };
        if let Some((old, old_order)) = self.block.replace((block, order)) {
            // SAFETY: the old block came from this source with this order
            // and its bases were copied out above.
            unsafe { pages.free_slab(old.cast(), old_order) };
        }
        true
    }

    /// Adds `base` (not in the index; room made by `reserve_one`).
    pub fn insert(&mut self, base: *mut u8) {
        let len = self.len;
        debug_assert!(len < self.capacity());
        let at = self
            .bases()
            .binary_search_by_key(&base.addr(), |known| known.addr())
            .unwrap_or_else(|at| at);
        let slots = self.slots();
        // SAFETY: `slots` has `capacity` > `len` slots (room made by
        // `reserve_one`), ours alone; slots `at..len` are used and move up
        // by one into room that exists; slot `at` is then written.
        unsafe {
            ptr::copy(slots.add(at), slots.add(at + 1), len - at);
            slots.add(at).write(base);
        }
        self.len += 1;
    }

    /// Removes the slab whose base is `address` (which the index holds),
    /// moving the bases inline when half the inline room holds them.
    pub fn remove(&mut self, address: usize, pages: &mut impl SlabPages) {
        let Ok(at) = self
            .bases()
            .binary_search_by_key(&address, |base| base.addr())
        else {
            debug_assert!(false, "removed a slab the index does not hold");
            return;
        };
        let len = self.len;
        let slots = self.slots();
        // SAFETY: slots `at + 1..len` are used and ours; they move down by
        // one over the removed base.
        unsafe { ptr::copy(slots.add(at + 1), slots.add(at), len - at - 1) };
        self.len -= 1;
        if self.len <= INLINE / 2 {
            self.shrink_to_inline(pages);
        }
    }

    /// Moves the bases from the block (if any) inline and gives the block
    /// back; the bases must fit.
    fn shrink_to_inline(&mut self, pages: &mut impl SlabPages) {
        let Some((block, order)) = self.block else {
            return;
        };
        debug_assert!(self.len <= INLINE);
        let mut inline = [ptr::null_mut(); INLINE];
        inline[..self.len].copy_from_slice(self.bases());
        self.inline = inline;
        self.block = None;
        // SAFETY: the block came from this source with this order; its
        // bases were copied out just above and it is no longer referenced.
        unsafe { pages.free_slab(block.cast(), order) };
    }
}

/// Bases a block of `order` holds.
const fn capacity_of(order: u32) -> usize {
    slab_bytes(order) / core::mem::size_of::<*mut u8>()
}

const _: () = assert!(capacity_of(0) > INLINE);
