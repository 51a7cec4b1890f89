//! `Tlsf::verify`: walks every block and free list and checks that they
//! agree with each other.
#![forbid(unsafe_code)]

use super::lists::{mapping, FL_COUNT, SL_COUNT};
use super::{Tlsf, GRANULE, MIN_BLOCK, PREV_FREE, RANGE_OVERHEAD, WORD};

/// What `Tlsf::verify` counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsfTotals {
    /// Bytes in used blocks.
    pub used: usize,
    /// Bytes in free blocks.
    pub free: usize,
    /// Free blocks.
    pub free_blocks: usize,
}

impl Tlsf {
    /// Checks the blocks (sizes, flags, footers, coalescing, the sentinel,
    /// coverage of the range) and the free lists (bitmaps, membership,
    /// links); the first violation is returned as text.
    pub fn verify(&self) -> Result<TlsfTotals, &'static str> {
        let mut totals = TlsfTotals::default();
        let mut block = self.first_block();
        let mut prev_free = false;
        while block < self.sentinel() {
            let size = self.size_of(block);
            if size < MIN_BLOCK || !size.is_multiple_of(GRANULE) || block + size > self.sentinel() {
                return Err("block size out of bounds");
            }
            if (self.prev_free_flag(block) != 0) != prev_free {
                return Err("PREV_FREE flag disagrees with the previous block");
            }
            let is_free = self.is_free(block);
            if is_free && prev_free {
                return Err("two adjacent free blocks (missed coalescing)");
            }
            if is_free {
                if self.read(block + size - WORD) != block {
                    return Err("free block footer does not point at its header");
                }
                totals.free += size;
                totals.free_blocks += 1;
            } else {
                totals.used += size;
            }
            prev_free = is_free;
            block += size;
        }
        if block != self.sentinel() {
            return Err("blocks do not end at the sentinel");
        }
        if (self.header(block) & PREV_FREE != 0) != prev_free || self.size_of(block) != 0 {
            return Err("sentinel header is wrong");
        }
        if totals.used + totals.free + RANGE_OVERHEAD != self.end - self.start {
            return Err("blocks do not cover the range");
        }
        self.verify_lists(totals.free_blocks)?;
        Ok(totals)
    }

    /// Checks that the lists hold exactly the `free_blocks` free blocks,
    /// each in its list, doubly linked, with bitmaps that match.
    fn verify_lists(&self, free_blocks: usize) -> Result<(), &'static str> {
        let mut listed = 0;
        for fl in 0..FL_COUNT {
            for sl in 0..SL_COUNT {
                let mut block = self.lists.head(fl, sl);
                if (block != 0) != self.lists.marked(fl, sl) {
                    return Err("list bitmaps disagree with the lists");
                }
                let mut prev = 0;
                while block != 0 {
                    if !self.is_free(block) || mapping(self.size_of(block)) != (fl, sl) {
                        return Err("a listed block is not free or in the wrong list");
                    }
                    if self.prev_free(block) != prev {
                        return Err("free list back link broken");
                    }
                    listed += 1;
                    if listed > free_blocks {
                        return Err("free lists hold more blocks than the heap");
                    }
                    prev = block;
                    block = self.next_free(block);
                }
            }
        }
        if listed != free_blocks {
            return Err("a free block is missing from the lists");
        }
        Ok(())
    }
}
