//! Resizing (`realloc`, `usable_size`): a slot stays while it is big
//! enough; a block shrinks in place, grows into a free successor, slides
//! down into a free predecessor, or moves.

use core::ptr;

use super::*;

impl<G: Grow> Heap<'_, G> {
    /// Bytes usable at `pointer` (at least what was asked; exactly that
    /// with debug checks on, whose red zone follows).
    pub fn usable_size(&self, pointer: *mut u8) -> Result<usize, MmError> {
        let live = self.check_live(pointer)?;
        let capacity = self.capacity(live.payload, live.class);
        if self.checks.on() {
            return Ok(self.recorded_size(live.payload, capacity));
        }
        Ok(capacity)
    }

    /// Resizes the block at `pointer` to `new_size` bytes with `layout`'s
    /// alignment: in place when the block or its free neighbour allows
    /// (a block shrunk to slab size moves into a free slot of its class if
    /// one is at hand), otherwise by moving (copying the old contents).
    pub fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        if self.checks.on() {
            return self.realloc_with_checks(pointer, layout, new_size);
        }
        let live = self.check_live(pointer)?;
        let capacity = self.capacity(live.payload, live.class);
        self.resize_live(live, capacity, layout, new_size)
    }

    /// `realloc` with debug checks on: the red zone of a block resized in
    /// place is checked (a moved one's is checked by the free of its old
    /// place) and the new one armed.
    // Out of line, like `free_with_checks`.
    #[cold]
    #[inline(never)]
    fn realloc_with_checks(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        let live = self.check_live(pointer)?;
        let capacity = self.capacity(live.payload, live.class);
        let intact = self.red_zone_intact(live.payload, capacity);
        let counted = self.stats.red_zone_violations;
        let moved = self.resize_live(live, capacity, layout, new_size)?;
        // A move through a new allocation frees the old one, which checks
        // the red zone; staying in place or sliding down into a free
        // predecessor does not.
        if !intact && self.stats.red_zone_violations == counted {
            self.stats.red_zone_violations += 1;
        }
        self.arm_red_zone(moved.as_ptr().addr(), new_size);
        Ok(moved)
    }

    /// Resizes the live allocation `live` (holding `capacity` bytes).
    #[inline(always)]
    fn resize_live(
        &mut self,
        live: Live,
        capacity: usize,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        if live.class.is_some() {
            self.resize_slot(live, capacity, layout, new_size)
        } else {
            self.resize_block(live, layout, new_size)
        }
    }

    /// Resizes the live slab slot `slot` (holding `capacity` bytes): in
    /// place while the slot is big enough, otherwise by moving.
    fn resize_slot(
        &mut self,
        slot: Live,
        capacity: usize,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        if self
            .request_bytes(new_size)
            .is_some_and(|needed| needed <= capacity)
        {
            // SAFETY: a live slot is never null.
            return Ok(unsafe { NonNull::new_unchecked(self.tlsf.at(slot.payload)) });
        }
        self.move_to_new(slot, capacity, layout, new_size)
    }

    /// Resizes the live TLSF block `live`: in place when it shrinks or its
    /// free successor makes room; else down into its free predecessor
    /// (with the successor) when that makes room and keeps the alignment,
    /// which needs no new block; otherwise by moving. A block shrunk to
    /// what a slab slot holds moves into a free slot of its class if one is
    /// at hand (copying at most 256 bytes) instead of leaving a tiny block
    /// among the large ones, where it would keep free neighbours apart and
    /// cost the block path again when freed.
    fn resize_block(
        &mut self,
        live: Live,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        let block = live.payload - HEADER;
        let size = self.tlsf.size_of(block);
        let bytes = self.request_bytes(new_size).ok_or(MmError::HeapExhausted)?;
        let needed = block_size_for_layout(bytes, layout.align()).ok_or(MmError::HeapExhausted)?;
        if needed <= size {
            if bytes <= SLAB_LIMIT && layout.align() <= GRANULE {
                if let Some(moved) = self.move_to_cached_slot(live, size - HEADER, bytes, new_size)
                {
                    return Ok(moved);
                }
            }
            let freed = self.tlsf.shrink(block, needed);
            self.stats.used -= freed;
            self.stats.free += freed;
            // SAFETY: a live payload is never null.
            return Ok(unsafe { NonNull::new_unchecked(self.tlsf.at(live.payload)) });
        }
        // Growing over a free neighbour writes into it: pages of it given
        // back must be mapped again first.
        let (low, span) = self.tlsf.free_span(block);
        if span >= needed && self.remap_for(low, block + needed + FREE_HEAD) {
            if let Some(grown) = self.grow_over_neighbours(live, needed, layout.align()) {
                return Ok(grown);
            }
        }
        if layout.align() <= GRANULE {
            if let Some(moved) = self.move_with_room(live, size - HEADER, needed, new_size) {
                return Ok(moved);
            }
        }
        self.move_to_new(live, size - HEADER, layout, new_size)
    }

    /// Grows the live TLSF block `live` to `needed` bytes over its free
    /// neighbours: into its successor in place, else down into its
    /// predecessor (with the successor) if that keeps `align`; `None`
    /// (nothing changed) if neither has room.
    fn grow_over_neighbours(
        &mut self,
        live: Live,
        needed: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let block = live.payload - HEADER;
        let (payload, taken) = match self.tlsf.grow_in_place(block, needed) {
            Some(taken) => (live.payload, taken),
            None => {
                let align = align.max(GRANULE);
                let (moved, taken) = self.tlsf.grow_into_previous(block, needed, align)?;
                self.live.clear(live.at);
                self.live.set(self.live_bit(moved + HEADER));
                (moved + HEADER, taken)
            }
        };
        self.stats.free -= taken;
        self.stats.used += taken;
        self.stats.peak_used = self.stats.peak_used.max(self.stats.used);
        // SAFETY: a payload inside the heap is never null.
        Some(unsafe { NonNull::new_unchecked(self.tlsf.at(payload)) })
    }

    /// Moves the growing live TLSF block `old` (holding `capacity` bytes)
    /// to a block of `needed` bytes carved from the start of a free block
    /// of at least twice that, found in O(1); `None` (nothing changed) if
    /// no list is sure to hold one. The free rest right after the new
    /// block is room for one more growth by up to x2 in place, so a vector
    /// that keeps growing moves about every other time instead of every
    /// time (docs/heap.md, "Workloads we did not tune for").
    fn move_with_room(
        &mut self,
        old: Live,
        capacity: usize,
        needed: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let block = self.tlsf.take(needed.checked_mul(2)?)?;
        if !self.remap_for(block, block + needed + FREE_HEAD) {
            self.tlsf.put_back(block);
            return None;
        }
        let used = self.tlsf.carve(block, needed);
        self.stats.free -= used;
        self.stats.total_allocations += 1;
        let moved = self.hand_out_block(block, used);
        Some(self.copy_and_free(old, capacity, moved, new_size))
    }

    /// Moves the live allocation `old` (holding `capacity` bytes) to a new
    /// one of `new_size` bytes with `layout`'s alignment.
    fn move_to_new(
        &mut self,
        old: Live,
        capacity: usize,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, MmError> {
        let new_layout = Layout::from_size_align(new_size, layout.align())
            .map_err(|_| MmError::InvalidArgument)?;
        let moved = self.alloc(new_layout)?;
        Ok(self.copy_and_free(old, capacity, moved, new_size))
    }

    /// Moves the live TLSF block `old` (holding `capacity` bytes), shrunk
    /// to a request of `bytes` (at most `SLAB_LIMIT`, debug overhead
    /// included), into a free slot its class already has (recent list,
    /// partial or spare page); `None` if there is none. Never takes a new
    /// page, so a shrink neither grows the heap nor gives its caches back.
    fn move_to_cached_slot(
        &mut self,
        old: Live,
        capacity: usize,
        bytes: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let class = slab::class_of(bytes);
        let slot = self.slabs.slot_at_hand(class)?;
        self.stats.total_allocations += 1;
        let moved = self.hand_out_slot(slot, class);
        Some(self.copy_and_free(old, capacity, moved, new_size))
    }

    /// Copies what fits of the live allocation `old` (holding `capacity`
    /// bytes) into the live allocation `moved` (holding at least
    /// `new_size`), frees `old` and returns `moved`.
    fn copy_and_free(
        &mut self,
        old: Live,
        capacity: usize,
        moved: NonNull<u8>,
        new_size: usize,
    ) -> NonNull<u8> {
        // SAFETY: both allocations are live, distinct, and at least
        // min(capacity, new_size) bytes long.
        unsafe {
            ptr::copy_nonoverlapping(
                self.tlsf.at(old.payload),
                moved.as_ptr(),
                capacity.min(new_size),
            );
        }
        // `old` is still live: allocating cannot have freed it.
        self.free_live(old);
        moved
    }
}
