//! The TLSF free lists: free blocks segregated by size (first level: the
//! power of two; second level: 16 linear steps within it; sizes below 256
//! bytes 16 bytes apart), found in O(1) through two bitmaps.
#![forbid(unsafe_code)]

use super::{Tlsf, GRANULE, NEXT_LINK, PREV_LINK};

/// Sizes below this are binned linearly, 16 bytes apart (first level 0).
const SMALL_LIMIT: usize = 256;
/// log2 of the number of second-level lists per first level.
const SL_BITS: u32 = 4;
/// Second-level lists per first level.
pub(super) const SL_COUNT: usize = 1 << SL_BITS;
/// First levels: enough for blocks up to 2^(FL_COUNT + 7) bytes.
pub(super) const FL_COUNT: usize = 28;
/// Blocks of the list a size falls in tried when no list is sure to fit.
const FALLBACK_SCAN: usize = 32;
/// Blocks of a list `take_aligned` looks at for one already aligned.
const ALIGNED_SCAN: usize = 4;

/// The list heads and the bitmaps of non-empty lists (the links are in
/// the free blocks themselves).
pub(super) struct FreeLists {
    fl_bitmap: u32,
    sl_bitmap: [u16; FL_COUNT],
    heads: [[usize; SL_COUNT]; FL_COUNT],
}

impl FreeLists {
    pub(super) const fn new() -> Self {
        Self {
            fl_bitmap: 0,
            sl_bitmap: [0; FL_COUNT],
            heads: [[0; SL_COUNT]; FL_COUNT],
        }
    }

    /// The first block of list (`fl`, `sl`), 0 if it is empty.
    pub(super) fn head(&self, fl: usize, sl: usize) -> usize {
        self.heads[fl][sl]
    }

    /// Whether the bitmaps say list (`fl`, `sl`) is non-empty.
    pub(super) fn marked(&self, fl: usize, sl: usize) -> bool {
        self.fl_bitmap & (1 << fl) != 0 && self.sl_bitmap[fl] & (1 << sl) != 0
    }
}

/// The list (first level, second level) a free block of `size` belongs to.
pub(super) fn mapping(size: usize) -> (usize, usize) {
    if size < SMALL_LIMIT {
        (0, size / GRANULE)
    } else {
        let log = usize::BITS - 1 - size.leading_zeros();
        let fl = (log - 7) as usize;
        let sl = (size >> (log - SL_BITS)) & (SL_COUNT - 1);
        (fl, sl)
    }
}

/// Rounds a size up to the start of the next list, so that any block in
/// the list found is large enough.
fn round_to_list(size: usize) -> usize {
    if size < SMALL_LIMIT {
        size
    } else {
        let log = usize::BITS - 1 - size.leading_zeros();
        let step = 1usize << (log - SL_BITS);
        (size + step - 1) & !(step - 1)
    }
}

impl Tlsf {
    /// Puts the free block at `block` (of `size`) at the head of its list.
    pub(super) fn insert(&mut self, block: usize, size: usize) {
        let (fl, sl) = mapping(size);
        let head = self.lists.heads[fl][sl];
        self.write(block + NEXT_LINK, head);
        self.write(block + PREV_LINK, 0);
        if head != 0 {
            self.write(head + PREV_LINK, block);
        } else {
            self.lists.fl_bitmap |= 1 << fl;
            self.lists.sl_bitmap[fl] |= 1 << sl;
        }
        self.lists.heads[fl][sl] = block;
    }

    /// Unlinks the free block at `block` (of `size`) from its list.
    pub(super) fn remove(&mut self, block: usize, size: usize) {
        if block == self.last_freed {
            self.last_freed = 0;
        }
        let (next, prev) = (self.next_free(block), self.prev_free(block));
        if next != 0 {
            self.write(next + PREV_LINK, prev);
        }
        if prev != 0 {
            self.write(prev + NEXT_LINK, next);
            return;
        }
        // Only the head of a list needs to know which list it is in.
        let (fl, sl) = mapping(size);
        self.lists.heads[fl][sl] = next;
        if next == 0 {
            self.lists.sl_bitmap[fl] &= !(1 << sl);
            if self.lists.sl_bitmap[fl] == 0 {
                self.lists.fl_bitmap &= !(1 << fl);
            }
        }
    }

    /// A free block of at least `size` bytes from the smallest list whose
    /// blocks all hold it, removed from its list: O(1) through the
    /// bitmaps; `None` if no such list has a block.
    #[inline(always)]
    pub fn take(&mut self, size: usize) -> Option<usize> {
        let (fl, sl, block) = self.find(size)?;
        self.remove_head(fl, sl, block);
        Some(block)
    }

    /// `remove` for the head `block` of list (`fl`, `sl`), whose place is
    /// known (as `find` found it): no back link to follow, no list to work
    /// out again.
    #[inline(always)]
    fn remove_head(&mut self, fl: usize, sl: usize, block: usize) {
        debug_assert!(self.lists.heads[fl][sl] == block && self.prev_free(block) == 0);
        if block == self.last_freed {
            self.last_freed = 0;
        }
        let next = self.next_free(block);
        self.lists.heads[fl][sl] = next;
        if next != 0 {
            self.write(next + PREV_LINK, 0);
        } else {
            self.lists.sl_bitmap[fl] &= !(1 << sl);
            if self.lists.sl_bitmap[fl] == 0 {
                self.lists.fl_bitmap &= !(1 << fl);
            }
        }
    }

    /// `take`'s fallback when no list is sure to fit: the first few blocks
    /// (`FALLBACK_SCAN`) of the list `size` itself falls in, which matters
    /// when memory is nearly full.
    pub fn take_scanning(&mut self, size: usize) -> Option<usize> {
        let (fl, sl) = mapping(size);
        if fl >= FL_COUNT {
            return None;
        }
        let mut block = self.lists.heads[fl][sl];
        for _ in 0..FALLBACK_SCAN {
            if block == 0 {
                return None;
            }
            let block_size = self.size_of(block);
            if block_size >= size {
                self.remove(block, block_size);
                return Some(block);
            }
            block = self.next_free(block);
        }
        None
    }

    /// A free block that holds `size` bytes with an `align`-aligned
    /// payload (its own, or one after a leading free block: see
    /// `aligned_start`), removed from its list: one of the first
    /// `ALIGNED_SCAN` blocks of the smallest list whose blocks all hold
    /// `size`, found through the bitmaps as in `take`; `None` if none of
    /// them does (the caller then pads). Carve it with `carve_aligned`.
    pub fn take_aligned(&mut self, size: usize, align: usize) -> Option<usize> {
        let (_, _, mut block) = self.find(size)?;
        for _ in 0..ALIGNED_SCAN {
            if block == 0 {
                return None;
            }
            if Tlsf::aligned_start(block, align) + size <= block + self.size_of(block) {
                self.remove(block, self.size_of(block));
                return Some(block);
            }
            block = self.next_free(block);
        }
        None
    }

    /// The smallest list whose blocks all hold `size` bytes and has one,
    /// and its head: (first level, second level, block).
    #[inline(always)]
    fn find(&self, size: usize) -> Option<(usize, usize, usize)> {
        let (fl, sl) = mapping(round_to_list(size));
        if fl >= FL_COUNT {
            return None;
        }
        let mut fl = fl;
        let mut sl_map = self.lists.sl_bitmap[fl] & (u16::MAX << sl);
        if sl_map == 0 {
            let fl_map = self.lists.fl_bitmap & u32::MAX.checked_shl(fl as u32 + 1).unwrap_or(0);
            if fl_map == 0 {
                return None;
            }
            fl = fl_map.trailing_zeros() as usize;
            sl_map = self.lists.sl_bitmap[fl];
        }
        let sl = sl_map.trailing_zeros() as usize;
        Some((fl, sl, self.lists.heads[fl][sl]))
    }

    /// The largest free block's size (scans the highest non-empty list).
    pub fn largest_free_block(&self) -> usize {
        if self.lists.fl_bitmap == 0 {
            return 0;
        }
        let fl = 31 - self.lists.fl_bitmap.leading_zeros() as usize;
        let sl = 15 - self.lists.sl_bitmap[fl].leading_zeros() as usize;
        let mut block = self.lists.heads[fl][sl];
        let mut largest = 0;
        while block != 0 {
            largest = largest.max(self.size_of(block));
            block = self.next_free(block);
        }
        largest
    }
}
