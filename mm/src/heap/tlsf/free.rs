//! Freeing: the check that a pointer is a live allocation (and, when it
//! is not, what kind of mistake it is), and the paths that give slab
//! slots and TLSF blocks back.

use super::*;

impl<G: Grow> Heap<'_, G> {
    /// Checks that `pointer` is a live allocation of this heap.
    // Slot or block is decided by the page's class byte (a 1-byte-per-page
    // table that stays in cache), not by the live bitmap, which often
    // misses the cache: a branch on it would be as unpredictable as the
    // request sizes and stall every free until the load came back. The
    // live bit is only checked, and almost always passes.
    #[inline(always)]
    pub(super) fn check_live(&self, pointer: *mut u8) -> Result<Live, MmError> {
        let payload = pointer as usize;
        if payload < self.start + HEADER || payload >= self.end || !payload.is_multiple_of(GRANULE)
        {
            return Err(MmError::InvalidFree);
        }
        let class = self.slabs.class_at(payload);
        let at = self.mark_slot(payload);
        if !self.is_marked(at) {
            return Err(self.bad_free(payload, class));
        }
        Ok(Live { payload, class, at })
    }

    /// Why `payload` (16-aligned, inside the heap, no live allocation
    /// starting there; `class`: its page's slab class) cannot be freed:
    /// `DoubleFree` if it points at a slot handed out before or into free
    /// memory (a free block, or one waiting in a quick list: most likely a
    /// stale pointer), else `InvalidFree`. Error path only: for a pointer
    /// outside the slab pages it walks the blocks, O(number of blocks).
    #[cold]
    #[inline(never)]
    pub(super) fn bad_free(&self, payload: usize, class: Option<usize>) -> MmError {
        let freed = match class {
            Some(class) => self.slabs.was_handed_out(payload, class),
            None => self.block_around(payload).is_some_and(|block| {
                let start = block + HEADER;
                if start.is_multiple_of(PAGE) && self.slabs.contains(start) {
                    // The few bytes a slab page's block may have past the
                    // page (a tail too small to split off): slack.
                    return false;
                }
                // A used block outside the slab pages whose payload is not
                // live sits in a quick list.
                self.header(block) & FREE != 0 || !self.is_live_at(start)
            }),
        };
        if freed {
            MmError::DoubleFree
        } else {
            MmError::InvalidFree
        }
    }

    /// The block whose memory holds `address`, found by walking the blocks
    /// from the start; `None` if the walk finds a broken size first.
    pub(super) fn block_around(&self, address: usize) -> Option<usize> {
        let mut block = self.start + HEADER;
        while block < self.end - HEADER {
            let size = self.size_of(block);
            if size < MIN_BLOCK {
                return None;
            }
            if address < block + size {
                return Some(block);
            }
            block += size;
        }
        None
    }

    /// Frees a block without knowing its layout (the design's `kfree`).
    /// A pointer this heap did not return, or returned and already took
    /// back, is an error and changes nothing.
    // As in `alloc`, the common small case is inline, the rest not.
    #[inline]
    pub fn free(&mut self, pointer: *mut u8) -> Result<(), MmError> {
        let live = self.check_live(pointer)?;
        self.free_live(live);
        Ok(())
    }

    /// Frees an allocation `check_live` accepted.
    #[inline(always)]
    pub(super) fn free_live(&mut self, live: Live) {
        if self.checks.on() {
            self.free_live_checked(live.payload);
            return;
        }
        self.free_live_unchecked(live);
    }

    /// `free_live` of the allocation at `payload`, which must be one
    /// `check_live` accepted, with debug checks on: the red zone is checked
    /// and the memory poisoned first.
    // Out of line and whole, so that the release-build free paths make no
    // call they would have to save registers around; it takes the address
    // alone (one register) and looks the rest up again.
    #[cold]
    #[inline(never)]
    pub(super) fn free_live_checked(&mut self, payload: usize) {
        let live = Live {
            payload,
            class: self.slabs.class_at(payload),
            at: self.mark_slot(payload),
        };
        let capacity = self.capacity_of(live.payload, live.class);
        if !self.red_zone_intact(live.payload, capacity) {
            self.stats.red_zone_violations += 1;
        }
        // SAFETY: the allocation is live and ours until it is released.
        unsafe { ptr::write_bytes(self.at(live.payload), POISON, capacity) };
        self.free_live_unchecked(live);
    }

    /// `free_live` once the debug checks (if on) are done.
    #[inline(always)]
    pub(super) fn free_live_unchecked(&mut self, live: Live) {
        let Live { payload, class, at } = live;
        if let Some(class) = class {
            // SAFETY: a live slot of our slabs (`live` comes from
            // `check_live`), not used again here when it goes on the recent
            // list.
            if unsafe { self.slabs.push_recent(payload, class) } {
                self.retire_slot(class, at);
                return;
            }
            self.free_small(payload, class, at);
            return;
        }
        self.free_block(payload, at);
    }

    /// `free` of the live block (not slab slot) at `payload`.
    #[inline(never)]
    pub(super) fn free_block(&mut self, payload: usize, at: MarkSlot) {
        let block = payload - HEADER;
        let size = self.size_of(block);
        self.retire(at);
        self.stats.used -= size;
        self.stats.free += size;
        let list = size / GRANULE;
        if size < QUICK_LIMIT && self.quick_depth[list] < QUICK_DEPTH {
            self.write(block + HEADER, self.quick[list]);
            self.quick[list] = block;
            self.quick_depth[list] += 1;
        } else {
            self.release(block);
        }
    }

    /// What freeing any live allocation does besides giving its memory
    /// back: its live bit and the live count.
    #[inline(always)]
    pub(super) fn retire(&mut self, at: MarkSlot) {
        self.clear_live(at);
        self.stats.live_allocations -= 1;
    }

    /// `retire` for a live slab slot of `class`, and its bytes counted
    /// free.
    #[inline(always)]
    pub(super) fn retire_slot(&mut self, class: usize, at: MarkSlot) {
        let size = slab::slot_size(class);
        self.retire(at);
        self.stats.used -= size;
        self.stats.slab_free += size;
    }

    /// Frees the live slab slot at `slot`, of `class`, whose recent list
    /// is full: back to its page.
    #[inline(never)]
    pub(super) fn free_small(&mut self, slot: usize, class: usize, at: MarkSlot) {
        self.retire_slot(class, at);
        // SAFETY: a live slot of our slabs (its live bit was set and its
        // page is a slab page); it is not used again here.
        if let Some((page, class)) = unsafe { self.slabs.free_to_page(slot, class) } {
            self.release_slab_page(page, class);
        }
    }
}
