//! Quick lists: freed TLSF blocks under [`QUICK_LIMIT`] bytes kept, not
//! coalesced, on a LIFO list per exact size, so that the next request of
//! that size takes one back in a few instructions.
//!
//! A cached block stays *used* for the TLSF part (its header says so) and
//! is linked through its first payload word; only the heap's live map and
//! counters see it as free. `drain` gives every one back to the TLSF lists.
#![forbid(unsafe_code)]

use super::tlsf::{Tlsf, GRANULE, HEADER};

/// Freed blocks smaller than this go to a quick list: the block of every
/// request of 2 KiB or a little more (up to 2,056 bytes: a 2,064-byte
/// block) too big for the slabs, and of small requests aligned above 16
/// bytes (docs/heap.md, "FIFO queue": the limit was 512).
pub const QUICK_LIMIT: usize = 2048 + 2 * GRANULE;
/// One list per 16-byte size step.
const LISTS: usize = QUICK_LIMIT / GRANULE;
/// Most blocks kept in one list; beyond that frees coalesce.
const DEPTH: u16 = 64;
/// Most bytes all lists keep together (3 % of a 16 MiB heap); beyond
/// that frees coalesce, so that the lists never hold back much memory
/// from merging (and the heap gives them all back before it grows).
pub(super) const QUICK_BYTES: usize = 512 * 1024;

const _: () = assert!(QUICK_LIMIT.is_multiple_of(GRANULE));
/// Offset in a cached block of its link to the next one (the payload).
const LINK: usize = HEADER;

/// The list heads (0: empty), their lengths and the bytes they hold.
pub struct QuickLists {
    heads: [usize; LISTS],
    depth: [u16; LISTS],
    bytes: usize,
}

impl QuickLists {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            heads: [0; LISTS],
            depth: [0; LISTS],
            bytes: 0,
        }
    }

    /// Caches the used block at `block` of `size` bytes; `false` (nothing
    /// done) if it is too big, its list is full or the lists hold
    /// `QUICK_BYTES`.
    #[inline(always)]
    pub fn push(&mut self, tlsf: &mut Tlsf, block: usize, size: usize) -> bool {
        let list = size / GRANULE;
        if size >= QUICK_LIMIT || self.depth[list] >= DEPTH || self.bytes + size > QUICK_BYTES {
            return false;
        }
        tlsf.write(block + LINK, self.heads[list]);
        self.heads[list] = block;
        self.depth[list] += 1;
        self.bytes += size;
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
        self.bytes -= size;
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
        self.bytes = 0;
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
        let (mut members, mut bytes) = (0, 0);
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
                bytes += tlsf.size_of(block);
                if members > limit {
                    return Err("quick lists hold more blocks than are cached");
                }
                block = tlsf.read(block + LINK);
            }
            if depth != self.depth[list] as usize {
                return Err("quick-list depth counter is wrong");
            }
        }
        if bytes != self.bytes {
            return Err("quick-list byte count is wrong");
        }
        Ok(members)
    }
}
