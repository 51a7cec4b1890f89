//! `Heap::verify`: walks every block, slab page and list and checks that
//! they agree with each other and with the counters.

use super::lists::mapping;
use super::*;

impl<G: Grow> Heap<'_, G> {
    /// Checks every invariant; the first violation is returned as text.
    pub fn verify(&self) -> Result<(), &'static str> {
        let mut block = self.start + HEADER;
        let (mut used, mut free, mut live, mut free_blocks) = (0, 0, 0, 0);
        let (mut cached, mut cached_bytes) = (0, 0);
        let mut slabs = SlabTotals::default();
        let mut prev_free = false;
        while block < self.end - HEADER {
            let header = self.header(block);
            let size = header & !FLAGS;
            if size < MIN_BLOCK || !size.is_multiple_of(GRANULE) || block + size > self.end - HEADER
            {
                return Err("block size out of bounds");
            }
            if (header & PREV_FREE != 0) != prev_free {
                return Err("PREV_FREE flag disagrees with the previous block");
            }
            let is_free = header & FREE != 0;
            if is_free && prev_free {
                return Err("two adjacent free blocks (missed coalescing)");
            }
            let payload = block + HEADER;
            let is_live = self.is_live_at(payload);
            if !is_free && payload.is_multiple_of(PAGE) && self.slabs.contains(payload) {
                if size < PAGE_USABLE + HEADER {
                    return Err("a slab page's block is too small");
                }
                // SAFETY: `payload` is one of our slab pages, inside the heap.
                let usage = unsafe {
                    self.slabs
                        .verify_page(payload, |slot| self.is_live_at(slot))?
                };
                slabs.add(size, &usage);
                prev_free = false;
                block += size;
                continue;
            }
            if is_free && is_live {
                return Err("live bitmap marks a free block");
            }
            if !is_free && !is_live {
                // Freed by the user, waiting in a quick list.
                cached += 1;
                cached_bytes += size;
            }
            if is_free {
                if self.read(block + size - HEADER) != block {
                    return Err("free block footer does not point at its header");
                }
                free += size;
                free_blocks += 1;
            } else {
                used += size;
                live += 1;
            }
            prev_free = is_free;
            block += size;
        }
        if block != self.end - HEADER {
            return Err("blocks do not end at the sentinel");
        }
        if (self.header(block) & PREV_FREE != 0) != prev_free || self.size_of(block) != 0 {
            return Err("sentinel header is wrong");
        }
        if used - cached_bytes + slabs.used != self.stats.used
            || free + cached_bytes != self.stats.free
            || live - cached + slabs.live != self.stats.live_allocations
            || slabs.free != self.stats.slab_free
            || slabs.blocks - slabs.used - slabs.free + GRANULE != self.stats.overhead
            || self.stats.used + self.stats.free + self.stats.slab_free + self.stats.overhead
                != self.stats.mapped
        {
            return Err("counters disagree with the blocks");
        }
        if slabs.pages != self.slabs.pages() {
            return Err("slab page count disagrees with the blocks");
        }
        let (listed, recent) = self.slabs.verify_lists(|slot| self.is_live_at(slot))?;
        if listed != slabs.partial || recent != slabs.recent {
            return Err("a slab page or slot is missing from its list");
        }
        let mut quick_members = 0;
        for list in 0..QUICK_LISTS {
            let mut block = self.quick[list];
            let mut depth = 0;
            while block != 0 {
                if self.header(block) & FREE != 0
                    || self.size_of(block) / GRANULE != list
                    || self.is_live_at(block + HEADER)
                {
                    return Err("a quick-list block is free, live or in the wrong list");
                }
                depth += 1;
                quick_members += 1;
                if quick_members > cached {
                    return Err("quick lists hold more blocks than are cached");
                }
                block = self.read(block + HEADER);
            }
            if depth != self.quick_depth[list] as usize {
                return Err("quick-list depth counter is wrong");
            }
        }
        if quick_members != cached {
            return Err("a freed block is neither free nor in a quick list");
        }
        if used + free + slabs.blocks + GRANULE != self.end - self.start
            || self.stats.mapped != self.end - self.start
        {
            return Err("blocks do not cover the mapped range");
        }
        let mut listed = 0;
        for fl in 0..FL_COUNT {
            for sl in 0..SL_COUNT {
                let mut block = self.heads[fl][sl];
                let has_bit =
                    self.fl_bitmap & (1 << fl) != 0 && self.sl_bitmap[fl] & (1 << sl) != 0;
                if (block != 0) != has_bit {
                    return Err("list bitmaps disagree with the lists");
                }
                let mut prev = 0;
                while block != 0 {
                    if self.header(block) & FREE == 0 || mapping(self.size_of(block)) != (fl, sl) {
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
        let marked: usize = self
            .live
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum();
        if marked != self.stats.live_allocations {
            return Err("live bitmap marks more or fewer allocations than are live");
        }
        Ok(())
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
