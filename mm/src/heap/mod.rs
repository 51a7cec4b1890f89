//! The kernel heap: slab caches for small objects and quick lists for
//! recently freed small blocks, in front of a two-level segregated-fit
//! (TLSF) block store with boundary tags, over a memory range that can
//! grow at its end.
//!
//! An allocation is one of four cases:
//!
//! | case | requests | kept in |
//! |---|---|---|
//! | slab slot | up to 256 bytes, alignment up to 16 | `slab.rs`: 4 KiB pages of equal slots, which are TLSF blocks |
//! | quick-list block | a block size under 512 bytes freed recently | `quick.rs`: per-size LIFO lists of used TLSF blocks |
//! | page-cache block | a page-aligned request of whole pages (up to 16) freed recently | `free.rs`: per-page-count LIFO lists of used TLSF blocks |
//! | TLSF block | everything else, alignment up to 4096 | `tlsf.rs`: free lists found through two bitmaps |
//!
//! Page-aligned requests of a page or more are kept on the page grid
//! (`take_page_block`): whole pages, starting 8 bytes before a page.
//!
//! * O(1) `alloc` and `free` (a few bit scans; no list walks).
//! * Hardened: a bitmap of live allocation starts (`live.rs`, kept outside
//!   the heap) makes `free` of a foreign, interior or already-freed
//!   pointer an error that changes nothing (`free.rs`); optional red zones
//!   and poisoning (`checks.rs`); `verify()` checks every invariant
//!   (`verify.rs`). Resizing is in `resize.rs`.
//! * Grows through a [`Grow`] hook (the kernel maps more pages) up to a cap,
//!   and gives pages back: at its end (`release_tail`) and inside large
//!   free blocks (`release_inside`, in `free.rs`), remapped through the
//!   hook before reuse.
//!
//! See docs/heap.md for the algorithm, its bounds and measured figures.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::MmError;
use free::{PageCache, Released};
use live::{LiveBit, LiveMap};
use quick::{QuickLists, QUICK_LIMIT};
use slab::{Slabs, PAGE, PAGE_USABLE, SLAB_LIMIT};
use tlsf::{Tlsf, FREE_HEAD, GRANULE, HEADER, MIN_BLOCK, RANGE_OVERHEAD, WORD};

mod checks;
mod free;
mod live;
pub mod magazine;
mod quick;
mod resize;
mod slab;
mod stats;
mod tlsf;
mod verify;

pub use checks::{DebugChecks, DEBUG_OVERHEAD};
pub use stats::HeapStats;

/// Largest supported alignment: a page.
pub const MAX_ALIGN: usize = PAGE;
/// Growth happens in steps of at least this much.
const MIN_GROWTH: usize = 64 * 1024;
/// The heap gives pages back only when this much more than it keeps is
/// free at its end (so a free and an allocation of the same large block
/// do not unmap and map the same pages each time).
pub const RELEASE_STEP: usize = 256 * 1024;

/// Maps more memory directly after the heap's current end.
pub trait Grow {
    /// Makes `[current_end, current_end + bytes)` usable; `false` if it
    /// cannot. `bytes` is a multiple of 4096.
    fn grow(&mut self, current_end: usize, bytes: usize) -> bool;

    /// Makes `[start, start + bytes)`, pages inside the heap that
    /// [`Heap::release_inside`] gave back, usable again; `false` if it
    /// cannot (the default: a hook that cannot must not be paired with
    /// `release_inside`, or the heap can never reuse what it gave back).
    fn remap(&mut self, _start: usize, _bytes: usize) -> bool {
        false
    }

    /// Whether [`Grow::ungrow`] gives pages back (the default: no, so a
    /// growth is never undone).
    fn can_ungrow(&self) -> bool {
        false
    }

    /// Whether a [`Grow::grow`] of `bytes` that failed did so for lack of
    /// memory, which pages the heap gives back could make up for (the
    /// default: no; a hook whose refusals come from elsewhere, a cap or an
    /// injected failure, must say no).
    fn short_of_memory(&self, _bytes: usize) -> bool {
        false
    }

    /// Takes back `[start, start + bytes)`, pages the heap no longer
    /// touches: the end of a growth it undid (a request that grew the heap
    /// failed later, on a remap), or, when a growth found no memory, the
    /// interior of a free block given back so that the growth can use its
    /// memory (remapped through [`Grow::remap`] before reuse). Called only
    /// if [`Grow::can_ungrow`].
    fn ungrow(&mut self, _start: usize, _bytes: usize) {}
}

/// A heap that never grows.
pub struct NoGrow;

impl Grow for NoGrow {
    fn grow(&mut self, _: usize, _: usize) -> bool {
        false
    }
}

/// Words of side tables (kept outside the heap) a heap of `max` bytes
/// needs: the live map and the slab page table.
pub const fn bitmap_words(max: usize) -> usize {
    live::words_for(max) + slab::table_words(max)
}

/// Whether a block of `size` bytes (header included) for a payload
/// aligned to `align` is kept on the page grid: a page-aligned request of
/// at least a page.
fn is_page_grid(align: usize, size: usize) -> bool {
    align >= PAGE && size >= PAGE
}

/// The block size for `bytes` of payload aligned to `align`: rounded up
/// to whole pages on the page grid (see `is_page_grid`); `None` if absurd.
fn block_size_for_layout(bytes: usize, align: usize) -> Option<usize> {
    let size = Tlsf::block_size_for(bytes)?;
    if is_page_grid(align, size) {
        size.checked_next_multiple_of(PAGE)
    } else {
        Some(size)
    }
}

/// A live allocation `check_live` accepted: its payload address, its slab
/// class (`None`: the payload of a TLSF block) and its live bit.
#[derive(Clone, Copy)]
struct Live {
    payload: usize,
    class: Option<usize>,
    at: LiveBit,
}

/// The heap over `[start, end)`, growable to `start + max`.
pub struct Heap<'a, G: Grow> {
    /// Every byte of the heap, in blocks.
    tlsf: Tlsf,
    /// Small-object slabs; their pages are used blocks of `tlsf`.
    slabs: Slabs<'a>,
    /// Freed small blocks, still used for `tlsf`.
    quick: QuickLists,
    /// Freed page buffers, still used for `tlsf`.
    pages: PageCache,
    /// Pages inside free blocks given back (unmapped).
    released: Released,
    live: LiveMap<'a>,
    max: usize,
    grow: G,
    checks: DebugChecks,
    /// Counters; `free` here excludes `slab_free` (see `stats()`).
    stats: HeapStats,
    /// Set while the magazines try an allocation without growth
    /// (`magazine.rs`): growth waits until they have been drained.
    hold_growth: bool,
}

// SAFETY: the heap owns its memory (`new`'s contract) and every table it
// borrows; the raw pointer inside `tlsf` is never shared outside it, so
// moving the heap to another thread (behind the kernel's lock) moves all
// access.
unsafe impl<G: Grow + Send> Send for Heap<'_, G> {}

impl<'a, G: Grow> Heap<'a, G> {
    /// Side-table words needed for a heap of `max` bytes.
    pub const fn bitmap_words(max: usize) -> usize {
        bitmap_words(max)
    }

    /// Creates a heap over `[start, start + size)` that may grow to
    /// `start + max` through `grow`.
    ///
    /// # Safety
    /// `[start, start + size)` must be writable memory owned by the heap for
    /// as long as it exists, and so must every range `grow` reports as
    /// usable, all reachable through `start`'s provenance. `start` must be
    /// 16-aligned, `size` and `max` multiples of 4096 with
    /// `64 <= size <= max`, and `bitmaps` must hold [`bitmap_words`]`(max)`
    /// words.
    pub unsafe fn new(
        memory: NonNull<u8>,
        size: usize,
        max: usize,
        grow: G,
        bitmaps: &'a mut [u64],
        checks: DebugChecks,
    ) -> Result<Self, MmError> {
        let memory = memory.as_ptr();
        let start = memory.addr();
        if !start.is_multiple_of(GRANULE)
            || size < 64
            || size > max
            || !size.is_multiple_of(PAGE)
            || !max.is_multiple_of(PAGE)
        {
            return Err(MmError::InvalidArgument);
        }
        let bitmaps = bitmaps
            .get_mut(..bitmap_words(max))
            .ok_or(MmError::InvalidArgument)?;
        let (live, table) = bitmaps.split_at_mut(live::words_for(max));
        let slabs = Slabs::new(memory, max, table).ok_or(MmError::InvalidArgument)?;
        // SAFETY: the caller hands the range over (this function's
        // contract); it is 16-aligned and a multiple of 4096 of at least
        // 64 bytes, more than MIN_BLOCK + RANGE_OVERHEAD.
        let (tlsf, free) = unsafe { Tlsf::new(memory, size) };
        Ok(Self {
            tlsf,
            slabs,
            quick: QuickLists::new(),
            pages: PageCache::new(),
            released: Released::new(),
            live: LiveMap::new(live),
            max,
            grow,
            checks,
            stats: HeapStats {
                mapped: size,
                overhead: RANGE_OVERHEAD,
                free,
                ..HeapStats::default()
            },
            hold_growth: false,
        })
    }

    // --- allocation --------------------------------------------------------

    /// Allocates memory for `layout` (alignment up to [`MAX_ALIGN`]).
    // The most common case, a small request whose class has a recently
    // freed slot, is handled here, inline; the rest out of line, so that
    // the fast path does not pay for the registers the rest needs.
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        if layout.align() > GRANULE || self.checks.on() {
            return self.alloc_aligned_or_checked(layout);
        }
        if layout.size() > SLAB_LIMIT {
            return self.alloc_block(layout.size());
        }
        let class = slab::class_of(layout.size());
        match self.slabs.pop_recent(class) {
            Some(slot) => {
                self.stats.total_allocations += 1;
                Ok(self.hand_out_slot(slot, class))
            }
            None => self.alloc_slot_from_pages(class),
        }
    }

    /// Allocates `size` bytes, 16-byte aligned (the design's `kmalloc`).
    pub fn kmalloc(&mut self, size: usize) -> Result<NonNull<u8>, MmError> {
        match Layout::from_size_align(size, GRANULE) {
            Ok(layout) => self.alloc(layout),
            Err(_) => {
                self.stats.failed_allocations += 1;
                Err(MmError::HeapExhausted)
            }
        }
    }

    /// Counts the allocation attempt that gave `result` and passes it on.
    #[inline(always)]
    fn count(&mut self, result: Result<NonNull<u8>, MmError>) -> Result<NonNull<u8>, MmError> {
        match result {
            Ok(_) => self.stats.total_allocations += 1,
            Err(_) => self.stats.failed_allocations += 1,
        }
        result
    }

    /// The slab case without a recently freed slot (debug checks off).
    #[inline(never)]
    fn alloc_slot_from_pages(&mut self, class: usize) -> Result<NonNull<u8>, MmError> {
        let result = match self.slabs.alloc_from_pages(class) {
            Some(slot) => Ok(slot),
            None => self.slot_from_new_page(class),
        }
        .map(|slot| self.hand_out_slot(slot, class));
        self.count(result)
    }

    /// The quick-list and TLSF cases for a request too big for the slabs,
    /// with at most 16-byte alignment and debug checks off.
    #[inline(never)]
    fn alloc_block(&mut self, size: usize) -> Result<NonNull<u8>, MmError> {
        let result = match Tlsf::block_size_for(size) {
            Some(needed) if needed <= self.max => self.take_block(needed),
            _ => Err(MmError::HeapExhausted),
        };
        self.count(result)
    }

    /// Every case for a request aligned above 16 bytes or with debug
    /// checks on (which add a red zone and a size record to the request).
    #[inline(never)]
    fn alloc_aligned_or_checked(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        let result = match self.request_bytes(layout.size()) {
            Some(bytes) if bytes <= SLAB_LIMIT && layout.align() <= GRANULE => {
                self.take_slot(slab::class_of(bytes))
            }
            _ => self.take_block_for(layout),
        };
        if let (Ok(pointer), true) = (result, self.checks.on()) {
            self.arm_red_zone(pointer.as_ptr().addr(), layout.size());
        }
        self.count(result)
    }

    /// A live slot of `class`: one at hand, else from a new page.
    fn take_slot(&mut self, class: usize) -> Result<NonNull<u8>, MmError> {
        let slot = match self.slabs.slot_at_hand(class) {
            Some(slot) => slot,
            None => self.slot_from_new_page(class)?,
        };
        Ok(self.hand_out_slot(slot, class))
    }

    /// A live block for `layout` (debug overhead included), aligned as it
    /// asks.
    fn take_block_for(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        if layout.align() > MAX_ALIGN {
            return Err(MmError::InvalidArgument);
        }
        let needed = self
            .request_bytes(layout.size())
            .and_then(|bytes| block_size_for_layout(bytes, layout.align()))
            .filter(|&needed| needed <= self.max)
            .ok_or(MmError::HeapExhausted)?;
        if layout.align() <= GRANULE {
            return self.take_block(needed);
        }
        let (block, used) = if is_page_grid(layout.align(), needed) {
            let (block, used) = self.take_page_block(needed)?;
            self.tlsf.mark_page_buffer(block);
            (block, used)
        } else {
            self.take_aligned_block(needed, layout.align())?
        };
        Ok(self.hand_out_block(block, used))
    }

    /// A used block of `needed` bytes (a multiple of the page size) whose
    /// payload starts a page: a free block that already does, from the
    /// list `take` would use, if one of its first few is; else padded as
    /// any aligned block. Such blocks start 8 bytes before a page and end
    /// 8 bytes before one, so freed ones merge into free blocks that are
    /// again on the page grid and serve the next page-sized request
    /// without padding (no leading fragment, no O(1) miss).
    fn take_page_block(&mut self, needed: usize) -> Result<(usize, usize), MmError> {
        debug_assert!(needed.is_multiple_of(PAGE));
        if let Some(block) = self.pages.pop(&self.tlsf, needed) {
            self.stats.free -= needed;
            return Ok((block, needed));
        }
        if let Some(found) = self.take_aligned_page_block(needed) {
            return found;
        }
        // Cached blocks (spare slab pages, quick lists) may coalesce into
        // an aligned block of just the size: try again after giving them
        // back, before asking for a block with room to align in.
        self.trim();
        if let Some(found) = self.take_aligned_page_block(needed) {
            return found;
        }
        self.take_aligned_block(needed, PAGE)
    }

    /// A free block that holds `needed` bytes on the page grid (from its
    /// start, or after a leading free block), carved to size; `None` if
    /// the first blocks of the list `take` would use hold none.
    fn take_aligned_page_block(
        &mut self,
        needed: usize,
    ) -> Option<Result<(usize, usize), MmError>> {
        let block = self.tlsf.take_aligned(needed, PAGE)?;
        let start = Tlsf::aligned_start(block, PAGE);
        if !self.remap_for(block, start + needed + FREE_HEAD) {
            self.tlsf.put_back(block);
            return Some(Err(MmError::HeapExhausted));
        }
        let (block, used) = self.tlsf.carve_aligned(block, needed, PAGE);
        self.stats.free -= used;
        Some(Ok((block, used)))
    }

    /// Bytes an allocation of `size` occupies: `size`, plus the red zone
    /// and size record when debug checks are on; `None` if absurd.
    fn request_bytes(&self, size: usize) -> Option<usize> {
        if self.checks.on() {
            size.checked_add(DEBUG_OVERHEAD)
        } else {
            Some(size)
        }
    }

    /// A live block of `needed` bytes (a block size) with a 16-aligned
    /// payload: from its quick list, else carved from a free block.
    #[inline(always)]
    fn take_block(&mut self, needed: usize) -> Result<NonNull<u8>, MmError> {
        if needed < QUICK_LIMIT {
            if let Some(block) = self.quick.pop(&self.tlsf, needed) {
                self.stats.free -= needed;
                return Ok(self.hand_out_block(block, needed));
            }
        }
        let block = self.take_free(needed)?;
        let used = self.tlsf.carve(block, needed);
        self.stats.free -= used;
        Ok(self.hand_out_block(block, used))
    }

    /// A used block for `needed` bytes whose payload is `align`-aligned
    /// (above 16) and its size (at least `needed`).
    fn take_aligned_block(
        &mut self,
        needed: usize,
        align: usize,
    ) -> Result<(usize, usize), MmError> {
        debug_assert!(align > GRANULE);
        let block = self.take_free(needed + align + MIN_BLOCK)?;
        let (block, used) = self.tlsf.carve_aligned(block, needed, align);
        self.stats.free -= used;
        Ok((block, used))
    }

    /// A free block of at least `size` bytes, out of the free lists: in
    /// O(1) if a list is sure to fit, else the slow way. Pages of it given
    /// back that its first `size` bytes need are remapped first.
    #[inline(always)]
    fn take_free(&mut self, size: usize) -> Result<usize, MmError> {
        let block = match self.tlsf.take(size) {
            Some(block) => block,
            None => self.take_free_slowly(size)?,
        };
        if !self.remap_for(block, block + size + FREE_HEAD) {
            self.tlsf.put_back(block);
            return Err(MmError::HeapExhausted);
        }
        Ok(block)
    }

    /// `take_free` when no list is sure to fit: a bounded scan of the list
    /// that might, then the same after the caches are given back
    /// (coalescing), then after growing the heap.
    #[cold]
    #[inline(never)]
    fn take_free_slowly(&mut self, size: usize) -> Result<usize, MmError> {
        if let Some(block) = self.tlsf.take_scanning(size) {
            return Ok(block);
        }
        self.trim();
        if let Some(block) = self
            .tlsf
            .take(size)
            .or_else(|| self.tlsf.take_scanning(size))
        {
            return Ok(block);
        }
        let end_before = self.tlsf.end();
        self.extend(size)?;
        let block = self
            .tlsf
            .take(size)
            .or_else(|| self.tlsf.take_scanning(size))
            .ok_or(MmError::HeapExhausted)?;
        // Pages given back inside the block must be mapped again before it
        // is used; if that fails, the growth is undone as well, so that the
        // failed request leaves the heap as it found it.
        if !self.remap_for(block, block + size + FREE_HEAD) {
            self.tlsf.put_back(block);
            self.undo_growth(end_before);
            return Err(MmError::HeapExhausted);
        }
        Ok(block)
    }

    /// Shrinks the heap back to `end` after a growth the request that
    /// made it could not use, giving the pages to the hook.
    fn undo_growth(&mut self, end: usize) {
        if !self.grow.can_ungrow() || self.tlsf.end() <= end {
            return;
        }
        let cut = self.tlsf.retract(0, end, PAGE);
        if cut > 0 {
            self.stats.mapped -= cut;
            self.stats.free -= cut;
            self.grow.ungrow(self.tlsf.end(), cut);
        }
    }

    /// Grows the heap so that a free block of `size` bytes exists at its
    /// end (merged with the free block already there, if any).
    fn extend(&mut self, size: usize) -> Result<(), MmError> {
        let short = size.saturating_sub(self.tlsf.free_at_end()).max(MIN_BLOCK);
        let room = self.growth_left();
        if self.hold_growth {
            return Err(MmError::HeapExhausted);
        }
        let bytes = (short + MIN_BLOCK)
            .max(MIN_GROWTH)
            .next_multiple_of(PAGE)
            .min(room);
        if bytes < short {
            return Err(MmError::HeapExhausted);
        }
        if !self.grow.grow(self.tlsf.end(), bytes)
            && (self.give_back_for_growth(bytes) == 0 || !self.grow.grow(self.tlsf.end(), bytes))
        {
            return Err(MmError::HeapExhausted);
        }
        // SAFETY: the hook made the bytes after the end usable memory of
        // ours, reachable through the heap's provenance (`new`'s
        // contract); `bytes` is a multiple of 4096 of at least MIN_BLOCK.
        unsafe { self.tlsf.extend(bytes) };
        self.stats.mapped += bytes;
        self.stats.free += bytes;
        Ok(())
    }

    /// A fresh slab page for `class` and its first slot.
    #[inline(never)]
    fn slot_from_new_page(&mut self, class: usize) -> Result<usize, MmError> {
        let (block, size) = self.take_page_block(PAGE_USABLE + HEADER)?;
        self.stats.overhead += size;
        let slots = slab::slot_bytes(class);
        self.stats.overhead -= slots;
        self.stats.slab_free += slots;
        // SAFETY: the payload of a used block of ours, 4096-aligned and of
        // at least PAGE_USABLE bytes; it stays the slabs' until they hand
        // it back.
        Ok(unsafe { self.slabs.alloc_from_new(block + HEADER, class) })
    }

    /// Gives an empty page the slabs handed back (of `class`) to the TLSF
    /// lists.
    fn free_slab_page(&mut self, page: usize, class: usize) {
        let slots = slab::slot_bytes(class);
        self.stats.slab_free -= slots;
        let size = self.tlsf.free(page - HEADER);
        self.stats.overhead -= size - slots;
        self.stats.free += size;
    }

    /// Books the free slot `slot` of `class` as live and returns it.
    #[inline(always)]
    fn hand_out_slot(&mut self, slot: usize, class: usize) -> NonNull<u8> {
        let size = slab::slot_size(class);
        self.stats.slab_free -= size;
        self.book_live(slot, size)
    }

    /// Books the used block at `block` (of `size`) as live and returns its
    /// payload.
    fn hand_out_block(&mut self, block: usize, size: usize) -> NonNull<u8> {
        self.book_live(block + HEADER, size)
    }

    /// Books `size` bytes at `payload` as a live allocation.
    fn book_live(&mut self, payload: usize, size: usize) -> NonNull<u8> {
        self.stats.used += size;
        self.stats.peak_used = self.stats.peak_used.max(self.stats.used);
        self.stats.live_allocations += 1;
        self.live.set(self.live_bit(payload));
        // SAFETY: payload lies inside the heap, so it is not null.
        unsafe { NonNull::new_unchecked(self.tlsf.at(payload)) }
    }

    /// Where the live bit of an allocation at `payload` is.
    #[inline(always)]
    fn live_bit(&self, payload: usize) -> LiveBit {
        self.live.bit(payload - self.tlsf.start())
    }

    /// Whether a live allocation starts at `payload`.
    fn is_live(&self, payload: usize) -> bool {
        self.live.is_set(self.live_bit(payload))
    }

    /// Bytes the live allocation at `payload` of slab class `class` (`None`:
    /// a TLSF block) can hold.
    fn capacity(&self, payload: usize, class: Option<usize>) -> usize {
        match class {
            Some(class) => slab::slot_size(class),
            None => self.tlsf.size_of(payload - HEADER) - HEADER,
        }
    }

    // --- the rest of the API -----------------------------------------------

    /// Gives every cached block (recent slab slots, spare slab pages,
    /// quick lists, page cache) back to the TLSF lists, coalescing it. The heap does
    /// this by itself before it grows or fails a request.
    pub fn trim(&mut self) {
        while let Some((page, class)) = self.slabs.drain_recent() {
            self.free_slab_page(page, class);
        }
        while let Some((page, class)) = self.slabs.take_spare() {
            self.free_slab_page(page, class);
        }
        self.quick.drain(&mut self.tlsf);
        self.pages.drain(&mut self.tlsf);
    }

    /// Gives back whole pages at the heap's end once at least `keep` +
    /// `RELEASE_STEP` bytes there are free: the heap then ends `keep` bytes
    /// past its last used block (page-rounded), never below `floor` bytes.
    /// Returns the range `[start, end)` the caller must unmap (its pages
    /// are no longer the heap's); `None`: nothing to give back. O(1)
    /// unless it gives something back (then the caches are trimmed first,
    /// so what they hold at the end can go too).
    pub fn release_tail(&mut self, keep: usize, floor: usize) -> Option<(usize, usize)> {
        if self.tlsf.free_at_end() < keep + RELEASE_STEP {
            return None;
        }
        self.cut_tail(keep, floor)
    }

    /// Under memory pressure: gives back every whole free page at the
    /// heap's end, never below `floor` bytes, however few (no
    /// `RELEASE_STEP` hysteresis). The range as for
    /// [`Heap::release_tail`].
    pub fn release_tail_all(&mut self, floor: usize) -> Option<(usize, usize)> {
        self.cut_tail(0, floor)
    }

    /// `release_tail` once it is worth it.
    fn cut_tail(&mut self, keep: usize, floor: usize) -> Option<(usize, usize)> {
        self.trim();
        let end = self.tlsf.end();
        // Pages given back inside the last block stay so: the new end
        // keeps the page after them (the block's footer and the sentinel).
        let floor = match self.tlsf.last_block_if_free() {
            Some(block) => match self.released_end_in(block) {
                0 => self.tlsf.start() + floor,
                released => (self.tlsf.start() + floor).max(released + PAGE),
            },
            None => self.tlsf.start() + floor,
        };
        let cut = self.tlsf.retract(keep, floor, PAGE);
        if cut == 0 {
            return None;
        }
        self.stats.mapped -= cut;
        self.stats.free -= cut;
        Some((end - cut, end))
    }

    /// Counters.
    pub fn stats(&self) -> HeapStats {
        // Internally `free` counts the TLSF part only, so that the slab
        // paths update one counter fewer.
        HeapStats {
            free: self.stats.free + self.stats.slab_free,
            ..self.stats
        }
    }

    /// The largest free TLSF block's size.
    pub fn largest_free_block(&self) -> usize {
        self.tlsf.largest_free_block()
    }

    /// Bytes the heap may still grow by.
    pub fn growth_left(&self) -> usize {
        self.tlsf.start() + self.max - self.tlsf.end()
    }

    /// The managed range `[start, end)`.
    pub fn range(&self) -> (usize, usize) {
        (self.tlsf.start(), self.tlsf.end())
    }
}

#[cfg(test)]
mod tests;
