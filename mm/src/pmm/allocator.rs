//! The physical frame allocator: usable ranges from the memory map,
//! reservations carved out of them, and blocks of every order from 4 KiB
//! to 1 GiB tracked by bitmaps and 2 MiB chunks.

use core::fmt;

use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use arrayvec::ArrayVec;

use super::bitmap::{storage_words, word_masks, Bitmap};
use super::blocks::{
    find_block, largest_free_order, merged_order, CHUNK_FRAMES, CHUNK_ORDER, CHUNK_WORDS,
};
use super::chunks::{chunk_storage_words, Chunk, Chunks, Mobility, KINDS, MAX_NODES};
use super::ranges::{PhysRange, RangeSet};
pub use super::reservations::{outward_to_pages, Reservation, ReservationKind};
use crate::fail::FailPoint;
use crate::layout::PAGE_SIZE;
use crate::MmError;

/// Most usable ranges the allocator tracks.
pub const MAX_RANGES: usize = 64;
/// Most reservations the allocator tracks.
pub const MAX_RESERVATIONS: usize = super::reservations::MAX_RESERVATIONS;

/// Counters of the allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames in usable memory.
    pub total: u64,
    /// Frames free for allocation.
    pub free: u64,
    /// Frames handed out and not yet returned.
    pub used: u64,
    /// Usable frames kept by reservations.
    pub reserved: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames: {} free, {} used, {} reserved",
            self.total, self.free, self.used, self.reserved
        )
    }
}

/// Why the allocator could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// No usable memory at all.
    NoMemory,
    /// The storage is smaller than [`FrameAllocator::storage_words_for`] says.
    StorageTooSmall,
    /// More than [`MAX_RESERVATIONS`] reservations.
    TooManyReservations,
}

/// Largest block order: 2^18 frames, 1 GiB.
pub const MAX_ORDER: u32 = 18;

/// Bytes of physical memory covered by a block of [`MAX_ORDER`]; frame 0
/// of the allocator sits at a multiple of it, so every block is aligned
/// in the bitmap as it is in physical memory.
const MAX_BLOCK_BYTES: u64 = PAGE_SIZE << MAX_ORDER;

/// How the allocator's storage is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Physical address of frame 0.
    base: u64,
    /// Frames covered (whole chunks).
    frames: usize,
}

impl Layout {
    const fn spanning(start: u64, end: u64) -> Self {
        let base = start - start % MAX_BLOCK_BYTES;
        let chunk_bytes = CHUNK_FRAMES as u64 * PAGE_SIZE;
        let frames = (end - base).div_ceil(chunk_bytes) as usize * CHUNK_FRAMES;
        Self { base, frames }
    }

    fn of(usable: &RangeSet<MAX_RANGES>) -> Option<Self> {
        let ranges = usable.as_slice();
        Some(Self::spanning(ranges.first()?.start, ranges.last()?.end))
    }

    const fn chunks(&self) -> usize {
        self.frames / CHUNK_FRAMES
    }

    /// Words of (used bitmap, block-start bits, chunk table and lists).
    const fn words(&self) -> [usize; 3] {
        [
            storage_words(self.frames),
            self.frames / 64,
            chunk_storage_words(self.chunks()),
        ]
    }
}

/// Storage words an allocator needs for any usable ranges inside
/// `[start, end)` (for storage sized at compile time).
pub const fn storage_words_within(start: u64, end: u64) -> usize {
    let [used, starts, chunks] = Layout::spanning(start, end).words();
    used + starts + chunks
}

/// A frame allocator over the usable ranges of physical memory: blocks of
/// 2^order frames (order 0 to [`MAX_ORDER`]), naturally aligned, kept by
/// mobility in separate 2 MiB chunks. See docs/pmm.md.
///
/// Three structures share the caller's storage:
/// * `used`: one bit per frame (set: allocated, reserved or not RAM),
///   with summary levels for runs of any length;
/// * `starts`: one bit per frame, set at the first frame of every
///   allocated block, so a free names exactly one block: freeing with the
///   wrong size, inside a block or across two is caught;
/// * `chunks`: per 2 MiB chunk a free count, an order hint and a kind,
///   on lists that find a chunk for a request in O(1).
pub struct FrameAllocator<'a> {
    used: Bitmap<'a>,
    starts: &'a mut [u64],
    chunks: Chunks<'a>,
    /// Physical address of frame 0 (a multiple of 1 GiB).
    base: u64,
    usable: RangeSet<MAX_RANGES>,
    reservations: ArrayVec<Reservation, MAX_RESERVATIONS>,
    stats: Stats,
    /// Per kind, the chunk small allocations come from first (off the
    /// lists while it is current, so the hot path touches no list).
    current: [[Option<usize>; KINDS]; MAX_NODES],
    /// Nodes in use (1 until `set_nodes`).
    nodes: usize,
    /// Per node, every node in the order its allocations fall back to
    /// (itself first, then by distance).
    fallback: [[u8; MAX_NODES]; MAX_NODES],
    /// Usable frames per node.
    node_total: [u64; MAX_NODES],
    /// Keep movable and unmovable allocations in separate chunks (on
    /// unless a benchmark turns it off to measure what it buys).
    grouping: bool,
    /// Failure injection in front of every allocation (off unless armed).
    fail: FailPoint,
}

impl<'a> FrameAllocator<'a> {
    /// Storage words (`u64`) the allocator needs for these usable ranges.
    pub fn storage_words_for(usable: &RangeSet<MAX_RANGES>) -> usize {
        Layout::of(usable).map_or(0, |layout| layout.words().iter().sum())
    }

    /// Builds the allocator: every frame in `usable` is free except those in
    /// `reservations` (rounded outward to whole pages).
    pub fn new(
        usable: RangeSet<MAX_RANGES>,
        reservations: &[Reservation],
        storage: &'a mut [u64],
    ) -> Result<Self, InitError> {
        let layout = Layout::of(&usable).ok_or(InitError::NoMemory)?;
        if reservations.len() > MAX_RESERVATIONS {
            return Err(InitError::TooManyReservations);
        }
        let [used_words, start_words, chunk_words] = layout.words();
        let storage = storage
            .get_mut(..used_words + start_words + chunk_words)
            .ok_or(InitError::StorageTooSmall)?;
        let (used, rest) = storage.split_at_mut(used_words);
        let (starts, chunks) = rest.split_at_mut(start_words);
        let used = Bitmap::new_all_used(used, layout.frames).ok_or(InitError::StorageTooSmall)?;
        starts.fill(0);
        let chunks = Chunks::new(chunks, layout.chunks()).ok_or(InitError::StorageTooSmall)?;
        let total = usable.total() / PAGE_SIZE;
        let mut allocator = Self {
            used,
            starts,
            chunks,
            base: layout.base,
            usable,
            reservations: ArrayVec::new(),
            stats: Stats {
                total,
                free: 0,
                used: 0,
                reserved: 0,
            },
            current: [[None; KINDS]; MAX_NODES],
            nodes: 1,
            fallback: [[0; MAX_NODES]; MAX_NODES],
            node_total: [0; MAX_NODES],
            grouping: true,
            fail: FailPoint::off(),
        };
        allocator
            .reservations
            .try_extend_from_slice(reservations)
            .map_err(|_| InitError::TooManyReservations)?;
        for index in 0..allocator.usable.as_slice().len() {
            let range = allocator.usable.as_slice()[index];
            let first = allocator.index_of(range.start);
            allocator
                .used
                .set_range(first, range.pages() as usize, false);
        }
        for reservation in reservations {
            for index in 0..allocator.usable.as_slice().len() {
                let range = allocator.usable.as_slice()[index];
                let kept = outward_to_pages(reservation.range).intersect(&range);
                if !kept.is_empty() {
                    let first = allocator.index_of(kept.start);
                    allocator.used.set_range(first, kept.pages() as usize, true);
                }
            }
        }
        let mut free = 0;
        for chunk in 0..layout.chunks() {
            let words = allocator.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS);
            let count: u32 = words.iter().map(|word| word.count_zeros()).sum();
            free += u64::from(count);
            // Nothing is allocated yet: a frame in use now is a hole or
            // a reservation.
            let holes = count as usize != CHUNK_FRAMES;
            let hint = largest_free_order(words).unwrap_or(0) as u8;
            allocator.chunks.set(
                chunk,
                Chunk {
                    free: count as u16,
                    hint,
                    kind: Mobility::Unmovable,
                    holes,
                    current: false,
                    node: 0,
                },
            );
        }
        allocator.stats.free = free;
        allocator.stats.reserved = allocator.stats.total - free;
        allocator.node_total[0] = total;
        Ok(allocator)
    }

    fn index_of(&self, address: u64) -> usize {
        ((address - self.base) / PAGE_SIZE) as usize
    }

    fn frame_at(&self, index: usize) -> PhysFrame<Size4KiB> {
        let address = PhysAddr::new(self.base + index as u64 * PAGE_SIZE);
        PhysFrame::containing_address(address)
    }

    fn is_start(&self, index: usize) -> bool {
        self.starts[index / 64] & (1 << (index % 64)) != 0
    }

    fn set_start(&mut self, index: usize, start: bool) {
        if start {
            self.starts[index / 64] |= 1 << (index % 64);
        } else {
            self.starts[index / 64] &= !(1 << (index % 64));
        }
    }

    /// Turns mobility grouping on or off (for measurements: off, every
    /// allocation is treated as unmovable).
    pub fn set_grouping(&mut self, on: bool) {
        self.grouping = on;
    }

    /// Allocates a single frame (unmovable), the lowest-fragmenting choice:
    /// from the chunk of its kind with the fewest large free blocks.
    #[inline]
    pub fn alloc_page(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.alloc_order(0, Mobility::Unmovable).ok()
    }

    /// Allocates a block of 2^`order` frames aligned to its size, from
    /// node 0 first (the only node unless [`Self::set_nodes`] made more).
    #[inline]
    pub fn alloc_order(
        &mut self,
        order: u32,
        mobility: Mobility,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        self.alloc_near(0, order, mobility)
    }

    /// Allocates a block of 2^`order` frames from `node` first, then from
    /// the other nodes nearest first.
    #[inline]
    pub fn alloc_near(
        &mut self,
        node: usize,
        order: u32,
        mobility: Mobility,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        let kind = self.check_request(node, order, mobility)?;
        if order == 0 {
            if let Some(index) = self.take_frame_from_current(node, kind) {
                return Ok(self.frame_at(index));
            }
        }
        for rank in 0..self.nodes {
            let near = self.fallback[node][rank] as usize;
            if let Some(index) = self.take_on(near, order, kind) {
                return Ok(self.frame_at(index));
            }
        }
        Err(MmError::OutOfFrames)
    }

    /// Allocates 2^`order` contiguous frames, aligned to their size, from
    /// `node` first, as that many single frames: each one is freed on its
    /// own with `free_page` (a frame cache's refill: one search, and the
    /// frames' state bytes share cache lines with no other CPU's).
    pub fn alloc_split(
        &mut self,
        node: usize,
        order: u32,
        mobility: Mobility,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        if order > 6 {
            return Err(MmError::InvalidArgument);
        }
        let block = self.alloc_near(node, order, mobility)?;
        let index = self.index_of(block.start_address().as_u64());
        // Every frame starts a block of one (inside one word: order <= 6).
        for (word, mask) in word_masks(index, 1 << order) {
            self.starts[word] |= mask;
        }
        Ok(block)
    }

    /// Allocates a block of 2^`order` frames on `node` only.
    pub fn alloc_on(
        &mut self,
        node: usize,
        order: u32,
        mobility: Mobility,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        let kind = self.check_request(node, order, mobility)?;
        let index = self
            .take_on(node, order, kind)
            .ok_or(MmError::OutOfFrames)?;
        Ok(self.frame_at(index))
    }

    /// The checks every allocation makes (order, node, injected failure);
    /// the kind its frames are grouped with.
    #[inline]
    fn check_request(
        &mut self,
        node: usize,
        order: u32,
        mobility: Mobility,
    ) -> Result<Mobility, MmError> {
        if order > MAX_ORDER || node >= self.nodes {
            return Err(MmError::InvalidArgument);
        }
        if self.fail.hit() {
            return Err(MmError::OutOfFrames);
        }
        Ok(if self.grouping {
            mobility
        } else {
            Mobility::Unmovable
        })
    }

    /// A block of `order` on `node`, marked allocated; its first frame.
    #[inline]
    fn take_on(&mut self, node: usize, order: u32, kind: Mobility) -> Option<usize> {
        if order < CHUNK_ORDER {
            self.take_small(node, order, kind)
        } else {
            self.take_chunks(node, 1 << (order - CHUNK_ORDER), kind)
        }
    }

    /// A block of `order` < 9 inside one chunk of `node`: from the
    /// current chunk of `kind`, else another chunk of `kind` or a whole
    /// chunk (which becomes the current one), else a chunk of the other
    /// kind. Marks it allocated; returns its first frame.
    #[inline]
    fn take_small(&mut self, node: usize, order: u32, kind: Mobility) -> Option<usize> {
        if let Some(index) = self.take_from_current(node, order, kind) {
            return Some(index);
        }
        if let Some((chunk, offset)) = self.find_in_lists(node, order, kind) {
            self.make_current(chunk, kind);
            return Some(self.take_in_chunk(chunk, offset, order));
        }
        if let Some(chunk) = self.chunks.first_whole(node) {
            let mut info = self.chunks.get(chunk);
            info.kind = kind;
            self.chunks.set(chunk, info);
            self.make_current(chunk, kind);
            return Some(self.take_in_chunk(chunk, 0, order));
        }
        // Stolen from the other kind: its chunks stay its own.
        let other = kind.other();
        if let Some(index) = self.take_from_current(node, order, other) {
            return Some(index);
        }
        let (chunk, offset) = self.find_in_lists(node, order, other)?;
        Some(self.take_in_chunk(chunk, offset, order))
    }

    /// The hot path: one frame from the current chunk of `kind` on
    /// `node`, which is off every list, so only its free count changes.
    #[inline]
    fn take_frame_from_current(&mut self, node: usize, kind: Mobility) -> Option<usize> {
        let chunk = self.current[node][kind as usize]?;
        let first = chunk * CHUNK_WORDS;
        let with_free = self.used.words_with_free(first);
        if with_free == 0 {
            return None;
        }
        let word = first + with_free.trailing_zeros() as usize;
        let index = word * 64 + (!self.used.words(word, 1)[0]).trailing_zeros() as usize;
        self.used.set_used(index);
        self.set_start(index, true);
        if self.chunks.take_one_from_current(chunk) {
            self.current[node][kind as usize] = None;
        }
        self.stats.free -= 1;
        self.stats.used += 1;
        Some(index)
    }

    /// A block of `order` from the current chunk of `kind` on `node`.
    #[inline]
    fn take_from_current(&mut self, node: usize, order: u32, kind: Mobility) -> Option<usize> {
        let chunk = self.current[node][kind as usize]?;
        let offset = find_block(self.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS), order)?;
        Some(self.take_in_chunk(chunk, offset, order))
    }

    /// A chunk on the lists of `kind` on `node` with a free block of
    /// `order`, and where the block is.
    #[inline]
    fn find_in_lists(&mut self, node: usize, order: u32, kind: Mobility) -> Option<(usize, usize)> {
        while let Some(chunk) = self.chunks.partial_for(node, kind, order) {
            let words = self.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS);
            match find_block(words, order) {
                Some(offset) => return Some((chunk, offset)),
                None => {
                    // The hint was stale: make it exact (now below
                    // `order`), which moves the chunk off these lists.
                    let mut info = self.chunks.get(chunk);
                    info.hint = largest_free_order(words).unwrap_or(0) as u8;
                    self.chunks.set(chunk, info);
                }
            }
        }
        None
    }

    /// Makes `chunk` (of `kind`, with free frames) the current chunk of
    /// its kind on its node, off the lists; the previous one goes back.
    fn make_current(&mut self, chunk: usize, kind: Mobility) {
        let node = self.chunks.node_of(chunk);
        if let Some(previous) = self.current[node][kind as usize].take() {
            self.release(previous);
        }
        let mut info = self.chunks.get(chunk);
        info.current = true;
        self.chunks.set(chunk, info);
        self.current[node][kind as usize] = Some(chunk);
    }

    /// Puts a chunk that was current back on the lists (the caller has
    /// cleared its slot in `current`).
    fn release(&mut self, chunk: usize) {
        // Frees into a current chunk leave its hint alone: make it exact
        // before the chunk goes back on a list.
        let mut info = self.chunks.get(chunk);
        let words = self.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS);
        info.hint = largest_free_order(words).unwrap_or(0) as u8;
        info.current = false;
        self.chunks.set(chunk, info);
    }

    /// Stores what changed in `chunk` after an allocation or a free: a
    /// current chunk that filled up or emptied completely stops being
    /// current (a whole chunk belongs on the whole list); after a free, a
    /// chunk of a kind with no current chunk on its node becomes it.
    #[inline]
    fn store(&mut self, chunk: usize, mut info: Chunk, freed: bool) {
        let full_or_whole = info.free == 0 || info.free as usize == CHUNK_FRAMES;
        let slot = &mut self.current[info.node as usize][info.kind as usize];
        if info.current && full_or_whole {
            info.current = false;
            *slot = None;
        } else if freed && !info.current && !full_or_whole && slot.is_none() {
            info.current = true;
            *slot = Some(chunk);
        }
        self.chunks.set(chunk, info);
    }

    /// Marks the free block of `order` at `offset` in `chunk` allocated.
    #[inline]
    fn take_in_chunk(&mut self, chunk: usize, offset: usize, order: u32) -> usize {
        let index = chunk * CHUNK_FRAMES + offset;
        let count = 1usize << order;
        if order == 0 {
            self.used.set_used(index);
        } else {
            self.used.set_range(index, count, true);
        }
        self.set_start(index, true);
        let mut info = self.chunks.get(chunk);
        if info.free as usize == CHUNK_FRAMES {
            // A whole chunk broken: at most order 8 remains.
            info.hint = (CHUNK_ORDER - 1) as u8;
        }
        info.free -= count as u16;
        self.store(chunk, info, false);
        self.stats.free -= count as u64;
        self.stats.used += count as u64;
        index
    }

    /// `count` whole chunks (a power of two) on `node`, aligned to
    /// `count` chunks, for `kind`. Marks them allocated; the first frame.
    fn take_chunks(&mut self, node: usize, count: usize, kind: Mobility) -> Option<usize> {
        let first = if count == 1 {
            self.chunks.first_whole(node)?
        } else {
            self.chunks.whole_run(node, count)?
        };
        for chunk in first..first + count {
            let mut info = self.chunks.get(chunk);
            info.free = 0;
            info.kind = kind;
            self.chunks.set(chunk, info);
        }
        let index = first * CHUNK_FRAMES;
        let frames = count * CHUNK_FRAMES;
        self.used.set_range(index, frames, true);
        self.set_start(index, true);
        self.stats.free -= frames as u64;
        self.stats.used += frames as u64;
        Some(index)
    }

    /// Returns a frame allocated alone (`alloc_page`, `alloc_order(0)`).
    /// Errors (and changes nothing) if the address is misaligned, outside
    /// usable memory, reserved, already free or inside a larger block.
    #[inline]
    pub fn free_page(&mut self, address: PhysAddr) -> Result<(), MmError> {
        self.free_block(address, 1)
    }

    /// Returns a block allocated with `alloc_order(order)`. Every misuse
    /// (wrong order, unaligned, partly or wholly free, reserved) is its
    /// own error and changes nothing.
    #[inline]
    pub fn free_order(&mut self, address: PhysAddr, order: u32) -> Result<(), MmError> {
        if order > MAX_ORDER {
            return Err(MmError::InvalidArgument);
        }
        if !address.as_u64().is_multiple_of(PAGE_SIZE << order) {
            return Err(MmError::Misaligned);
        }
        self.free_block(address, 1 << order)
    }

    /// Checks that `[address, address + count frames)` is exactly one
    /// allocated block; returns its first frame index.
    #[inline]
    fn check_block(&self, address: PhysAddr, count: usize) -> Result<usize, MmError> {
        let address = address.as_u64();
        let index = self.frame_index(address)?;
        if count > self.used.frames() - index {
            return Err(MmError::OutOfRange);
        }
        if !self.used.is_used(index) {
            return Err(MmError::FrameAlreadyFree);
        }
        if !self.is_start(index) {
            return Err(self.not_a_start(address));
        }
        let end = index + count;
        for (word, mask) in word_masks(index, count) {
            if self.used.words(word, 1)[0] & mask != mask {
                return Err(MmError::PartlyFree);
            }
            let own = if word == index / 64 {
                1u64 << (index % 64)
            } else {
                0
            };
            if self.starts[word] & mask & !own != 0 {
                // Another block starts inside the range: it names several.
                return Err(MmError::WrongBlockSize);
            }
        }
        let first_chunk = index / CHUNK_FRAMES;
        let last_chunk = (end - 1) / CHUNK_FRAMES;
        if (first_chunk..=last_chunk).any(|chunk| self.chunks.get(chunk).holes)
            && !self.all_allocatable(address, count)
        {
            // Reserved frames or a hole inside: the block at `index` is
            // smaller than `count`.
            return Err(MmError::WrongBlockSize);
        }
        // The frame after the block: free, or the start of another block,
        // or not allocatable; anything else is the rest of *this* block,
        // so the request is too small.
        if !self.block_ends_before(end) {
            return Err(MmError::WrongBlockSize);
        }
        Ok(index)
    }

    /// The index of the frame at `address` (page-aligned, inside the
    /// bitmaps).
    #[inline]
    fn frame_index(&self, address: u64) -> Result<usize, MmError> {
        if !address.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        address
            .checked_sub(self.base)
            .map(|offset| (offset / PAGE_SIZE) as usize)
            .filter(|&index| index < self.used.frames())
            .ok_or(MmError::OutOfRange)
    }

    /// Whether a block can end before frame `end`: that frame is past the
    /// bitmaps, free, the start of another block, or not allocatable (a
    /// hole or a reservation, looked up only in chunks that have them).
    /// Anything else is the rest of the block being freed, so the free
    /// names too few frames.
    #[inline]
    fn block_ends_before(&self, end: usize) -> bool {
        if end >= self.used.frames() || !self.used.is_used(end) || self.is_start(end) {
            return true;
        }
        let next = self.base + end as u64 * PAGE_SIZE;
        self.chunks.get(end / CHUNK_FRAMES).holes && !self.all_allocatable(next, 1)
    }

    /// Why a used frame that starts no block cannot be freed.
    fn not_a_start(&self, address: u64) -> MmError {
        if !self.usable.contains(address) {
            MmError::OutOfRange
        } else if self.reservation_at(address).is_some() {
            MmError::FrameReserved
        } else {
            MmError::WrongBlockSize
        }
    }

    /// Whether every frame of the run is usable and unreserved.
    fn all_allocatable(&self, address: u64, count: usize) -> bool {
        let run = PhysRange::from_len(address, count as u64 * PAGE_SIZE);
        let usable: u64 = self
            .usable
            .as_slice()
            .iter()
            .map(|usable| usable.intersect(&run).pages())
            .sum();
        usable == count as u64
            && !self
                .reservations
                .iter()
                .any(|reservation| outward_to_pages(reservation.range).overlaps(&run))
    }

    /// Frees the block of `count` frames at `address` after checking it.
    #[inline]
    fn free_block(&mut self, address: PhysAddr, count: usize) -> Result<(), MmError> {
        if count == 1 {
            return self.free_single(address);
        }
        let index = self.check_block(address, count)?;
        self.used.set_range(index, count, false);
        self.set_start(index, false);
        let end = index + count;
        let mut chunk = index / CHUNK_FRAMES;
        while chunk * CHUNK_FRAMES < end {
            let chunk_start = chunk * CHUNK_FRAMES;
            let first = index.max(chunk_start);
            let last = end.min(chunk_start + CHUNK_FRAMES);
            let freed = last - first;
            let mut info = self.chunks.get(chunk);
            let merged = if freed.is_power_of_two() && first % freed == 0 {
                let words = self.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS);
                merged_order(words, first - chunk_start, freed.trailing_zeros())
            } else {
                CHUNK_ORDER - 1
            };
            info.raise_hint(merged);
            info.free += freed as u16;
            self.store(chunk, info, true);
            chunk += 1;
        }
        self.stats.free += count as u64;
        self.stats.used -= count as u64;
        Ok(())
    }

    /// `free_block` for one frame, the common case, with the same checks
    /// in fewer steps: a frame that starts a block is never reserved nor a
    /// hole, so only the frame after it needs a second look.
    #[inline]
    fn free_single(&mut self, address: PhysAddr) -> Result<(), MmError> {
        let address = address.as_u64();
        let index = self.frame_index(address)?;
        if !self.used.is_used(index) {
            return Err(MmError::FrameAlreadyFree);
        }
        if !self.is_start(index) {
            return Err(self.not_a_start(address));
        }
        if !self.block_ends_before(index + 1) {
            return Err(MmError::WrongBlockSize);
        }
        self.used.set_free(index);
        self.set_start(index, false);
        self.stats.free += 1;
        self.stats.used -= 1;
        let chunk = index / CHUNK_FRAMES;
        let buddy_free = !self.used.is_used(index ^ 1);
        let used = &self.used;
        if self.chunks.give_one(
            chunk,
            buddy_free,
            || merged_single(used, index),
            &mut self.current,
        ) {
            return Ok(());
        }
        let merged = if buddy_free {
            merged_single(&self.used, index)
        } else {
            0
        };
        let mut info = self.chunks.get(chunk);
        info.raise_hint(merged);
        info.free += 1;
        self.store(chunk, info, true);
        Ok(())
    }

    /// Allocates `count` contiguous frames, the first aligned to `align`
    /// frames (a power of two), e.g. 512 for a 2 MiB page. A power-of-two
    /// count aligned to itself is a block (`alloc_order`); other shapes
    /// take the lowest fitting run.
    pub fn alloc_contiguous(
        &mut self,
        count: usize,
        align: usize,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        if count == 0 || !align.is_power_of_two() {
            return Err(MmError::InvalidArgument);
        }
        if count == align && count <= 1 << MAX_ORDER {
            return self.alloc_order(count.trailing_zeros(), Mobility::Unmovable);
        }
        if self.fail.hit() {
            return Err(MmError::OutOfFrames);
        }
        // Align the physical frame number, not the bitmap index.
        let phase = (self.base / PAGE_SIZE) as usize % align;
        let index = self
            .used
            .find_run(0, count, align, phase)
            .ok_or(MmError::OutOfFrames)?;
        self.used.set_range(index, count, true);
        self.set_start(index, true);
        let end = index + count;
        let mut chunk = index / CHUNK_FRAMES;
        while chunk * CHUNK_FRAMES < end {
            let chunk_start = chunk * CHUNK_FRAMES;
            let taken = end.min(chunk_start + CHUNK_FRAMES) - index.max(chunk_start);
            let mut info = self.chunks.get(chunk);
            if info.free as usize == CHUNK_FRAMES {
                info.kind = Mobility::Unmovable;
                info.hint = (CHUNK_ORDER - 1) as u8;
            }
            info.free -= taken as u16;
            self.store(chunk, info, false);
            chunk += 1;
        }
        self.stats.free -= count as u64;
        self.stats.used += count as u64;
        Ok(self.frame_at(index))
    }

    /// Returns the `count` frames from `first` that one `alloc_contiguous`
    /// (or `alloc_order`) handed out. All or nothing, with the errors of
    /// `free_order`.
    pub fn free_contiguous(&mut self, first: PhysAddr, count: usize) -> Result<(), MmError> {
        if count == 0 {
            return Err(MmError::InvalidArgument);
        }
        self.free_block(first, count)
    }

    /// The reservation covering `address`, if any.
    pub fn reservation_at(&self, address: u64) -> Option<Reservation> {
        self.reservations()
            .find(|reservation| outward_to_pages(reservation.range).contains(address))
            .copied()
    }

    /// The reservations, as registered.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter()
    }

    /// Usable frames inside reservations of `kind`.
    pub fn reserved_frames(&self, kind: ReservationKind) -> u64 {
        self.reservations()
            .filter(|reservation| reservation.kind == kind)
            .map(|reservation| {
                let range = outward_to_pages(reservation.range);
                self.usable
                    .as_slice()
                    .iter()
                    .map(|usable| range.intersect(usable).pages())
                    .sum::<u64>()
            })
            .sum()
    }

    /// The usable ranges.
    pub fn usable(&self) -> &[PhysRange] {
        self.usable.as_slice()
    }

    /// Whether `address` lies in usable memory (allocated, free or reserved).
    pub fn manages(&self, address: u64) -> bool {
        self.usable.contains(address)
    }

    /// The failure-injection point in front of `alloc_page` and
    /// `alloc_contiguous` (see [`crate::fail`]).
    pub fn fail_point(&mut self) -> &mut FailPoint {
        &mut self.fail
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Usable frames (the design's `pmm_get_total_pages`).
    pub fn total_pages(&self) -> u64 {
        self.stats.total
    }

    /// Splits the memory into `nodes` NUMA nodes: each 2 MiB chunk goes to
    /// the node whose memory holds its first usable frame (chunks outside
    /// every range go to node 0 and are counted in the report);
    /// allocations then fall back from a node to the others in order of
    /// `distance(from, to)`. Allocated frames stay allocated; only where
    /// future allocations come from changes.
    pub fn set_nodes(
        &mut self,
        nodes: usize,
        memory: &[NodeMemory],
        distance: impl Fn(usize, usize) -> u8,
    ) -> Result<NodeReport, NodeError> {
        if nodes == 0 || nodes > MAX_NODES {
            return Err(NodeError::TooManyNodes);
        }
        if memory.iter().any(|entry| entry.node as usize >= nodes) {
            return Err(NodeError::NoSuchNode);
        }
        for node in 0..MAX_NODES {
            for kind in 0..KINDS {
                if let Some(chunk) = self.current[node][kind].take() {
                    self.release(chunk);
                }
            }
        }
        let chunk_bytes = CHUNK_FRAMES as u64 * PAGE_SIZE;
        let mut report = NodeReport::default();
        let mut total = [0u64; MAX_NODES];
        let mut last_chunk = None;
        for index in 0..self.usable.as_slice().len() {
            let range = self.usable.as_slice()[index];
            let mut address = range.start;
            while address < range.end {
                let chunk = ((address - self.base) / chunk_bytes) as usize;
                let chunk_end = (self.base + (chunk as u64 + 1) * chunk_bytes).min(range.end);
                let frames = (chunk_end - address) / PAGE_SIZE;
                if last_chunk != Some(chunk) {
                    // The chunk's first usable frame decides its node.
                    let node = memory
                        .iter()
                        .find(|entry| entry.range.contains(address))
                        .map(|entry| entry.node);
                    let mut info = self.chunks.get(chunk);
                    info.node = node.unwrap_or(0);
                    if node.is_none() {
                        report.unassigned_chunks += 1;
                    }
                    self.chunks.set(chunk, info);
                    last_chunk = Some(chunk);
                }
                total[self.chunks.node_of(chunk)] += frames;
                address = chunk_end;
            }
        }
        for from in 0..nodes {
            let mut order: ArrayVec<u8, MAX_NODES> = (0..nodes as u8).collect();
            order
                .sort_unstable_by_key(|&to| (to as usize != from, distance(from, to as usize), to));
            self.fallback[from][..nodes].copy_from_slice(&order);
        }
        self.node_total = total;
        self.nodes = nodes;
        Ok(report)
    }

    /// The physical span the bitmaps cover (from the 1 GiB boundary below
    /// the lowest usable frame, whole 2 MiB chunks).
    pub fn span(&self) -> PhysRange {
        PhysRange::from_len(self.base, self.used.frames() as u64 * PAGE_SIZE)
    }

    /// Nodes (1 unless `set_nodes` made more).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The node a managed address belongs to.
    pub fn node_of(&self, address: u64) -> Option<usize> {
        if !self.usable.contains(address) {
            return None;
        }
        Some(self.chunks.node_of(self.index_of(address) / CHUNK_FRAMES))
    }

    /// The nodes allocations near `node` fall back to, nearest first.
    pub fn fallback_order(&self, node: usize) -> &[u8] {
        &self.fallback[node][..self.nodes]
    }

    /// Counters of one node. O(chunks).
    pub fn node_stats(&self, node: usize) -> NodeStats {
        let mut free = 0;
        let mut largest = None;
        for chunk in (0..self.chunks.len()).filter(|&c| self.chunks.node_of(c) == node) {
            let info = self.chunks.get(chunk);
            free += u64::from(info.free);
            if info.free > 0 && info.free as usize != CHUNK_FRAMES {
                let words = self.used.words(chunk * CHUNK_WORDS, CHUNK_WORDS);
                largest = largest.max(largest_free_order(words));
            }
        }
        if self.chunks.whole_count(node) > 0 {
            let mut order = CHUNK_ORDER;
            while order < MAX_ORDER
                && self
                    .chunks
                    .whole_run(node, 1 << (order + 1 - CHUNK_ORDER))
                    .is_some()
            {
                order += 1;
            }
            largest = Some(order);
        }
        NodeStats {
            total: self.node_total[node],
            free,
            largest_free_order: largest,
        }
    }

    /// Free 2 MiB chunks (each an order-9 block ready to hand out).
    pub fn free_chunks(&self) -> usize {
        (0..self.nodes)
            .map(|node| self.chunks.whole_count(node))
            .sum()
    }

    /// Chunks by state: (whole, then per kind of [`Mobility::ALL`] the
    /// chunks it owns). O(chunks).
    pub fn chunk_counts(&self) -> ChunkCounts {
        let mut counts = ChunkCounts::default();
        for chunk in 0..self.chunks.len() {
            let info = self.chunks.get(chunk);
            if info.free as usize == CHUNK_FRAMES {
                counts.whole += 1;
            } else if !info.holes || self.has_allocated(chunk) {
                counts.owned[info.kind as usize] += 1;
            }
        }
        counts
    }

    /// Whether `chunk` holds allocated frames (a block starts in it, or
    /// a block from an earlier chunk runs into it), not only reservations.
    fn has_allocated(&self, chunk: usize) -> bool {
        let first = chunk * CHUNK_WORDS;
        let index = chunk * CHUNK_FRAMES;
        self.starts[first..first + CHUNK_WORDS]
            .iter()
            .any(|&word| word != 0)
            || (self.used.is_used(index)
                && self.all_allocatable(self.base + index as u64 * PAGE_SIZE, 1))
    }

    /// Every run of free frames, in address order, read from the bitmap
    /// (nothing changes). O(bitmap words) in all.
    pub fn free_runs(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let mut from = 0;
        core::iter::from_fn(move || {
            let start = self.used.next_free(from)?;
            let end = self.used.next_used(start).unwrap_or(self.used.frames());
            from = end;
            let address = self.base + start as u64 * PAGE_SIZE;
            Some(PhysRange::from_len(
                address,
                (end - start) as u64 * PAGE_SIZE,
            ))
        })
    }

    /// Longest run of free frames (scans the bitmap).
    pub fn largest_free_run(&self) -> u64 {
        self.used.longest_free_run() as u64
    }
}

/// The order the free frame at `index` merges into within its chunk.
#[inline]
fn merged_single(used: &Bitmap<'_>, index: usize) -> u32 {
    let chunk = index / CHUNK_FRAMES;
    merged_order(
        used.words(chunk * CHUNK_WORDS, CHUNK_WORDS),
        index % CHUNK_FRAMES,
        0,
    )
}

/// Memory of one NUMA node (from the SRAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeMemory {
    /// The node, 0-based.
    pub node: u8,
    /// Its physical memory.
    pub range: PhysRange,
}

/// Why `set_nodes` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// No node, or more than [`MAX_NODES`].
    TooManyNodes,
    /// A memory range names a node past the count.
    NoSuchNode,
}

/// What `set_nodes` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// Chunks of usable memory in no node's ranges (given to node 0).
    pub unassigned_chunks: usize,
}

/// Counters of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStats {
    /// Usable frames (free, used or reserved).
    pub total: u64,
    /// Free frames.
    pub free: u64,
    /// Order of the largest free block (`None`: nothing free).
    pub largest_free_order: Option<u32>,
}

/// How the 2 MiB chunks are used (see [`FrameAllocator::chunk_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Chunks with every frame free.
    pub whole: usize,
    /// Chunks holding allocations, by kind ([`Mobility::ALL`] order).
    pub owned: [usize; KINDS],
}

/// Finds room for `bytes` inside `usable` that overlaps none of
/// `reservations`: the lowest page-aligned address that fits.
pub fn find_free_space(
    usable: &RangeSet<MAX_RANGES>,
    reservations: &[Reservation],
    bytes: u64,
) -> Option<PhysRange> {
    let bytes = bytes.checked_next_multiple_of(PAGE_SIZE)?;
    for range in usable.as_slice() {
        let mut candidate = PhysRange::from_len(range.start, bytes);
        while candidate.end <= range.end {
            let blocker = reservations
                .iter()
                .map(|reservation| outward_to_pages(reservation.range))
                .filter(|reserved| reserved.overlaps(&candidate))
                .map(|reserved| reserved.end)
                .max();
            match blocker {
                None => return Some(candidate),
                Some(end) => candidate = PhysRange::from_len(end, bytes),
            }
        }
    }
    None
}

#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod tests;
