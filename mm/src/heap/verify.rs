//! `Heap::verify`: checks the TLSF blocks and lists, then that every slab
//! page, quick list, page-cache block and live bit agrees with them and
//! with the counters.

use super::*;

impl<G: Grow> Heap<'_, G> {
    /// Checks every invariant; the first violation is returned as text.
    pub fn verify(&self) -> Result<(), &'static str> {
        let blocks = self.tlsf.verify()?;
        let (mut used, mut live, mut released) = (0, 0, 0);
        let (mut cached, mut cached_bytes) = (0, 0);
        let mut slabs = SlabTotals::default();
        for (block, size, is_free) in self.tlsf.blocks() {
            let payload = block + HEADER;
            let is_live = self.is_live(payload);
            if is_free {
                if is_live {
                    return Err("live bitmap marks a free block");
                }
                released += self.released_inside(block, size)?;
                continue;
            }
            if payload.is_multiple_of(PAGE) && self.slabs.contains(payload) {
                if size < PAGE_USABLE + HEADER {
                    return Err("a slab page's block is too small");
                }
                // SAFETY: `payload` is one of our slab pages, inside the heap.
                let usage = unsafe { self.slabs.verify_page(payload, |slot| self.is_live(slot))? };
                slabs.add(size, &usage);
            } else if is_live {
                used += size;
                live += 1;
            } else {
                // Freed by the user, waiting in a quick list or the page
                // cache.
                cached += 1;
                cached_bytes += size;
            }
        }
        if released != self.released.bytes() {
            return Err("a range given back lies outside every free block");
        }
        if used + slabs.used != self.stats.used
            || blocks.free + cached_bytes != self.stats.free + released
            || live + slabs.live != self.stats.live_allocations
            || slabs.free != self.stats.slab_free
            || slabs.blocks - slabs.used - slabs.free + RANGE_OVERHEAD != self.stats.overhead
            || self.stats.used + self.stats.free + self.stats.slab_free + self.stats.overhead
                != self.stats.mapped
        {
            return Err("counters disagree with the blocks");
        }
        if self.stats.mapped + released != self.tlsf.end() - self.tlsf.start() {
            return Err("blocks do not cover the mapped range");
        }
        if slabs.pages != self.slabs.pages() {
            return Err("slab page count disagrees with the blocks");
        }
        let (listed, recent) = self.slabs.verify_lists(|slot| self.is_live(slot))?;
        if listed != slabs.partial || recent != slabs.recent {
            return Err("a slab page or slot is missing from its list");
        }
        let quick = self
            .quick
            .verify(&self.tlsf, |payload| self.is_live(payload), cached)?;
        let pages = self
            .pages
            .verify(&self.tlsf, |payload| self.is_live(payload), cached)?;
        if quick + pages != cached {
            return Err("a freed block is neither free nor in a quick list or the page cache");
        }
        if self.live.count() != self.stats.live_allocations {
            return Err("live bitmap marks more or fewer allocations than are live");
        }
        Ok(())
    }
}

impl<G: Grow> Heap<'_, G> {
    /// Bytes given back inside the free block at `block` of `size`, or an
    /// error if a range given back overlaps the block but not inside its
    /// interior (the pages of its header and footer stay mapped).
    fn released_inside(&self, block: usize, size: usize) -> Result<usize, &'static str> {
        let low = (block + FREE_HEAD).next_multiple_of(PAGE);
        let high = (block + size - WORD) / PAGE * PAGE;
        let mut bytes = 0;
        for &(start, end) in self.released.ranges() {
            if start < block + size && end > block {
                if start < low || end > high || start >= end {
                    return Err("a range given back covers a free block's header or footer");
                }
                bytes += end - start;
            }
        }
        Ok(bytes)
    }
}

/// What `verify` adds up over the slab pages.
#[derive(Default)]
struct SlabTotals {
    pages: usize,
    /// Bytes of the blocks holding slab pages.
    blocks: usize,
    /// Bytes in used and free slots.
    used: usize,
    free: usize,
    /// Slots in use.
    live: usize,
    /// Pages that belong in a partial list.
    partial: usize,
    /// Slots waiting in recent lists.
    recent: usize,
}

impl SlabTotals {
    fn add(&mut self, block_size: usize, usage: &slab::PageUsage) {
        self.pages += 1;
        self.blocks += block_size;
        self.used += usage.in_use * usage.slot_size;
        self.free += usage.free * usage.slot_size;
        self.live += usage.in_use;
        self.partial += usize::from(usage.listed);
        self.recent += usage.recent;
    }
}
