//! Quick lists: freed TLSF blocks under [`QUICK_LIMIT`] bytes kept, not
//! coalesced, on a LIFO list per exact size, so that the next request of
//! that size takes one back in a few instructions.
//!
//! A cached block stays *used* for the TLSF part (its header says so) and
//! is linked through its first payload word; only the heap's live map and
//! counters see it as free. `drain` gives every one back to the TLSF lists.
#![forbid(unsafe_code)]

use super::tlsf::{Tlsf, GRANULE, HEADER};

/// Freed blocks smaller than this go to a quick list.
pub const QUICK_LIMIT: usize = 512;
/// One list per 16-byte size step.
const LISTS: usize = QUICK_LIMIT / GRANULE;
/// Most blocks kept in one list; beyond that frees coalesce.
const DEPTH: u16 = 64;
/// Offset in a cached block of its link to the next one (the payload).
const LINK: usize = HEADER;

/// The list heads (0: empty) and their lengths.
pub struct QuickLists {
    heads: [usize; LISTS],
    depth: [u16; LISTS],
}

impl QuickLists {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            heads: [0; LISTS],
            depth: [0; LISTS],
        }
    }

    /// Caches the used block at `block` of `size` bytes; `false` (nothing
    /// done) if it is too big or its list is full.
    #[inline(always)]
    pub fn push(&mut self, tlsf: &mut Tlsf, block: usize, size: usize) -> bool {
        let list = size / GRANULE;
        if size >= QUICK_LIMIT || self.depth[list] >= DEPTH {
            return false;
        }
        tlsf.write(block + LINK, self.heads[list]);
        self.heads[list] = block;
        self.depth[list] += 1;
        true
    }

    /// A cached block of exactly `size` bytes (below `QUICK_LIMIT`), if
    /// one is waiting.
    #[inline(always)]
    pub fn pop(&mut self, tlsf: &Tlsf, size: usize) -> Option<usize> {
        let list = size / GRANULE;
        let block = self.heads[list];
        if block == 0 {
            return None;
        }
        self.heads[list] = tlsf.read(block + LINK);
        self.depth[list] -= 1;
        Some(block)
    }

    /// Frees every cached block into `tlsf`, coalescing it.
    pub fn drain(&mut self, tlsf: &mut Tlsf) {
        for list in 0..LISTS {
            let mut block = self.heads[list];
            while block != 0 {
                let next = tlsf.read(block + LINK);
                tlsf.free(block);
                block = next;
            }
            self.heads[list] = 0;
            self.depth[list] = 0;
        }
    }

    /// Checks every list: its blocks used in `tlsf`, of the list's size,
    /// not live (`is_live`), as many as its depth counter says; returns
    /// the number of blocks cached, or the first violation. Stops after
    /// `limit` blocks (a cycle).
    pub fn verify(
        &self,
        tlsf: &Tlsf,
        is_live: impl Fn(usize) -> bool,
        limit: usize,
    ) -> Result<usize, &'static str> {
        let mut members = 0;
        for list in 0..LISTS {
            let mut block = self.heads[list];
            let mut depth = 0;
            while block != 0 {
                if tlsf.is_free(block)
                    || tlsf.size_of(block) / GRANULE != list
                    || is_live(block + HEADER)
                {
                    return Err("a quick-list block is free, live or in the wrong list");
                }
                depth += 1;
                members += 1;
                if members > limit {
                    return Err("quick lists hold more blocks than are cached");
                }
                block = tlsf.read(block + LINK);
            }
            if depth != self.depth[list] as usize {
                return Err("quick-list depth counter is wrong");
            }
        }
        Ok(members)
    }
}
