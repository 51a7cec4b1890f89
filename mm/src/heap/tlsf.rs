//! The TLSF heap. Memory layout of the managed range `[start, end)`:
//!
//! ```text
//! start        start+8                                     end-8     end
//!   | pad (8) | block | block | ... | block | sentinel header (size 0) |
//! block at h (h = 8 mod 16):
//!   h+0   header: size (multiple of 16, >= 32) | FREE | PREV_FREE
//!   h+8   payload (16-aligned) ...            -- used block
//!   h+8   next free block, h+16 previous free block,
//!   h+size-8 footer = h                        -- free block
//! ```
//!
//! Free blocks sit in segregated lists indexed by (first level = power of
//! two, second level = 16 linear steps within it); two bitmaps find the
//! smallest non-empty list that fits in O(1). Requests of up to 256 bytes
//! go to the `slab` caches, whose pages are used blocks of this heap.
//! Here: the layout, allocation and block surgery. The free lists live in
//! `tlsf/lists.rs`, freeing and the bad-pointer checks in `tlsf/free.rs`,
//! resizing and red zones in `tlsf/resize.rs`, `verify` in
//! `tlsf/verify.rs`.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use super::slab::{self, Slabs, PAGE, PAGE_USABLE, SLAB_LIMIT};
use crate::MmError;

mod free;
mod lists;
mod resize;
mod verify;

/// Largest supported alignment: a page.
pub const MAX_ALIGN: usize = PAGE;

const GRANULE: usize = 16;
const HEADER: usize = 8;
const MIN_BLOCK: usize = 32;
const FREE: usize = 1;
const PREV_FREE: usize = 2;
const FLAGS: usize = FREE | PREV_FREE;

/// Sizes below this are binned linearly, 16 bytes apart (first level 0).
const SMALL_LIMIT: usize = 256;
const SL_BITS: u32 = 4;
const SL_COUNT: usize = 1 << SL_BITS;
const FL_COUNT: usize = 28;
/// Byte poisoned into freed memory when debug checks are on.
const POISON: u8 = 0xDD;
/// With debug checks on, this many bytes after each allocation hold
/// [`RED`]; `free` checks them to catch buffer overflows. The requested
/// size is recorded in the block's last word.
const RED_ZONE: usize = 16;
const RED: u8 = 0xFB;
/// Extra bytes each allocation costs with debug checks on.
pub const DEBUG_OVERHEAD: usize = RED_ZONE + 8;
/// Growth happens in steps of at least this much.
const MIN_GROWTH: usize = 64 * 1024;
/// Freed blocks smaller than this go to a per-size quick list (LIFO, not
/// coalesced) for O(1) reuse; one list per 16-byte size step.
const QUICK_LIMIT: usize = 512;
const QUICK_LISTS: usize = QUICK_LIMIT / GRANULE;
/// Most blocks kept in one quick list; beyond that frees coalesce.
const QUICK_DEPTH: u16 = 64;

/// Maps more memory directly after the heap's current end.
pub trait Grow {
    /// Makes `[current_end, current_end + bytes)` usable; `false` if it
    /// cannot. `bytes` is a multiple of 4096.
    fn grow(&mut self, current_end: usize, bytes: usize) -> bool;
}

/// A heap that never grows.
pub struct NoGrow;

impl Grow for NoGrow {
    fn grow(&mut self, _: usize, _: usize) -> bool {
        false
    }
}

/// Counters of the heap.
// The fields are in memory in this order (repr(C)) so that the counters
// the small-object fast paths update (used, slab_free, live_allocations,
// total_allocations) have no updated neighbour: the compiler merged
// neighbouring updates (live_allocations += 1; total_allocations += 1)
// into one 16-byte vector load, add and store, and that load cannot take
// its value from the 8-byte store the previous `free` left in the store
// buffer: a store forwarding stall on every small allocation after a free
// (seen in a profile of the ~4,000-live mix; the kernel, built without
// SSE, is not affected). Cold counters sit between the hot ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations (block headers and rounding included;
    /// a slab object counts its slot size).
    pub used: usize,
    /// Bytes of the managed range (what is mapped).
    pub mapped: usize,
    /// Of `free`, the bytes in free slab slots (reusable only by requests
    /// of the same size class).
    pub slab_free: usize,
    /// Bytes neither used nor free: slab page headers and slack, the
    /// heap's 16 bytes of padding and end marker.
    /// `used + free + overhead == mapped`.
    pub overhead: usize,
    /// Blocks currently allocated.
    pub live_allocations: usize,
    /// Failed allocations.
    pub failed_allocations: u64,
    /// Allocations ever made.
    pub total_allocations: u64,
    /// Frees that found the red zone after the block overwritten (debug
    /// checks only): buffer overflows.
    pub red_zone_violations: u64,
    /// Highest `used` ever seen.
    pub peak_used: usize,
    /// Bytes free: free blocks plus free slots in slab pages.
    pub free: usize,
}

/// Where one granule's live bit is: its word in `Heap::live` and the
/// bit's mask.
#[derive(Clone, Copy)]
struct MarkSlot {
    word: usize,
    bit: u64,
}

/// A pointer `check_live` accepted: the payload address, the slab class
/// of a slot (`None`: the payload of a TLSF block) and its live bit.
#[derive(Clone, Copy)]
struct Live {
    payload: usize,
    class: Option<usize>,
    at: MarkSlot,
}

/// The heap over `[start, end)`, growable to `start + max`.
pub struct Heap<'a, G: Grow> {
    /// The heap's memory as handed to `new`: every pointer the heap makes
    /// from an address is derived from this one (`at`), so it keeps its
    /// provenance (and host tests could run under Miri).
    memory: *mut u8,
    start: usize,
    end: usize,
    max: usize,
    grow: G,
    fl_bitmap: u32,
    sl_bitmap: [u16; FL_COUNT],
    heads: [[usize; SL_COUNT]; FL_COUNT],
    /// One bit per 16-byte granule, set exactly where a live allocation
    /// (block payload or slab slot) starts: `free` accepts a pointer only
    /// if its bit is set. Whether a refused pointer is a double free or a
    /// wild one is worked out on the error path (`bad_free`), so the
    /// bitmap stays half the size a freed-state bit would make it (it is
    /// read or written on every operation, and on a large heap it misses
    /// the cache).
    live: &'a mut [u64],
    /// Quick lists: freed small blocks, still marked used for the TLSF
    /// part, linked through their first payload word.
    quick: [usize; QUICK_LISTS],
    quick_depth: [u16; QUICK_LISTS],
    /// Small-object slabs; their pages are blocks of this heap.
    slabs: Slabs<'a>,
    checks: DebugChecks,
    /// Counters; `free` here excludes `slab_free` (see `stats()`).
    stats: HeapStats,
}

// SAFETY: the heap owns its memory (`new`'s contract) and every table it
// borrows; the raw `memory` pointer is never shared outside it, so moving
// the heap to another thread (behind the kernel's lock) moves all access.
unsafe impl<G: Grow + Send> Send for Heap<'_, G> {}

/// Whether the heap checks its users: red zones after every block
/// (checked on free and realloc) and freed memory poisoned with 0xDD. The
/// kernel turns them on in debug builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugChecks {
    /// The release paths: no red zones, no poisoning.
    Off,
    /// Red zones and poisoning.
    On,
}

impl DebugChecks {
    /// `On` in builds with debug assertions, else `Off`.
    pub const fn for_this_build() -> Self {
        if cfg!(debug_assertions) {
            DebugChecks::On
        } else {
            DebugChecks::Off
        }
    }

    #[inline]
    pub(super) const fn on(self) -> bool {
        matches!(self, DebugChecks::On)
    }
}

/// Words of side tables (kept outside the heap) a heap of `max` bytes
/// needs: the live bitmap and the slab page table.
pub const fn bitmap_words(max: usize) -> usize {
    granule_words(max) + slab::table_words(max)
}

const fn granule_words(max: usize) -> usize {
    (max / GRANULE).div_ceil(64)
}

impl<'a, G: Grow> Heap<'a, G> {
    /// Bitmap words needed for a heap of `max` bytes.
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
        let words = granule_words(max);
        let bitmaps = bitmaps
            .get_mut(..bitmap_words(max))
            .ok_or(MmError::InvalidArgument)?;
        bitmaps.fill(0);
        let (live, table) = bitmaps.split_at_mut(words);
        let slabs = Slabs::new(memory, max, table).ok_or(MmError::InvalidArgument)?;
        let mut heap = Self {
            memory,
            start,
            end: start + size,
            max,
            grow,
            fl_bitmap: 0,
            sl_bitmap: [0; FL_COUNT],
            heads: [[0; SL_COUNT]; FL_COUNT],
            live,
            quick: [0; QUICK_LISTS],
            quick_depth: [0; QUICK_LISTS],
            slabs,
            checks,
            stats: HeapStats {
                mapped: size,
                overhead: GRANULE,
                ..HeapStats::default()
            },
        };
        // One free block from start+8 to the sentinel at end-8.
        let first = start + HEADER;
        let block_size = size - GRANULE;
        heap.set_header(first, block_size | FREE);
        heap.set_header(heap.end - HEADER, PREV_FREE);
        heap.set_footer(first, block_size);
        heap.insert(first, block_size);
        heap.stats.free = block_size;
        Ok(heap)
    }

    // --- raw word access --------------------------------------------------

    /// A pointer to `address` of the heap's memory, with its provenance.
    /// Soundness rests on the module's own bookkeeping (the heap only ever
    /// computes addresses inside `[start, end)` from its headers); the
    /// accessors below check that in debug builds.
    #[inline]
    pub(super) fn at(&self, address: usize) -> *mut u8 {
        self.memory.with_addr(address)
    }

    fn read(&self, address: usize) -> usize {
        debug_assert!(address >= self.start && address + 8 <= self.end);
        // SAFETY: callers only pass addresses of header, footer and link
        // words inside `[start, end)`, which `new`'s contract makes
        // writable memory owned by the heap, reached through `memory`;
        // they are 8-aligned.
        unsafe { ptr::read(self.at(address).cast::<usize>()) }
    }

    fn write(&mut self, address: usize, value: usize) {
        debug_assert!(address >= self.start && address + 8 <= self.end);
        // SAFETY: as in `read`.
        unsafe { ptr::write(self.at(address).cast::<usize>(), value) }
    }

    fn header(&self, block: usize) -> usize {
        self.read(block)
    }

    fn set_header(&mut self, block: usize, value: usize) {
        self.write(block, value);
    }

    fn size_of(&self, block: usize) -> usize {
        self.header(block) & !FLAGS
    }

    fn set_footer(&mut self, block: usize, size: usize) {
        self.write(block + size - HEADER, block);
    }

    fn next_free(&self, block: usize) -> usize {
        self.read(block + 8)
    }

    fn prev_free(&self, block: usize) -> usize {
        self.read(block + 16)
    }

    // --- live bitmap -------------------------------------------------------

    /// Where the live bit of the allocation at `payload` is kept.
    fn mark_slot(&self, payload: usize) -> MarkSlot {
        let granule = (payload - self.start) / GRANULE;
        MarkSlot {
            word: granule / 64,
            bit: 1 << (granule % 64),
        }
    }

    /// Whether the bit at `at` is set.
    fn is_marked(&self, at: MarkSlot) -> bool {
        self.live[at.word] & at.bit != 0
    }

    /// Whether a live allocation starts at `payload`.
    fn is_live_at(&self, payload: usize) -> bool {
        self.is_marked(self.mark_slot(payload))
    }

    fn set_live(&mut self, at: MarkSlot) {
        self.live[at.word] |= at.bit;
    }

    fn clear_live(&mut self, at: MarkSlot) {
        self.live[at.word] &= !at.bit;
    }

    // --- block surgery -----------------------------------------------------

    /// Marks `block` (of `size`) used, splitting off a free tail beyond
    /// `needed` when it is big enough to be a block.
    fn use_block(&mut self, block: usize, size: usize, needed: usize) -> usize {
        let prev_flag = self.header(block) & PREV_FREE;
        let used = if size - needed >= MIN_BLOCK {
            let tail = block + needed;
            let tail_size = size - needed;
            self.set_header(tail, tail_size | FREE);
            self.set_footer(tail, tail_size);
            self.insert(tail, tail_size);
            // The block after the tail already has PREV_FREE set (the
            // whole block was free).
            needed
        } else {
            let next = block + size;
            let flags = self.header(next) & !PREV_FREE;
            self.set_header(next, flags);
            size
        };
        self.set_header(block, used | prev_flag);
        used
    }

    /// Returns a block to the free lists, merging it with free neighbours.
    fn release(&mut self, block: usize) {
        let mut block = block;
        let mut size = self.size_of(block);
        let next = block + size;
        let next_header = self.header(next);
        if next_header & FREE != 0 {
            let next_size = next_header & !FLAGS;
            self.remove(next, next_size);
            size += next_size;
        }
        if self.header(block) & PREV_FREE != 0 {
            let prev = self.read(block - HEADER);
            let prev_size = self.size_of(prev);
            self.remove(prev, prev_size);
            block = prev;
            size += prev_size;
        }
        let prev_flag = self.header(block) & PREV_FREE;
        self.set_header(block, size | FREE | prev_flag);
        self.set_footer(block, size);
        let after = block + size;
        let after_header = self.header(after);
        self.set_header(after, after_header | PREV_FREE);
        self.insert(block, size);
    }

    /// Grows the heap so that a free block of `size` bytes exists at its
    /// end (merged with the free block already there, if any).
    fn extend(&mut self, size: usize) -> bool {
        let sentinel = self.end - HEADER;
        let tail_free = if self.header(sentinel) & PREV_FREE != 0 {
            self.size_of(self.read(sentinel - HEADER))
        } else {
            0
        };
        let short = size.saturating_sub(tail_free).max(MIN_BLOCK);
        let room = self.start + self.max - self.end;
        let bytes = (short + MIN_BLOCK)
            .max(MIN_GROWTH)
            .next_multiple_of(PAGE)
            .min(room);
        if bytes < short || !self.grow.grow(self.end, bytes) {
            return false;
        }
        // The old sentinel becomes the header of the new block.
        let block = self.end - HEADER;
        let prev_flag = self.header(block) & PREV_FREE;
        self.end += bytes;
        self.set_header(block, bytes | prev_flag);
        self.set_header(self.end - HEADER, 0);
        self.stats.mapped += bytes;
        self.stats.free += bytes;
        self.release(block);
        true
    }

    // --- public API --------------------------------------------------------

    /// Block size needed for `bytes` of payload, or `None` if absurd.
    fn block_size_for(bytes: usize) -> Option<usize> {
        let size = bytes.checked_add(HEADER + GRANULE - 1)? & !(GRANULE - 1);
        Some(size.max(MIN_BLOCK))
    }

    /// Allocates memory for `layout` (alignment up to [`MAX_ALIGN`]).
    // The most common case, a small request whose class has a recently
    // freed slot, is handled here, inline; the rest out of line, so that
    // the fast path does not pay for the registers the rest needs.
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        if layout.align() > GRANULE || self.checks.on() {
            return self.alloc_general(layout);
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
            None => self.alloc_from_slab_pages(class),
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

    /// `alloc` of a request too big for the slabs, with at most 16-byte
    /// alignment and debug checks off: the common TLSF request, without
    /// the layers the other cases need.
    #[inline(never)]
    fn alloc_block(&mut self, size: usize) -> Result<NonNull<u8>, MmError> {
        let result = match Self::block_size_for(size) {
            Some(needed) if needed <= self.max => self.take_unaligned(needed),
            _ => Err(MmError::HeapExhausted),
        };
        self.count(result)
    }

    /// `alloc` of a small request (debug checks off) whose class has no
    /// recently freed slot.
    #[inline(never)]
    fn alloc_from_slab_pages(&mut self, class: usize) -> Result<NonNull<u8>, MmError> {
        let result = self
            .slot_from_pages(class)
            .map(|slot| self.hand_out_slot(slot, class));
        self.count(result)
    }

    #[inline(never)]
    fn alloc_general(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        let result = match self.request_bytes(layout.size()) {
            Some(bytes) if bytes <= SLAB_LIMIT && layout.align() <= GRANULE => {
                self.alloc_small(bytes)
            }
            _ => self.alloc_inner(layout),
        };
        if let (Ok(pointer), true) = (result, self.checks.on()) {
            self.arm_red_zone(pointer.as_ptr() as usize, layout.size());
        }
        self.count(result)
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

    /// Block size for a request of `bytes`, red zone and size record
    /// included when debug checks are on.
    fn block_size_for_request(&self, bytes: usize) -> Option<usize> {
        Self::block_size_for(self.request_bytes(bytes)?)
    }

    fn alloc_inner(&mut self, layout: Layout) -> Result<NonNull<u8>, MmError> {
        if layout.align() > MAX_ALIGN {
            return Err(MmError::InvalidArgument);
        }
        let needed = self
            .block_size_for_request(layout.size())
            .ok_or(MmError::HeapExhausted)?;
        if needed > self.max {
            return Err(MmError::HeapExhausted);
        }
        if layout.align() <= GRANULE {
            return self.take_unaligned(needed);
        }
        let (block, used) = self.take_aligned(needed, layout.align())?;
        Ok(self.hand_out(block, used))
    }

    /// A live block of at least `needed` bytes (a block size) with a
    /// 16-aligned payload: a cached block of exactly that size, else one
    /// from the free lists (growing the heap if it must).
    #[inline(always)]
    fn take_unaligned(&mut self, needed: usize) -> Result<NonNull<u8>, MmError> {
        if needed < QUICK_LIMIT {
            if let Some(block) = self.pop_quick(needed) {
                return Ok(self.hand_out(block, needed));
            }
        }
        let block = self.take_free(needed)?;
        let size = self.size_of(block);
        let used = self.use_block(block, size, needed);
        self.stats.free -= used;
        Ok(self.hand_out(block, used))
    }

    /// A free block of at least `size` bytes, removed from its list:
    /// through the bitmaps, else by the slower ways (growing the heap if
    /// it must).
    #[inline(always)]
    fn take_free(&mut self, size: usize) -> Result<usize, MmError> {
        match self.take_from_lists(size) {
            Some(block) => Ok(block),
            None => self.take_fitting_slowly(size),
        }
    }

    /// Takes a slab slot for a request of `bytes` (at most `SLAB_LIMIT`).
    fn alloc_small(&mut self, bytes: usize) -> Result<NonNull<u8>, MmError> {
        let class = slab::class_of(bytes);
        let slot = match self.slabs.slot_at_hand(class) {
            Some(slot) => slot,
            None => self.slot_from_new_page(class)?,
        };
        Ok(self.hand_out_slot(slot, class))
    }

    /// A free slot of `class` from the class's pages, or from a new page.
    #[inline(always)]
    fn slot_from_pages(&mut self, class: usize) -> Result<usize, MmError> {
        match self.slabs.alloc_from_pages(class) {
            Some(slot) => Ok(slot),
            None => self.slot_from_new_page(class),
        }
    }

    /// A new slab page for `class`, and its first slot.
    #[inline(never)]
    fn slot_from_new_page(&mut self, class: usize) -> Result<usize, MmError> {
        let page = self.take_slab_page()?;
        let slots = slab::slot_bytes(class);
        self.stats.overhead -= slots;
        self.stats.slab_free += slots;
        // SAFETY: `take_slab_page` returned a 4096-aligned payload of at
        // least PAGE_USABLE bytes inside a used block of ours; it stays the
        // slabs' until they hand it back.
        Ok(unsafe { self.slabs.alloc_from_new(page, class) })
    }

    /// Books the free slot `slot` of `class` as live and returns it.
    #[inline(always)]
    fn hand_out_slot(&mut self, slot: usize, class: usize) -> NonNull<u8> {
        let size = slab::slot_size(class);
        self.stats.slab_free -= size;
        self.book_live(slot, size)
    }

    /// A used block whose payload is a fresh 4096-aligned slab page.
    fn take_slab_page(&mut self) -> Result<usize, MmError> {
        let needed = PAGE_USABLE + HEADER;
        let (block, size) = self.take_aligned(needed, PAGE)?;
        self.stats.overhead += size;
        Ok(block + HEADER)
    }

    /// Gives an empty page the slabs handed back (of `class`) to the free
    /// lists.
    fn release_slab_page(&mut self, page: usize, class: usize) {
        let slots = slab::slot_bytes(class);
        self.stats.slab_free -= slots;
        let block = page - HEADER;
        let size = self.size_of(block);
        self.stats.overhead -= size - slots;
        self.stats.free += size;
        self.release(block);
    }

    /// Bytes the live allocation at `payload` can hold.
    fn capacity(&self, payload: usize) -> usize {
        self.capacity_of(payload, self.slabs.class_at(payload))
    }

    /// As `capacity`, for an allocation whose slab class is known.
    fn capacity_of(&self, payload: usize, class: Option<usize>) -> usize {
        match class {
            Some(class) => slab::slot_size(class),
            None => self.size_of(payload - HEADER) - HEADER,
        }
    }

    /// Takes a free block for `needed` bytes (a block size) whose payload
    /// is `align`-aligned (`align` above 16: `take_unaligned` serves the
    /// rest), growing the heap if it must; marks it used and returns it
    /// with its size (at least `needed`).
    fn take_aligned(&mut self, needed: usize, align: usize) -> Result<(usize, usize), MmError> {
        debug_assert!(align > GRANULE);
        let mut block = self.take_free(needed + align + MIN_BLOCK)?;
        let mut size = self.size_of(block);
        self.stats.free -= size;
        if !(block + HEADER).is_multiple_of(align) {
            // Split off a leading free block so the payload is aligned.
            let payload = (block + HEADER + MIN_BLOCK).next_multiple_of(align);
            let lead = payload - HEADER - block;
            let prev_flag = self.header(block) & PREV_FREE;
            self.set_header(block, lead | FREE | prev_flag);
            self.set_footer(block, lead);
            self.insert(block, lead);
            self.stats.free += lead;
            block += lead;
            size -= lead;
            self.set_header(block, size | PREV_FREE);
        }
        let used = self.use_block(block, size, needed);
        self.stats.free += size - used;
        Ok((block, used))
    }

    /// `take_free`'s way to a free block when no list is sure to fit: a
    /// bounded scan of the list that might, then the same after the cached
    /// blocks coalesced, then after growing the heap.
    #[cold]
    #[inline(never)]
    fn take_fitting_slowly(&mut self, size: usize) -> Result<usize, MmError> {
        if let Some(block) = self.take_by_scan(size) {
            return Ok(block);
        }
        // Cached small blocks may coalesce into what is needed.
        self.flush_quick();
        if let Some(block) = self.take_fitting(size) {
            return Ok(block);
        }
        if !self.extend(size) {
            return Err(MmError::HeapExhausted);
        }
        self.take_fitting(size).ok_or(MmError::HeapExhausted)
    }

    /// Books a used block of `size` as live and returns its payload.
    fn hand_out(&mut self, block: usize, size: usize) -> NonNull<u8> {
        self.book_live(block + HEADER, size)
    }

    /// Books `size` bytes at `payload` as a live allocation.
    fn book_live(&mut self, payload: usize, size: usize) -> NonNull<u8> {
        self.stats.used += size;
        self.stats.peak_used = self.stats.peak_used.max(self.stats.used);
        self.stats.live_allocations += 1;
        self.set_live(self.mark_slot(payload));
        // SAFETY: payload lies inside the heap, so it is not null.
        unsafe { NonNull::new_unchecked(self.at(payload)) }
    }

    /// A cached block of exactly `size` bytes, if one is waiting.
    fn pop_quick(&mut self, size: usize) -> Option<usize> {
        let list = size / GRANULE;
        let block = self.quick[list];
        if block == 0 {
            return None;
        }
        self.quick[list] = self.read(block + HEADER);
        self.quick_depth[list] -= 1;
        self.stats.free -= size;
        Some(block)
    }

    /// Returns every cached small block to the free lists, coalescing it.
    /// The heap does this by itself before it grows or fails a request.
    pub fn trim(&mut self) {
        self.flush_quick();
    }

    /// Returns every cached block and spare slab page to the TLSF lists
    /// (with coalescing).
    fn flush_quick(&mut self) {
        while let Some((page, class)) = self.slabs.drain_recent() {
            self.release_slab_page(page, class);
        }
        while let Some((page, class)) = self.slabs.take_spare() {
            self.release_slab_page(page, class);
        }
        for list in 0..QUICK_LISTS {
            let mut block = self.quick[list];
            while block != 0 {
                let next = self.read(block + HEADER);
                self.release(block);
                block = next;
            }
            self.quick[list] = 0;
            self.quick_depth[list] = 0;
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

    /// Counters.
    pub fn stats(&self) -> HeapStats {
        // Internally `free` counts the TLSF part only, so that the slab
        // paths update one counter fewer.
        HeapStats {
            free: self.stats.free + self.stats.slab_free,
            ..self.stats
        }
    }

    /// Bytes the heap may still grow by.
    pub fn growth_left(&self) -> usize {
        self.start + self.max - self.end
    }

    /// The managed range `[start, end)`.
    pub fn range(&self) -> (usize, usize) {
        (self.start, self.end)
    }
}
