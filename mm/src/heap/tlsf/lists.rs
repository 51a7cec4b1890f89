//! The TLSF free lists: free blocks segregated by size (first level: the
//! power of two; second level: 16 linear steps within it; sizes below 256
//! bytes 16 bytes apart), found in O(1) through two bitmaps.
#![forbid(unsafe_code)]

use super::*;

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
pub(super) fn round_to_list(size: usize) -> usize {
    if size < SMALL_LIMIT {
        size
    } else {
        let log = usize::BITS - 1 - size.leading_zeros();
        let step = 1usize << (log - SL_BITS);
        (size + step - 1) & !(step - 1)
    }
}

impl<G: Grow> Heap<'_, G> {
    pub(super) fn insert(&mut self, block: usize, size: usize) {
        let (fl, sl) = mapping(size);
        let head = self.heads[fl][sl];
        self.write(block + 8, head);
        self.write(block + 16, 0);
        if head != 0 {
            self.write(head + 16, block);
        }
        self.heads[fl][sl] = block;
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
    }

    pub(super) fn remove(&mut self, block: usize, size: usize) {
        let (fl, sl) = mapping(size);
        let (next, prev) = (self.next_free(block), self.prev_free(block));
        if next != 0 {
            self.write(next + 16, prev);
        }
        if prev != 0 {
            self.write(prev + 8, next);
        } else {
            self.heads[fl][sl] = next;
            if next == 0 {
                self.sl_bitmap[fl] &= !(1 << sl);
                if self.sl_bitmap[fl] == 0 {
                    self.fl_bitmap &= !(1 << fl);
                }
            }
        }
    }

    /// A free block of at least `size` bytes, removed from its list: O(1)
    /// through the bitmaps; if no list is sure to fit, the first few blocks
    /// of the list `size` itself falls in are tried (bounded by
    /// `FALLBACK_SCAN`), which matters when memory is nearly full.
    pub(super) fn take_fitting(&mut self, size: usize) -> Option<usize> {
        match self.take_from_lists(size) {
            Some(block) => Some(block),
            None => self.take_by_scan(size),
        }
    }

    pub(super) fn take_by_scan(&mut self, size: usize) -> Option<usize> {
        const FALLBACK_SCAN: usize = 32;
        let (fl, sl) = mapping(size);
        if fl >= FL_COUNT {
            return None;
        }
        let mut block = self.heads[fl][sl];
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

    #[inline(always)]
    pub(super) fn take_from_lists(&mut self, size: usize) -> Option<usize> {
        let block = self.find_in_lists(size)?;
        let block_size = self.size_of(block);
        self.remove(block, block_size);
        Some(block)
    }

    /// The head of the smallest list whose blocks all hold `size` bytes.
    #[inline(always)]
    pub(super) fn find_in_lists(&self, size: usize) -> Option<usize> {
        let (fl, sl) = mapping(round_to_list(size));
        if fl >= FL_COUNT {
            return None;
        }
        let mut fl = fl;
        let mut sl_map = self.sl_bitmap[fl] & (u16::MAX << sl);
        if sl_map == 0 {
            let fl_map = self.fl_bitmap & u32::MAX.checked_shl(fl as u32 + 1).unwrap_or(0);
            if fl_map == 0 {
                return None;
            }
            fl = fl_map.trailing_zeros() as usize;
            sl_map = self.sl_bitmap[fl];
        }
        let sl = sl_map.trailing_zeros() as usize;
        Some(self.heads[fl][sl])
    }

    /// The largest free block's size (scans the highest non-empty list).
    pub fn largest_free_block(&self) -> usize {
        if self.fl_bitmap == 0 {
            return 0;
        }
        let fl = 31 - self.fl_bitmap.leading_zeros() as usize;
        let sl = 15 - self.sl_bitmap[fl].leading_zeros() as usize;
        let mut block = self.heads[fl][sl];
        let mut largest = 0;
        while block != 0 {
            largest = largest.max(self.size_of(block));
            block = self.next_free(block);
        }
        largest
    }
}
