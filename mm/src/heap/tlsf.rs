//! Two-level segregated fit (TLSF): variable-sized blocks with boundary
//! tags over one growable memory range, free blocks found in O(1).
//!
//! ```text
//! start        start+8                                     end-8     end
//!   | pad (8) | block | block | ... | block | sentinel header (size 0) |
//! block at b (b = 8 mod 16):
//!   b+0            header: size (multiple of 16, >= 32) | FREE | PREV_FREE
//!                  | PAGE_BUFFER (used blocks only)
//!   b+8            payload (16-aligned) ...            -- used block
//!   b+NEXT_LINK    next free block in its list         -- free block
//!   b+PREV_LINK    previous free block in its list
//!   b+size-8       footer = b
//! ```
//!
//! [`Tlsf`] knows blocks and nothing else: no slabs, no caches, no
//! counters, no growth policy. Its callers (the [`Heap`](super::Heap))
//! keep the statistics from the sizes it returns. The free lists live in
//! `tlsf/lists.rs`, `verify` in `tlsf/verify.rs`.

use core::ptr;

mod lists;
mod verify;

/// Payload alignment and the unit of block sizes.
pub const GRANULE: usize = 16;
/// Bytes of the header word before each payload.
pub const HEADER: usize = 8;
/// Smallest block: header, two list links and a footer, rounded to a
/// granule.
pub const MIN_BLOCK: usize = 32;
/// Offset in a free block of its link to the next free block of its list
/// (the first payload word).
const NEXT_LINK: usize = HEADER;
/// Offset in a free block of its link to the previous one.
const PREV_LINK: usize = HEADER + 8;
/// Bytes of a word the blocks are made of (headers, footers, links).
pub const WORD: usize = size_of::<usize>();
/// Header flag: this block is free.
const FREE: usize = 1;
/// Header flag: the block before this one is free (its footer is valid).
const PREV_FREE: usize = 2;
/// Header flag of a used block: a page buffer (page-aligned, whole pages:
/// `Heap::take_page_block`), which the page cache may keep when freed.
const PAGE_BUFFER: usize = 4;
const FLAGS: usize = FREE | PREV_FREE | PAGE_BUFFER;
/// Bytes at the start of a free block that hold its header and links:
/// the page they lie in stays mapped while the block is free.
pub const FREE_HEAD: usize = PREV_LINK + WORD;
/// Bytes of a fresh range the first block does not get: the leading pad
/// that makes payloads 16-aligned and the end sentinel.
pub const RANGE_OVERHEAD: usize = HEADER + HEADER;

const _: () = assert!(MIN_BLOCK >= PREV_LINK + WORD + WORD && MIN_BLOCK.is_multiple_of(GRANULE));
const _: () = assert!(RANGE_OVERHEAD == GRANULE);

/// The blocks of `[start, end)` and their free lists.
// In this order (repr(C)): the range, which every `free` reads, comes
// first, not after the 3.5 KiB of list heads.
#[repr(C)]
pub struct Tlsf {
    /// The memory as handed to `new`: every pointer made from an address
    /// is derived from it (`at`), so it keeps its provenance.
    memory: *mut u8,
    start: usize,
    end: usize,
    /// The free block the latest `free` made (0: none, or it has left the
    /// lists since: `remove` forgets it), and the size of the block that
    /// `free` was given.
    last_freed: usize,
    last_freed_own: usize,
    lists: lists::FreeLists,
}

impl Tlsf {
    /// Takes `[memory, memory + size)` as one free block between the
    /// leading pad and the end sentinel; returns the block store and the
    /// free block's size (`size - RANGE_OVERHEAD`).
    ///
    /// # Safety
    /// The range must be writable memory owned by the store for as long as
    /// it exists, reachable through `memory`'s provenance; `memory` must be
    /// 16-aligned and `size` a multiple of 16 of at least
    /// `MIN_BLOCK + RANGE_OVERHEAD`.
    pub unsafe fn new(memory: *mut u8, size: usize) -> (Self, usize) {
        let start = memory.addr();
        debug_assert!(start.is_multiple_of(GRANULE) && size.is_multiple_of(GRANULE));
        debug_assert!(size >= MIN_BLOCK + RANGE_OVERHEAD);
        let mut tlsf = Self {
            memory,
            start,
            end: start + size,
            last_freed: 0,
            last_freed_own: 0,
            lists: lists::FreeLists::new(),
        };
        let first = start + HEADER;
        let block_size = size - RANGE_OVERHEAD;
        tlsf.set_header(first, block_size | FREE);
        tlsf.set_header(tlsf.sentinel(), PREV_FREE);
        tlsf.set_footer(first, block_size);
        tlsf.insert(first, block_size);
        (tlsf, block_size)
    }

    /// First byte of the range.
    pub fn start(&self) -> usize {
        self.start
    }

    /// One past the last byte of the range.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The first block's address.
    fn first_block(&self) -> usize {
        self.start + HEADER
    }

    /// The end sentinel: a header of size 0 in the range's last word.
    fn sentinel(&self) -> usize {
        self.end - HEADER
    }

    // --- raw word access --------------------------------------------------

    /// A pointer to `address` of the range, with the range's provenance.
    /// Soundness rests on the callers' bookkeeping (only addresses inside
    /// `[start, end)` computed from headers); the accessors below check
    /// that in debug builds.
    #[inline]
    pub fn at(&self, address: usize) -> *mut u8 {
        self.memory.with_addr(address)
    }

    /// The word at `address` (8-aligned, inside the range).
    #[inline]
    pub fn read(&self, address: usize) -> usize {
        debug_assert!(address >= self.start && address + WORD <= self.end);
        // SAFETY: callers only pass 8-aligned addresses of header, footer,
        // link and record words inside `[start, end)`, which `new`'s
        // contract (and `extend`'s) make memory owned by the store,
        // reached through `memory`.
        unsafe { ptr::read(self.at(address).cast::<usize>()) }
    }

    /// Writes the word at `address` (8-aligned, inside the range).
    #[inline]
    pub fn write(&mut self, address: usize, value: usize) {
        debug_assert!(address >= self.start && address + WORD <= self.end);
        // SAFETY: as in `read`.
        unsafe { ptr::write(self.at(address).cast::<usize>(), value) }
    }

    fn header(&self, block: usize) -> usize {
        self.read(block)
    }

    fn set_header(&mut self, block: usize, value: usize) {
        self.write(block, value);
    }

    /// The size of the block at `block`, header included.
    #[inline]
    pub fn size_of(&self, block: usize) -> usize {
        self.header(block) & !FLAGS
    }

    /// Whether the block at `block` is free (in a list).
    #[inline]
    pub fn is_free(&self, block: usize) -> bool {
        self.header(block) & FREE != 0
    }

    /// Marks the used block at `block` a page buffer (until it is freed
    /// into the lists or resized).
    pub fn mark_page_buffer(&mut self, block: usize) {
        let header = self.header(block);
        self.set_header(block, header | PAGE_BUFFER);
    }

    /// Whether the used block at `block` is marked a page buffer.
    #[inline]
    pub fn is_page_buffer(&self, block: usize) -> bool {
        self.header(block) & PAGE_BUFFER != 0
    }

    /// Whether the block before the one at `block` is free (a flag in
    /// `block`'s own header: no other memory read).
    #[inline]
    pub fn prev_is_free(&self, block: usize) -> bool {
        self.prev_free_flag(block) != 0
    }

    fn prev_free_flag(&self, block: usize) -> usize {
        self.header(block) & PREV_FREE
    }

    fn set_footer(&mut self, block: usize, size: usize) {
        self.write(block + size - WORD, block);
    }

    fn next_free(&self, block: usize) -> usize {
        self.read(block + NEXT_LINK)
    }

    fn prev_free(&self, block: usize) -> usize {
        self.read(block + PREV_LINK)
    }

    /// Block size that holds `bytes` of payload, or `None` if absurd.
    #[inline]
    pub fn block_size_for(bytes: usize) -> Option<usize> {
        let size = bytes.checked_add(HEADER + GRANULE - 1)? & !(GRANULE - 1);
        Some(size.max(MIN_BLOCK))
    }

    // --- block surgery -----------------------------------------------------

    /// Marks the block at `block`, just taken from the lists, used,
    /// splitting off a free tail beyond `needed` bytes when the tail can be
    /// a block; returns the used block's size.
    #[inline]
    pub fn carve(&mut self, block: usize, needed: usize) -> usize {
        let size = self.size_of(block);
        let prev_flag = self.prev_free_flag(block);
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

    /// Where `carve_aligned` puts the used block in the free block at
    /// `block`: there, if its payload is `align`-aligned, else after a
    /// leading free block of at least `MIN_BLOCK` bytes.
    pub fn aligned_start(block: usize, align: usize) -> usize {
        if (block + HEADER).is_multiple_of(align) {
            block
        } else {
            (block + HEADER + MIN_BLOCK).next_multiple_of(align) - HEADER
        }
    }

    /// As `carve`, for a free block that holds `needed` bytes from its
    /// `aligned_start` on (one taken with room for `needed` bytes plus
    /// `align` plus a minimum block always does): first gives back a
    /// leading free block so that the payload is `align`-aligned. Returns
    /// the used block and its size.
    pub fn carve_aligned(&mut self, block: usize, needed: usize, align: usize) -> (usize, usize) {
        let mut block = block;
        let start = Self::aligned_start(block, align);
        if start != block {
            let size = self.size_of(block);
            debug_assert!(start + needed <= block + size);
            let lead = start - block;
            let prev_flag = self.prev_free_flag(block);
            self.set_header(block, lead | FREE | prev_flag);
            self.set_footer(block, lead);
            self.insert(block, lead);
            block += lead;
            self.set_header(block, (size - lead) | PREV_FREE);
        }
        let used = self.carve(block, needed);
        (block, used)
    }

    /// The free block the latest `free` made, if it has stayed in the
    /// lists unchanged since (any removal, merging included, forgets it),
    /// and the size of the used block that `free` gave back into it.
    pub fn last_freed(&self) -> Option<(usize, usize)> {
        (self.last_freed != 0).then_some((self.last_freed, self.last_freed_own))
    }

    /// Forgets the block `last_freed` returns.
    pub fn forget_last_freed(&mut self) {
        self.last_freed = 0;
    }

    /// Puts the free block at `block`, just taken from the lists and not
    /// changed, back into them.
    pub fn put_back(&mut self, block: usize) {
        self.insert(block, self.size_of(block));
    }

    /// Returns the used block at `block` to the free lists, merged with its
    /// free neighbours; returns the block's own size.
    pub fn free(&mut self, block: usize) -> usize {
        let own = self.size_of(block);
        let (mut block, mut size) = (block, own);
        let next = block + size;
        if self.is_free(next) {
            let next_size = self.size_of(next);
            self.remove(next, next_size);
            size += next_size;
        }
        if self.prev_free_flag(block) != 0 {
            let prev = self.read(block - WORD);
            let prev_size = self.size_of(prev);
            self.remove(prev, prev_size);
            block = prev;
            size += prev_size;
        }
        let prev_flag = self.prev_free_flag(block);
        self.set_header(block, size | FREE | prev_flag);
        self.set_footer(block, size);
        let after = block + size;
        let after_header = self.header(after);
        self.set_header(after, after_header | PREV_FREE);
        self.insert(block, size);
        self.last_freed = block;
        self.last_freed_own = own;
        own
    }

    /// Cuts the used block at `block` down to `needed` bytes, freeing the
    /// tail if it can be a block; returns the bytes freed.
    pub fn shrink(&mut self, block: usize, needed: usize) -> usize {
        let size = self.size_of(block);
        if size - needed < MIN_BLOCK {
            return 0;
        }
        let prev_flag = self.prev_free_flag(block);
        self.set_header(block, needed | prev_flag);
        let tail = block + needed;
        self.set_header(tail, size - needed); // used for a moment, then freed
        self.free(tail)
    }

    /// Grows the used block at `block` to `needed` bytes by taking what it
    /// needs of a free successor (the rest stays free); returns the bytes
    /// taken, or `None` (nothing changed) if the successor is not free or
    /// too small.
    pub fn grow_in_place(&mut self, block: usize, needed: usize) -> Option<usize> {
        let size = self.size_of(block);
        let next = block + size;
        let next_size = self.size_of(next);
        if !self.is_free(next) || size + next_size < needed {
            return None;
        }
        self.remove(next, next_size);
        let prev_flag = self.prev_free_flag(block);
        self.set_header(block, (size + next_size) | prev_flag);
        let after = next + next_size;
        let after_header = self.header(after);
        self.set_header(after, after_header & !PREV_FREE);
        Some(next_size - self.shrink(block, needed))
    }

    /// The span the used block at `block` could grow over: its start (the
    /// free predecessor's, else its own) and its bytes (with the free
    /// neighbours').
    pub fn free_span(&self, block: usize) -> (usize, usize) {
        let size = self.size_of(block);
        let next = block + size;
        let mut span = size
            + if self.is_free(next) {
                self.size_of(next)
            } else {
                0
            };
        let mut low = block;
        if self.prev_free_flag(block) != 0 {
            low = self.read(block - WORD);
            span += self.size_of(low);
        }
        (low, span)
    }

    /// Grows the used block at `block` to `needed` bytes downwards: when
    /// its predecessor is free, starts `align`-aligned (payload) and the
    /// two (with a free successor, the three) hold `needed` bytes, moves
    /// the payload down to the predecessor's (a memmove of the whole old
    /// payload), makes the span one used block cut to `needed` (the rest
    /// stays free) and returns the new block and the bytes taken from the
    /// free neighbours. `None`: nothing changed.
    pub fn grow_into_previous(
        &mut self,
        block: usize,
        needed: usize,
        align: usize,
    ) -> Option<(usize, usize)> {
        if self.prev_free_flag(block) == 0 {
            return None;
        }
        let prev = self.read(block - WORD);
        let (prev_size, size) = (self.size_of(prev), self.size_of(block));
        let next = block + size;
        let next_size = if self.is_free(next) {
            self.size_of(next)
        } else {
            0
        };
        let span = prev_size + size + next_size;
        if span < needed || !(prev + HEADER).is_multiple_of(align) {
            return None;
        }
        self.remove(prev, prev_size);
        if next_size != 0 {
            self.remove(next, next_size);
        }
        // SAFETY: both ranges lie inside the used block and its free
        // predecessor, memory of the store; `ptr::copy` allows the
        // overlap. The predecessor's header (at `prev`) is not in the
        // destination.
        unsafe {
            ptr::copy(
                self.at(block + HEADER),
                self.at(prev + HEADER),
                size - HEADER,
            )
        };
        // The predecessor was free, so the block before it is used.
        self.set_header(prev, span);
        let after = prev + span;
        let after_header = self.header(after);
        self.set_header(after, after_header & !PREV_FREE);
        let freed = self.shrink(prev, needed);
        Some((prev, prev_size + next_size - freed))
    }

    /// Bytes of the free block at the end of the range (0 if the last
    /// block is used).
    pub fn free_at_end(&self) -> usize {
        let sentinel = self.sentinel();
        if self.prev_free_flag(sentinel) == 0 {
            return 0;
        }
        self.size_of(self.read(sentinel - WORD))
    }

    /// The last block, if it is free.
    pub fn last_block_if_free(&self) -> Option<usize> {
        let sentinel = self.sentinel();
        (self.prev_free_flag(sentinel) != 0).then(|| self.read(sentinel - WORD))
    }

    /// Gives back the end of the range: if the last block is free, the
    /// range ends at the lowest multiple of `page` that keeps at least
    /// `keep` bytes of that block (and leaves either none of it or a
    /// whole block) and stays at or above `floor`. Returns the bytes cut
    /// off (0: nothing); the caller unmaps `[end(), end() + bytes)`.
    /// `page` is a power of two, `end()` a multiple of it.
    pub fn retract(&mut self, keep: usize, floor: usize, page: usize) -> usize {
        let sentinel = self.sentinel();
        if self.prev_free_flag(sentinel) == 0 {
            return 0;
        }
        let block = self.read(sentinel - WORD);
        let size = self.size_of(block);
        let prev_flag = self.prev_free_flag(block);
        // The new sentinel goes at new_end - HEADER; what is left of the
        // block is [block, new_end - HEADER).
        let mut new_end = (block + HEADER + keep).next_multiple_of(page).max(floor);
        let left = new_end.saturating_sub(HEADER + block);
        if left > 0 && left < MIN_BLOCK {
            new_end += page;
        }
        if new_end >= self.end {
            return 0;
        }
        let cut = self.end - new_end;
        self.remove(block, size);
        self.end = new_end;
        let left = new_end - HEADER - block;
        if left == 0 {
            // The block is gone: its header becomes the sentinel.
            self.set_header(block, prev_flag);
        } else {
            self.set_header(block, left | FREE | prev_flag);
            self.set_footer(block, left);
            self.insert(block, left);
            self.set_header(self.sentinel(), PREV_FREE);
        }
        cut
    }

    /// Appends `[end, end + bytes)` to the range as free memory, merged
    /// with a free block at the old end.
    ///
    /// # Safety
    /// The appended bytes must be writable memory owned by the store from
    /// now on, reachable through the provenance of the memory `new` got;
    /// `bytes` must be a multiple of 16 of at least `MIN_BLOCK`.
    pub unsafe fn extend(&mut self, bytes: usize) {
        debug_assert!(bytes.is_multiple_of(GRANULE) && bytes >= MIN_BLOCK);
        // The old sentinel becomes the header of the new block.
        let block = self.sentinel();
        let prev_flag = self.prev_free_flag(block);
        self.end += bytes;
        self.set_header(block, bytes | prev_flag);
        self.set_header(self.sentinel(), 0);
        self.free(block);
    }

    /// The block whose memory holds `address`, found by walking the blocks
    /// from the start (O(blocks): error paths only); `None` if the walk
    /// finds a broken size first.
    pub fn block_around(&self, address: usize) -> Option<usize> {
        self.blocks()
            .find(|&(block, size, _)| address < block + size)
            .map(|(block, _, _)| block)
    }

    /// Every block in address order as (address, size, free), up to the
    /// sentinel or the first broken size.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize, bool)> + '_ {
        let mut block = self.first_block();
        core::iter::from_fn(move || {
            if block >= self.sentinel() {
                return None;
            }
            let size = self.size_of(block);
            if size < MIN_BLOCK {
                return None;
            }
            let item = (block, size, self.is_free(block));
            block += size;
            Some(item)
        })
    }
}
