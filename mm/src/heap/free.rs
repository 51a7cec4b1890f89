//! Freeing: the check that a pointer is a live allocation (and, when it
//! is not, what kind of mistake it is), and the four cases that give it
//! back: a slab slot, a quick-list block, a page-cache block (a page
//! buffer: [`PageCache`]), a TLSF block.

use super::*;

impl<G: Grow> Heap<'_, G> {
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

    /// Checks that `pointer` is a live allocation of this heap.
    // Slot or block is decided by the page's class byte (a 1-byte-per-page
    // table that stays in cache), not by the live map, which often misses
    // the cache (docs/heap.md, "Profiling history"). The live bit is only
    // checked, and almost always passes.
    #[inline(always)]
    pub(super) fn check_live(&self, pointer: *mut u8) -> Result<Live, MmError> {
        let payload = pointer.addr();
        let (start, end) = self.range();
        if payload < start + HEADER || payload >= end || !payload.is_multiple_of(GRANULE) {
            return Err(MmError::InvalidFree);
        }
        let class = self.slabs.class_at(payload);
        let at = self.live.bit(payload - start);
        if !self.live.is_set(at) {
            return Err(self.bad_free(payload, class));
        }
        Ok(Live { payload, class, at })
    }

    /// Why `payload` (16-aligned, inside the heap, no live allocation
    /// starting there; `class`: its page's slab class) cannot be freed:
    /// `DoubleFree` if it points at a slot handed out before or into free
    /// memory (a free block, or one waiting in a quick list or the page
    /// cache: most likely a
    /// stale pointer), else `InvalidFree`. Error path only: for a pointer
    /// outside the slab pages it walks the blocks, O(number of blocks).
    #[cold]
    #[inline(never)]
    fn bad_free(&self, payload: usize, class: Option<usize>) -> MmError {
        let freed = match class {
            Some(class) => self.slabs.was_handed_out(payload, class),
            None => self.tlsf.block_around(payload).is_some_and(|block| {
                let start = block + HEADER;
                if start.is_multiple_of(PAGE) && self.slabs.contains(start) {
                    // The few bytes a slab page's block may have past the
                    // page (a tail too small to split off): slack.
                    return false;
                }
                // A used block outside the slab pages whose payload is not
                // live sits in a quick list or the page cache.
                self.tlsf.is_free(block) || !self.is_live(start)
            }),
        };
        if freed {
            MmError::DoubleFree
        } else {
            MmError::InvalidFree
        }
    }

    /// Frees an allocation `check_live` accepted.
    #[inline(always)]
    pub(super) fn free_live(&mut self, live: Live) {
        if self.checks.on() {
            self.free_with_checks(live.payload);
            return;
        }
        self.give_back(live);
    }

    /// `free_live` with debug checks on: the red zone of the allocation at
    /// `payload` (one `check_live` accepted) is checked and its memory
    /// poisoned before it is given back.
    // Out of line and whole, so that the release-build free paths make no
    // call they would have to save registers around; it takes the address
    // alone (one register) and looks the rest up again.
    #[cold]
    #[inline(never)]
    fn free_with_checks(&mut self, payload: usize) {
        let live = Live {
            payload,
            class: self.slabs.class_at(payload),
            at: self.live_bit(payload),
        };
        let capacity = self.capacity(live.payload, live.class);
        if !self.red_zone_intact(live.payload, capacity) {
            self.stats.red_zone_violations += 1;
        }
        self.poison(live.payload, capacity);
        self.give_back(live);
    }

    /// Gives the live allocation `live` back: a slot to its class's recent
    /// list (or its page), a block to its quick list (or the TLSF lists).
    #[inline(always)]
    pub(super) fn give_back(&mut self, live: Live) {
        let Live { payload, class, at } = live;
        let Some(class) = class else {
            return self.free_block(payload - HEADER, at);
        };
        self.unbook_slot(class, at);
        // SAFETY: a slot of our slabs that was live (`live` comes from
        // `check_live`), not used again here when it goes on the recent
        // list.
        if !unsafe { self.slabs.push_recent(payload, class) } {
            self.free_slot_to_page(payload, class);
        }
    }

    /// Frees the slab slot at `slot`, of `class`, just unbooked, whose
    /// recent list is full: back to its page, and an emptied page to the
    /// TLSF lists.
    #[inline(never)]
    fn free_slot_to_page(&mut self, slot: usize, class: usize) {
        // SAFETY: a slot of our slabs that was live (its live bit was set
        // and its page is a slab page); it is not used again here.
        if let Some((page, class)) = unsafe { self.slabs.free_to_page(slot, class) } {
            self.free_slab_page(page, class);
        }
    }

    /// Frees the live TLSF block at `block`: to its quick list or the
    /// page cache if it belongs there and there is room, else to the TLSF
    /// lists.
    #[inline(never)]
    fn free_block(&mut self, block: usize, at: LiveBit) {
        let size = self.tlsf.size_of(block);
        self.unbook(at);
        self.stats.used -= size;
        self.stats.free += size;
        // A block whose predecessor is free merges with it instead of
        // waiting in a quick list, where it would keep free space apart
        // (docs/heap.md, "FIFO queue": with the 2 KiB lists and without
        // this, the mixed-lifetimes efficiency fell from 97.1 % to 95.5 %).
        // Its own header says so; the successor's would be one more read.
        let quick = !self.tlsf.prev_is_free(block) && self.quick.push(&mut self.tlsf, block, size);
        if !quick && !self.pages.push(&mut self.tlsf, block, size) {
            self.tlsf.free(block);
        }
    }

    /// What freeing any live allocation does besides giving its memory
    /// back (`book_live` undone): its live bit and the live count.
    #[inline(always)]
    fn unbook(&mut self, at: LiveBit) {
        self.live.clear(at);
        self.stats.live_allocations -= 1;
    }

    /// `unbook` for a live slab slot of `class`, and its bytes counted
    /// free.
    #[inline(always)]
    fn unbook_slot(&mut self, class: usize, at: LiveBit) {
        let size = slab::slot_size(class);
        self.unbook(at);
        self.stats.used -= size;
        self.stats.slab_free += size;
    }
}

/// Page-cache blocks are at most this many pages long.
const PAGE_CACHE_PAGES: usize = 16;
/// Most bytes the page cache holds; beyond that frees coalesce.
const PAGE_CACHE_BYTES: usize = 256 * 1024;

/// Freed page buffers (blocks for page-aligned requests, marked so in
/// their header, payload on a page, whole pages long: see
/// `Heap::take_page_block`) of up to [`PAGE_CACHE_PAGES`] pages, kept
/// whole on a LIFO list per page count, so that the next page-aligned
/// request of that many pages takes one back in O(1) without splitting
/// or merging anything. As in the quick lists, a cached block stays used
/// for the TLSF part and is linked through its first payload word; only
/// the live map and the counters see it as free. `drain` gives them all
/// back (the heap trims before it grows or fails).
pub(super) struct PageCache {
    heads: [usize; PAGE_CACHE_PAGES],
    bytes: usize,
}

impl PageCache {
    /// An empty cache.
    pub(super) const fn new() -> Self {
        Self {
            heads: [0; PAGE_CACHE_PAGES],
            bytes: 0,
        }
    }

    /// The list for the used block at `block` of `size` bytes, if it is a
    /// page buffer on the page grid short enough to be cached.
    // The header bit first: it is one test of a word just read, and it
    // rules out almost every block freed.
    #[inline(always)]
    fn list(tlsf: &Tlsf, block: usize, size: usize) -> Option<usize> {
        if !tlsf.is_page_buffer(block) {
            return None;
        }
        let pages = size / PAGE;
        let on_grid = (block + HEADER).is_multiple_of(PAGE) && size.is_multiple_of(PAGE);
        let cached = on_grid && (1..=PAGE_CACHE_PAGES).contains(&pages);
        cached.then(|| pages - 1)
    }

    /// Caches the used block at `block` of `size` bytes; `false` (nothing
    /// done) if it is no page buffer of up to `PAGE_CACHE_PAGES` whole
    /// pages or the cache is full.
    #[inline(always)]
    pub(super) fn push(&mut self, tlsf: &mut Tlsf, block: usize, size: usize) -> bool {
        let Some(list) = Self::list(tlsf, block, size) else {
            return false;
        };
        if self.bytes + size > PAGE_CACHE_BYTES {
            return false;
        }
        tlsf.write(block + HEADER, self.heads[list]);
        self.heads[list] = block;
        self.bytes += size;
        true
    }

    /// A cached block of exactly `size` bytes (a multiple of the page
    /// size), if one is waiting.
    #[inline(always)]
    pub(super) fn pop(&mut self, tlsf: &Tlsf, size: usize) -> Option<usize> {
        let list = (size / PAGE).checked_sub(1)?;
        let block = *self.heads.get(list)?;
        if block == 0 {
            return None;
        }
        self.heads[list] = tlsf.read(block + HEADER);
        self.bytes -= size;
        Some(block)
    }

    /// Frees every cached block into `tlsf`, coalescing it.
    pub(super) fn drain(&mut self, tlsf: &mut Tlsf) {
        for head in &mut self.heads {
            while *head != 0 {
                let next = tlsf.read(*head + HEADER);
                tlsf.free(*head);
                *head = next;
            }
        }
        self.bytes = 0;
    }

    /// Checks every list: its blocks used in `tlsf`, page-grid blocks of
    /// the list's length, not live (`is_live`), as many bytes as counted;
    /// returns the number of blocks cached, or the first violation. Stops
    /// after `limit` blocks (a cycle).
    pub(super) fn verify(
        &self,
        tlsf: &Tlsf,
        is_live: impl Fn(usize) -> bool,
        limit: usize,
    ) -> Result<usize, &'static str> {
        let (mut members, mut bytes) = (0, 0);
        for (list, &head) in self.heads.iter().enumerate() {
            let mut block = head;
            while block != 0 {
                let size = tlsf.size_of(block);
                if tlsf.is_free(block)
                    || Self::list(tlsf, block, size) != Some(list)
                    || is_live(block + HEADER)
                {
                    return Err("a page-cache block is free, live or in the wrong list");
                }
                members += 1;
                bytes += size;
                if members > limit {
                    return Err("the page cache holds more blocks than are cached");
                }
                block = tlsf.read(block + HEADER);
            }
        }
        if bytes != self.bytes {
            return Err("page-cache byte count is wrong");
        }
        Ok(members)
    }
}

/// Most page ranges inside free blocks given back at once.
const RELEASED_RANGES: usize = 32;

/// The page ranges inside free blocks whose memory the heap gave back
/// (`Heap::release_inside`): unmapped by the kernel, so never read or
/// written until remapped. Each lies in the interior of one free block:
/// never in the page of its header and links (`FREE_HEAD` bytes) nor in
/// the page of its footer, which merging and splitting write. Merging
/// keeps that true (the interior only grows); every path that hands out
/// or writes into free memory first remaps what it needs
/// (`Heap::remap_for`). Unordered, disjoint, never adjacent (adjacent
/// ones are merged).
pub(super) struct Released {
    ranges: [(usize, usize); RELEASED_RANGES],
    count: usize,
    /// Bytes in all ranges.
    bytes: usize,
}

impl Released {
    /// No range given back.
    pub(super) const fn new() -> Self {
        Self {
            ranges: [(0, 0); RELEASED_RANGES],
            count: 0,
            bytes: 0,
        }
    }

    /// Whether nothing is given back (the hot paths' only check).
    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes given back.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ranges given back.
    pub(super) fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges[..self.count]
    }

    /// The first part of `[low, high)` no range covers, if any.
    fn first_gap(&self, low: usize, high: usize) -> Option<(usize, usize)> {
        let mut cursor = low;
        'advance: while cursor < high {
            for &(start, end) in self.ranges() {
                if start <= cursor && cursor < end {
                    cursor = end;
                    continue 'advance;
                }
            }
            let next = self
                .ranges()
                .iter()
                .map(|&(start, _)| start)
                .filter(|&start| start > cursor)
                .min()
                .unwrap_or(high);
            return Some((cursor, next.min(high)));
        }
        None
    }

    /// Records `[start, end)` (covered by no range), merged with the
    /// ranges it touches; `false` (nothing done) if the table is full.
    fn add(&mut self, start: usize, end: usize) -> bool {
        let (mut start, mut end) = (start, end);
        let mut index = 0;
        while index < self.count {
            let (low, high) = self.ranges[index];
            if high == start || low == end {
                (start, end) = (start.min(low), end.max(high));
                self.remove(index);
            } else {
                index += 1;
            }
        }
        if self.count == RELEASED_RANGES {
            // Full, so nothing was merged: nothing changed.
            return false;
        }
        self.ranges[self.count] = (start, end);
        self.count += 1;
        self.bytes = self.ranges().iter().map(|&(low, high)| high - low).sum();
        true
    }

    /// Drops range `index` (order is not kept).
    fn remove(&mut self, index: usize) {
        self.count -= 1;
        self.ranges[index] = self.ranges[self.count];
        self.bytes = self.ranges().iter().map(|&(low, high)| high - low).sum();
    }

    /// A range with pages in `[low, high)`: its index and those pages.
    fn first_in(&self, low: usize, high: usize) -> Option<(usize, usize, usize)> {
        self.ranges()
            .iter()
            .enumerate()
            .find(|&(_, &(start, end))| start < high && end > low)
            .map(|(index, &(start, end))| (index, start.max(low), end.min(high)))
    }

    /// Takes `[low, high)`, part of range `index`, out of it (what is left
    /// of it above `high` stays; nothing is ever left below `low`).
    fn cut(&mut self, index: usize, low: usize, high: usize) {
        let (start, end) = self.ranges[index];
        debug_assert!(start >= low, "a range given back straddles a block start");
        if end > high {
            self.ranges[index].0 = high;
            self.bytes = self.ranges().iter().map(|&(low, high)| high - low).sum();
        } else {
            self.remove(index);
        }
    }
}

impl<G: Grow> Heap<'_, G> {
    /// Gives back whole pages inside the free block the latest free made,
    /// if that free was of a block of at least `min` bytes (a large free:
    /// medium blocks freed and reallocated often do not cost a remap each
    /// time) and the free block's interior (all but the pages of its
    /// header and footer) is at least `min` bytes too, as long as at least `keep` free bytes stay
    /// mapped (so that a heap with little free memory does not give back
    /// what it would soon have to remap): returns one page range
    /// `[start, end)` the caller must unmap and hand back to the frame
    /// allocator, and never touch again (the heap remaps it through
    /// [`Grow::remap`] before reuse); `None` when nothing (more) is to be
    /// given back. Call it after a free until it returns `None`; each call
    /// is O(ranges given back, at most 32).
    pub fn release_inside(&mut self, min: usize, keep: usize) -> Option<(usize, usize)> {
        let (block, own) = self.tlsf.last_freed()?;
        let size = self.tlsf.size_of(block);
        let low = (block + FREE_HEAD).next_multiple_of(PAGE);
        let high = (block + size - WORD) / PAGE * PAGE;
        let room = self.stats.free.saturating_sub(keep) / PAGE * PAGE;
        let large = own >= min && high >= low.saturating_add(min.max(PAGE));
        let gap = if large && room > 0 {
            self.released
                .first_gap(low, high)
                .map(|(start, end)| (start, end.min(start + room)))
        } else {
            None
        };
        let Some((start, end)) = gap.filter(|&(start, end)| self.released.add(start, end)) else {
            self.tlsf.forget_last_freed();
            return None;
        };
        self.stats.mapped -= end - start;
        self.stats.free -= end - start;
        Some((start, end))
    }

    /// Under memory pressure: gives back the still-mapped whole pages
    /// inside the first free block (by address) whose interior has at
    /// least `min` bytes of them, like [`Heap::release_inside`] but for any
    /// free block and keeping nothing mapped. One range per call, the
    /// caller unmaps it; `None` when no block has such pages (or the
    /// record of given-back ranges is full). O(blocks) per call.
    pub fn release_any_inside(&mut self, min: usize) -> Option<(usize, usize)> {
        self.release_any_inside_below(min, usize::MAX)
    }

    /// [`Heap::release_any_inside`] for the free blocks that end at or
    /// below `limit` only.
    fn release_any_inside_below(&mut self, min: usize, limit: usize) -> Option<(usize, usize)> {
        let released = &self.released;
        let (start, end) = self
            .tlsf
            .blocks()
            .filter(|&(block, size, free)| free && block + size <= limit)
            .find_map(|(block, size, _)| {
                let low = (block + FREE_HEAD).next_multiple_of(PAGE);
                let high = (block + size - WORD) / PAGE * PAGE;
                if high < low.saturating_add(min.max(PAGE)) {
                    return None;
                }
                released
                    .first_gap(low, high)
                    .filter(|&(start, end)| end - start >= min.max(PAGE))
            })?;
        if !self.released.add(start, end) {
            return None;
        }
        self.stats.mapped -= end - start;
        self.stats.free -= end - start;
        Some((start, end))
    }

    /// Makes every page given back in `[low, high)` usable again before a
    /// path writes there (`low`: the start of the free block it uses;
    /// `high`: one past the last byte it writes); `false` if the hook
    /// could not remap some (what it did remap stays so).
    #[inline(always)]
    pub(super) fn remap_for(&mut self, low: usize, high: usize) -> bool {
        self.released.is_empty() || self.remap_slowly(low, high)
    }

    /// `remap_for` when something was given back.
    #[cold]
    #[inline(never)]
    fn remap_slowly(&mut self, low: usize, high: usize) -> bool {
        let high = high.next_multiple_of(PAGE);
        let mut remapped = arrayvec::ArrayVec::<(usize, usize), RELEASED_RANGES>::new();
        while let Some((index, start, end)) = self.released.first_in(low, high) {
            if !self.grow.remap(start, end - start) {
                self.unremap(&remapped);
                return false;
            }
            self.released.cut(index, low, end);
            self.stats.mapped += end - start;
            self.stats.free += end - start;
            // At most RELEASED_RANGES ranges exist, so this never overflows.
            let _ = remapped.try_push((start, end));
        }
        true
    }

    /// After a remap failed part-way: the ranges this request already
    /// mapped again are given back once more (if the hook can take pages
    /// back), so that the failed request leaves the heap as it found it.
    fn unremap(&mut self, ranges: &[(usize, usize)]) {
        if !self.grow.can_ungrow() {
            return;
        }
        for &(start, end) in ranges {
            if self.released.add(start, end) {
                self.stats.mapped -= end - start;
                self.stats.free -= end - start;
                self.grow.ungrow(start, end - start);
            }
        }
    }

    /// Before failing a growth of `bytes` the hook could not back: the
    /// still-mapped
    /// whole pages inside every free block below the heap's last free
    /// block (which the growth extends) go to the hook ([`Grow::ungrow`]),
    /// so that it can back the growth with their memory. The heap keeps no
    /// lock of its own, so this needs nothing its caller might hold.
    /// Returns the bytes given; 0 if the hook cannot take pages back or
    /// was not short of memory ([`Grow::short_of_memory`]).
    /// O(blocks) per range given.
    pub(super) fn give_back_for_growth(&mut self, bytes: usize) -> usize {
        if !self.grow.can_ungrow() || !self.grow.short_of_memory(bytes) {
            return 0;
        }
        let limit = self.tlsf.end() - self.tlsf.free_at_end();
        let mut given = 0;
        while let Some((start, end)) = self.release_any_inside_below(PAGE, limit) {
            self.grow.ungrow(start, end - start);
            given += end - start;
        }
        given
    }

    /// Maps given-back pages again, whole ranges in address order, until
    /// at least `bytes` are back or none are given back: after memory
    /// pressure, so that the next requests find free mapped memory instead
    /// of remapping page by page. Stops at the first range the hook
    /// cannot map (nothing of it changes). Returns the bytes mapped again.
    /// O(ranges given back, at most 32) per range.
    pub fn remap_released(&mut self, bytes: usize) -> usize {
        let mut remapped = 0;
        while remapped < bytes {
            let Some((index, &(start, end))) = self
                .released
                .ranges()
                .iter()
                .enumerate()
                .min_by_key(|&(_, &(start, _))| start)
            else {
                break;
            };
            if !self.grow.remap(start, end - start) {
                break;
            }
            self.released.remove(index);
            self.stats.mapped += end - start;
            self.stats.free += end - start;
            remapped += end - start;
        }
        remapped
    }

    /// The highest end of a range given back inside the free block at
    /// `block` (0: none).
    pub(super) fn released_end_in(&self, block: usize) -> usize {
        let end = block + self.tlsf.size_of(block);
        self.released
            .ranges()
            .iter()
            .filter(|&&(start, _)| start > block && start < end)
            .map(|&(_, high)| high)
            .max()
            .unwrap_or(0)
    }
}
