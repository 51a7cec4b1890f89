//! Host tests of the heap: unit tests of each path and a property test of
//! random alloc/free/realloc sequences against a model.

use std::alloc::Layout;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use super::{bitmap_words, DEBUG_OVERHEAD};
use crate::testing;
use crate::MmError;

const MIB: usize = 1 << 20;

/// Host memory for a heap of up to `max` bytes, `initial` of it "mapped";
/// the grow hook maps more of the reservation, up to `max`.
struct Arena {
    memory: testing::Arena,
    bitmaps: Vec<u64>,
}

struct Reserve {
    limit: usize,
    calls: usize,
    /// Ranges remapped, and whether remapping works.
    remaps: usize,
    remap_fails: bool,
    /// Pages the hook can still back (a frame allocator's free frames);
    /// `None`: no limit but `limit`, and no pages taken back.
    frames: Option<usize>,
}

impl Reserve {
    /// Takes the frames for `bytes` from the budget; `false` if short.
    fn take_frames(&mut self, bytes: usize) -> bool {
        match &mut self.frames {
            Some(frames) if *frames < bytes / 4096 => false,
            Some(frames) => {
                *frames -= bytes / 4096;
                true
            }
            None => true,
        }
    }
}

/// What a test writes into pages the heap gave back (standing in for
/// unmapping them): `Reserve::remap` finds it intact or the heap touched
/// memory it had given back.
const GIVEN_BACK: u8 = 0xA5;

/// Fills `[start, end)`, just given back by the heap, with [`GIVEN_BACK`].
fn unmap(start: usize, end: usize) {
    // SAFETY: pages of the test's arena that the heap gave back: nothing
    // refers to them until the heap remaps them.
    unsafe { (start as *mut u8).write_bytes(GIVEN_BACK, end - start) };
}

impl Grow for Reserve {
    fn grow(&mut self, end: usize, bytes: usize) -> bool {
        assert_eq!(bytes % 4096, 0);
        self.calls += 1;
        end + bytes <= self.limit && self.take_frames(bytes)
    }

    fn can_ungrow(&self) -> bool {
        self.frames.is_some()
    }

    fn short_of_memory(&self, bytes: usize) -> bool {
        self.frames.is_some_and(|frames| frames < bytes / 4096)
    }

    fn ungrow(&mut self, start: usize, bytes: usize) {
        assert_eq!((start % 4096, bytes % 4096), (0, 0));
        unmap(start, start + bytes);
        if let Some(frames) = &mut self.frames {
            *frames += bytes / 4096;
        }
    }

    fn remap(&mut self, start: usize, bytes: usize) -> bool {
        assert_eq!((start % 4096, bytes % 4096), (0, 0));
        assert!(bytes > 0);
        if self.remap_fails || !self.take_frames(bytes) {
            return false;
        }
        // SAFETY: pages of the arena the heap gave back (test contract).
        let pages = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, bytes) };
        assert!(
            pages.iter().all(|&byte| byte == GIVEN_BACK),
            "the heap wrote into pages it had given back"
        );
        pages.fill(0); // fresh frames are zeroed
        self.remaps += 1;
        true
    }
}

impl Arena {
    fn new(max: usize) -> Self {
        Self {
            memory: testing::Arena::new(max),
            bitmaps: vec![0; bitmap_words(max)],
        }
    }

    fn heap(&mut self, initial: usize, debug_checks: bool) -> Heap<'_, Reserve> {
        let checks = if debug_checks {
            DebugChecks::On
        } else {
            DebugChecks::Off
        };
        let (memory, max) = (self.memory.base(), self.memory.len());
        let grow = Reserve {
            limit: memory.as_ptr().addr() + max,
            calls: 0,
            remaps: 0,
            remap_fails: false,
            frames: None,
        };
        // SAFETY: the arena owns [base, base + max) for the heap's lifetime
        // (the heap borrows the arena), 4096-aligned.
        unsafe { Heap::new(memory, initial, max, grow, &mut self.bitmaps, checks) }.unwrap()
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn allocates_aligned_disjoint_blocks_and_coalesces() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let a = heap.kmalloc(24).unwrap().as_ptr();
    let b = heap.kmalloc(1000).unwrap().as_ptr();
    let c = heap.alloc(layout(64, 4096)).unwrap().as_ptr();
    assert_eq!(a as usize % 16, 0);
    assert_eq!(b as usize % 16, 0);
    assert_eq!(c as usize % 4096, 0);
    assert!(heap.usable_size(a).unwrap() >= 24);
    heap.verify().unwrap();
    assert_eq!(heap.stats().live_allocations, 3);
    for pointer in [b, a, c] {
        heap.free(pointer).unwrap();
        heap.verify().unwrap();
    }
    let stats = heap.stats();
    assert_eq!((stats.used, stats.live_allocations), (0, 0));
    // Everything coalesces back into one block once the quick lists drain.
    heap.trim();
    heap.verify().unwrap();
    assert_eq!(heap.largest_free_block(), MIB - 16);
    let whole = heap.kmalloc(MIB - 32).unwrap();
    heap.free(whole.as_ptr()).unwrap();
}

/// A freed block of up to 2 KiB waits in its quick list and is the next
/// request of its size, at once; the TLSF lists alone would not hand it
/// out (a 2,016-byte block is in no list sure to hold 2,016 bytes).
#[test]
fn freed_blocks_up_to_2_kib_serve_the_next_request_of_their_size() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    for size in [300, 1000, 2000, 2048] {
        let block = heap.kmalloc(size).unwrap();
        let guard = heap.kmalloc(size).unwrap();
        heap.free(block.as_ptr()).unwrap();
        heap.verify().unwrap();
        assert_eq!(heap.kmalloc(size).unwrap(), block, "{size} bytes");
        heap.free(block.as_ptr()).unwrap();
        heap.free(guard.as_ptr()).unwrap();
    }
    // A larger block (2,057 bytes take 2,080) goes back to the TLSF lists.
    let block = heap.kmalloc(2057).unwrap();
    let guard = heap.kmalloc(2057).unwrap();
    heap.free(block.as_ptr()).unwrap();
    assert_ne!(heap.kmalloc(2057).unwrap(), block);
    heap.free(guard.as_ptr()).unwrap();
    heap.verify().unwrap();
}

/// A freed block of quick-list size whose predecessor is free merges with
/// it rather than wait in a quick list between free memory.
#[test]
fn a_freed_block_with_a_free_predecessor_merges_instead_of_waiting() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let first = heap.kmalloc(3000).unwrap().as_ptr();
    let second = heap.kmalloc(1000).unwrap().as_ptr();
    let guard = heap.kmalloc(1000).unwrap().as_ptr();
    heap.free(first).unwrap(); // too big for a quick list: free at once
    heap.free(second).unwrap();
    heap.verify().unwrap();
    let merged = first.addr() - HEADER;
    assert!(heap
        .tlsf
        .blocks()
        .any(|(block, size, free)| block == merged && free && size == 3008 + 1008));
    assert_eq!(cached_bytes(&heap), 0);
    // With a used predecessor, a freed block waits in its quick list.
    let [a, b] = [0; 2].map(|_| heap.kmalloc(1000).unwrap().as_ptr());
    assert_eq!(b.addr() - a.addr(), 1008, "adjacent blocks");
    heap.free(b).unwrap();
    assert_eq!(cached_bytes(&heap), 1008);
    assert_eq!(heap.kmalloc(1000).unwrap().as_ptr(), b);
    for pointer in [a, b, guard] {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();
}

/// Bytes of the used TLSF blocks outside the slab pages that hold no live
/// allocation: the blocks waiting in the quick lists and the page cache.
fn cached_bytes(heap: &Heap<'_, Reserve>) -> usize {
    heap.tlsf
        .blocks()
        .filter(|&(block, _, free)| {
            let payload = block + HEADER;
            !free && !heap.slabs.contains(payload) && !heap.is_live(payload)
        })
        .map(|(_, size, _)| size)
        .sum()
}

/// The quick lists keep at most `QUICK_BYTES` from coalescing: the frees
/// beyond that merge at once; a trim merges the rest.
#[test]
fn the_quick_lists_keep_at_most_their_byte_budget() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(4 * MIB, false);
    // 64 blocks (a full list) of each of 16 sizes from 1,040 to 2,000
    // bytes: 1.5 MiB, three times the budget.
    let blocks: Vec<_> = (0..64 * 16)
        .map(|i| heap.kmalloc(1040 + 64 * (i % 16)).unwrap().as_ptr())
        .collect();
    for &block in &blocks {
        heap.free(block).unwrap();
        assert!(cached_bytes(&heap) <= super::quick::QUICK_BYTES);
    }
    heap.verify().unwrap();
    let cached = cached_bytes(&heap);
    assert!(cached > super::quick::QUICK_BYTES - QUICK_LIMIT, "{cached}");
    assert_eq!(heap.stats().live_allocations, 0);
    heap.trim();
    heap.verify().unwrap();
    assert_eq!(cached_bytes(&heap), 0);
    assert_eq!(heap.largest_free_block(), 4 * MIB - 16);
}

#[test]
fn bad_frees_are_reported_and_change_nothing() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, true);
    let a = heap.kmalloc(100).unwrap().as_ptr();
    let b = heap.kmalloc(100).unwrap().as_ptr();
    let before = heap.stats();
    let mut on_stack = 0u64;
    assert_eq!(
        heap.free(&mut on_stack as *mut u64 as *mut u8),
        Err(MmError::InvalidFree)
    );
    assert_eq!(heap.free(a.wrapping_add(16)), Err(MmError::InvalidFree));
    assert_eq!(heap.free(a.wrapping_add(1)), Err(MmError::InvalidFree));
    assert_eq!(heap.free(core::ptr::null_mut()), Err(MmError::InvalidFree));
    assert_eq!(heap.stats(), before);
    heap.free(a).unwrap();
    let after = heap.stats();
    assert_eq!(heap.free(a), Err(MmError::DoubleFree));
    assert_eq!(heap.stats(), after);
    heap.verify().unwrap();
    // Poisoning filled the freed payload (past the free-list links).
    // SAFETY: reading heap memory we manage; it is free, not unmapped.
    let poisoned = unsafe { core::slice::from_raw_parts(a.add(24), 64) };
    assert!(poisoned.iter().all(|&byte| byte == 0xDD));
    heap.free(b).unwrap();
    heap.verify().unwrap();
}

/// With debug checks off, small frees take an inline path (recent list)
/// and the rest an out-of-line one; bad frees must be caught on both.
#[test]
fn bad_frees_are_caught_on_the_fast_and_slow_paths() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let slots: Vec<*mut u8> = (0..100)
        .map(|_| heap.kmalloc(32).unwrap().as_ptr())
        .collect();
    let block = heap.kmalloc(1000).unwrap().as_ptr();
    // The first 64 frees fill the class's recent list; the rest go to
    // their pages.
    for &slot in &slots[..70] {
        heap.free(slot).unwrap();
    }
    heap.free(block).unwrap();
    let before = heap.stats();
    for pointer in [slots[0], slots[63], slots[64], slots[69], block] {
        assert_eq!(heap.free(pointer), Err(MmError::DoubleFree), "{pointer:p}");
    }
    let live = slots[80];
    for pointer in [live.wrapping_add(16), live.wrapping_add(8)] {
        assert_eq!(heap.free(pointer), Err(MmError::InvalidFree), "{pointer:p}");
    }
    assert_eq!(heap.stats(), before);
    heap.verify().unwrap();
    let other = heap.kmalloc(2000).unwrap().as_ptr();
    let before_other = heap.stats();
    assert_eq!(heap.free(other.wrapping_add(32)), Err(MmError::InvalidFree));
    assert_eq!(heap.stats(), before_other);
    heap.free(other).unwrap();
    assert_eq!(heap.stats().used, before.used);
    heap.verify().unwrap();
    for &slot in &slots[70..] {
        heap.free(slot).unwrap();
    }
    assert_eq!(heap.stats().used, 0);
    heap.verify().unwrap();
}

/// Only live allocations have a bit in the live bitmap; a refused pointer
/// is told apart on the error path: into freed memory (also after the block
/// merged with a free neighbour, or while it waits in a quick list) is a
/// double free, into a live block or never-handed-out slab slack is not.
#[test]
fn refused_pointers_are_classified_after_merging_and_caching() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    // Blocks too big for the quick lists, so that freeing merges them.
    let [a, b, c] = [0; 3].map(|_| heap.kmalloc(3000).unwrap().as_ptr());
    assert_eq!(b as usize - a as usize, 3008, "adjacent blocks");
    heap.free(a).unwrap();
    heap.free(b).unwrap(); // merges into a's free block: b's header is gone
    let before = heap.stats();
    for pointer in [a, b, a.wrapping_add(512), b.wrapping_add(64)] {
        assert_eq!(heap.free(pointer), Err(MmError::DoubleFree), "{pointer:p}");
    }
    assert_eq!(heap.free(c.wrapping_add(64)), Err(MmError::InvalidFree));
    // A 300-byte block is small enough for a quick list (still a used
    // block to the TLSF part) once freed.
    let quick = heap
        .alloc(Layout::from_size_align(300, 32).unwrap())
        .unwrap()
        .as_ptr();
    heap.free(quick).unwrap();
    let cached = heap.stats();
    assert_eq!(heap.free(quick), Err(MmError::DoubleFree));
    assert_eq!(heap.free(quick.wrapping_add(32)), Err(MmError::DoubleFree));
    assert_eq!(heap.stats(), cached);
    assert_eq!(cached.live_allocations, before.live_allocations);
    heap.verify().unwrap();
    heap.free(c).unwrap();
    assert_eq!(heap.stats().live_allocations, 0);
    heap.verify().unwrap();
}

#[test]
fn grows_in_steps_up_to_the_cap_then_fails_cleanly() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(64 * 1024, false);
    let mut blocks = Vec::new();
    loop {
        match heap.kmalloc(30_000) {
            Ok(pointer) => {
                // SAFETY: a fresh 30,000-byte block.
                unsafe { pointer.as_ptr().write_bytes(blocks.len() as u8, 30_000) };
                blocks.push(pointer.as_ptr());
            }
            Err(error) => {
                assert_eq!(error, MmError::HeapExhausted);
                break;
            }
        }
    }
    assert_eq!(heap.stats().mapped, 4 * MIB);
    assert_eq!(heap.growth_left(), 0);
    assert!(
        blocks.len() >= 135,
        "only {} blocks fit in 4 MiB",
        blocks.len()
    );
    heap.verify().unwrap();
    // Earlier blocks are intact; small allocations still work after a free.
    for (index, &pointer) in blocks.iter().enumerate() {
        // SAFETY: a live block of 30,000 bytes.
        let bytes = unsafe { core::slice::from_raw_parts(pointer, 30_000) };
        assert!(bytes.iter().all(|&b| b == index as u8));
    }
    heap.free(blocks.pop().unwrap()).unwrap();
    let small = heap.kmalloc(64).unwrap();
    heap.free(small.as_ptr()).unwrap();
    for pointer in blocks {
        heap.free(pointer).unwrap();
    }
    heap.trim();
    heap.verify().unwrap();
    assert_eq!(heap.largest_free_block(), 4 * MIB - 16);
}

#[test]
fn absurd_requests_fail_without_panicking() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let before = heap.stats();
    assert_eq!(heap.kmalloc(usize::MAX).err(), Some(MmError::HeapExhausted));
    assert_eq!(
        heap.kmalloc(usize::MAX - 8).err(),
        Some(MmError::HeapExhausted)
    );
    assert_eq!(heap.kmalloc(2 * MIB).err(), Some(MmError::HeapExhausted));
    assert_eq!(
        heap.alloc(layout(8, 8192)).err(),
        Some(MmError::InvalidArgument)
    );
    assert_eq!(
        heap.alloc(layout(MIB, 4096)).err(),
        Some(MmError::HeapExhausted)
    );
    assert_eq!(heap.stats().used, before.used);
    // kmalloc(0) gives a valid, freeable minimum block.
    let zero = heap.kmalloc(0).unwrap();
    heap.free(zero.as_ptr()).unwrap();
    heap.verify().unwrap();
}

#[test]
fn realloc_grows_in_place_and_moves_when_needed() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    // 300 bytes: a TLSF block (smaller requests live in slab slots).
    let a = heap.kmalloc(300).unwrap().as_ptr();
    // SAFETY: a live 300-byte block.
    unsafe { a.write_bytes(7, 300) };
    let grown = heap.realloc(a, layout(300, 16), 5000).unwrap().as_ptr();
    assert_eq!(grown, a, "the free space after it is used in place");
    let blocker = heap.kmalloc(16).unwrap().as_ptr();
    let moved = heap
        .realloc(grown, layout(5000, 16), 20_000)
        .unwrap()
        .as_ptr();
    // SAFETY: a live block of at least 20,000 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(moved, 300) };
    assert!(bytes.iter().all(|&b| b == 7));
    let shrunk = heap
        .realloc(moved, layout(20_000, 16), 1000)
        .unwrap()
        .as_ptr();
    assert_eq!(shrunk, moved, "a block shrinks in place");
    heap.verify().unwrap();
    // Shrunk to what a slab slot holds, it moves into one.
    let used = heap.stats().used;
    let slot = heap.realloc(shrunk, layout(1000, 16), 10).unwrap().as_ptr();
    assert_ne!(slot, shrunk);
    assert_eq!(heap.usable_size(slot), Ok(16));
    // SAFETY: a live 10-byte allocation.
    let bytes = unsafe { core::slice::from_raw_parts(slot, 10) };
    assert!(bytes.iter().all(|&b| b == 7), "contents moved with it");
    assert!(heap.stats().used < used);
    assert_eq!(heap.free(shrunk), Err(MmError::DoubleFree));
    heap.verify().unwrap();
    let shrunk = slot;
    heap.free(shrunk).unwrap();
    heap.free(blocker).unwrap();
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
}

/// A block whose successor is used but whose predecessor is free grows
/// down into it: the contents slide to the predecessor's payload, no new
/// block is taken, the rest of the span stays free; an aligned block
/// does so only if the predecessor keeps its alignment.
#[test]
fn realloc_grows_into_a_free_predecessor() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let below = heap.kmalloc(3000).unwrap().as_ptr();
    let grower = heap.kmalloc(1000).unwrap().as_ptr();
    let blocker = heap.kmalloc(1000).unwrap().as_ptr();
    // SAFETY: a live 1000-byte block.
    unsafe { grower.write_bytes(0x3C, 1000) };
    heap.free(below).unwrap();
    let allocations = heap.stats().total_allocations;
    let grown = heap
        .realloc(grower, layout(1000, 16), 2500)
        .unwrap()
        .as_ptr();
    assert_eq!(grown, below, "slid down into the free predecessor");
    assert_eq!(heap.stats().total_allocations, allocations, "no new block");
    // SAFETY: a live block of at least 2500 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(grown, 1000) };
    assert!(bytes.iter().all(|&b| b == 0x3C), "contents moved with it");
    assert!(
        heap.free(grower).is_err(),
        "the old address is no allocation"
    );
    heap.verify().unwrap();
    // Grows into the predecessor and the successor together.
    heap.free(blocker).unwrap();
    let after = heap.kmalloc(1000).unwrap().as_ptr();
    heap.verify().unwrap();
    heap.free(grown).unwrap();
    heap.free(after).unwrap();
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
    // An aligned block does not slide to a misaligned predecessor.
    let pad = heap.kmalloc(600).unwrap().as_ptr();
    let aligned = heap.alloc(layout(4096, 4096)).unwrap().as_ptr();
    let fence = heap.kmalloc(600).unwrap().as_ptr();
    heap.free(pad).unwrap();
    heap.verify().unwrap();
    let moved = heap
        .realloc(aligned, layout(4096, 4096), 6000)
        .unwrap()
        .as_ptr();
    assert_eq!(moved as usize % 4096, 0);
    heap.verify().unwrap();
    for pointer in [moved, fence] {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
}

/// A growing block that must move gets room after it: it skips a hole
/// that would fit it exactly (and leave it stuck between two used
/// blocks) for a free block of twice its size, so the next growth by up
/// to x2 stays in place.
#[test]
fn a_moved_growing_block_has_room_to_grow_again() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let vector = heap.kmalloc(1000).unwrap().as_ptr();
    let blocker = heap.kmalloc(1000).unwrap().as_ptr();
    // A hole of 2048 bytes between used blocks: an exact fit for 2000.
    let hole = heap.kmalloc(2040).unwrap().as_ptr();
    let fence = heap.kmalloc(1000).unwrap().as_ptr();
    heap.free(hole).unwrap();
    let moved = heap
        .realloc(vector, layout(1000, 16), 2000)
        .unwrap()
        .as_ptr();
    assert_ne!(moved, vector);
    assert_ne!(moved, hole, "not into the tight hole");
    let grown = heap
        .realloc(moved, layout(2000, 16), 4000)
        .unwrap()
        .as_ptr();
    assert_eq!(grown, moved, "grown in place into its room");
    heap.verify().unwrap();
    for pointer in [grown, blocker, fence] {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
}

/// A freed page buffer waits whole in the page cache and serves the next
/// page-aligned request of its length; a block that only happens to lie
/// on the page grid is not cached; trimming merges the cache back.
#[test]
fn page_buffers_are_cached_whole_and_trimmed_back() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(4 * MIB, false);
    let first = heap.alloc(layout(8192, 4096)).unwrap().as_ptr();
    let fence = heap.alloc(layout(4096, 4096)).unwrap().as_ptr();
    heap.free(first).unwrap();
    heap.verify().unwrap();
    assert_eq!(heap.free(first), Err(MmError::DoubleFree));
    let free_blocks = heap.tlsf.blocks().filter(|block| block.2).count();
    let again = heap.alloc(layout(8192, 4096)).unwrap().as_ptr();
    assert_eq!(again, first, "taken back from the page cache");
    assert_eq!(
        heap.tlsf.blocks().filter(|block| block.2).count(),
        free_blocks,
        "without splitting a free block"
    );
    heap.free(again).unwrap();
    // An unaligned request whose block lands on the grid is not cached.
    let plain = heap.kmalloc(12_272).unwrap().as_ptr();
    assert_eq!(heap.tlsf.size_of(plain as usize - HEADER) % PAGE, 0);
    heap.free(plain).unwrap();
    assert!(heap.tlsf.is_free(plain as usize - HEADER));
    heap.free(fence).unwrap();
    heap.verify().unwrap();
    heap.trim();
    heap.verify().unwrap();
    assert_eq!(heap.largest_free_block(), heap.stats().mapped - 16);
}

/// A page buffer fits on the grid inside a free block that starts off
/// it, after a leading free block, when the block has room: no padding
/// of a fresh block, and no trim (which would empty the quick lists).
#[test]
fn a_page_buffer_goes_on_the_grid_inside_an_off_grid_free_block() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(4 * MIB, false);
    let before = heap.kmalloc(600).unwrap().as_ptr();
    let cached = heap.kmalloc(600).unwrap().as_ptr();
    let hole = heap.kmalloc(20_000).unwrap().as_ptr();
    let fence = heap.kmalloc(3000).unwrap().as_ptr();
    let start = hole as usize - HEADER;
    assert!(
        !hole.addr().is_multiple_of(PAGE),
        "the hole starts off the grid"
    );
    heap.free(cached).unwrap();
    heap.free(hole).unwrap();
    // In its quick list, a block stays used for the TLSF lists.
    let quick_listed = |heap: &Heap<'_, _>| !heap.tlsf.is_free(cached as usize - HEADER);
    assert!(quick_listed(&heap));
    let buffer = heap.alloc(layout(8192, 4096)).unwrap().as_ptr();
    let end = start + heap.tlsf.size_of(buffer as usize - HEADER);
    assert!(buffer.addr().is_multiple_of(PAGE));
    assert!(
        start < buffer as usize && end <= start + 20_016 + HEADER,
        "inside the hole"
    );
    assert!(quick_listed(&heap), "not trimmed");
    assert_eq!(heap.kmalloc(600).unwrap().as_ptr(), cached);
    heap.verify().unwrap();
    for pointer in [buffer, fence, cached, before] {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
}

proptest! {
    #![proptest_config(testing::cases(48))]

    /// Page-aligned buffers of a page and more stay on the page grid:
    /// every such block starts 8 bytes before a page and is whole pages
    /// long, so after any mix of them and small blocks freed, no free
    /// block is a padding fragment except at most one before the first
    /// page and those next to small blocks; with only buffers, an
    /// allocation after the first never pads.
    #[test]
    fn page_aligned_buffers_stay_on_the_page_grid(
        ops in proptest::collection::vec((0usize..3, 0usize..3, any::<prop::sample::Index>()), 1..400),
        small in any::<bool>(),
    ) {
        let mut arena = Arena::new(8 * MIB);
        let mut heap = arena.heap(64 * 1024, false);
        let mut live: Vec<*mut u8> = Vec::new();
        for (action, pages, which) in ops {
            if action < 2 {
                let size = 4096 << pages;
                let pointer = heap.alloc(layout(size, 4096)).unwrap().as_ptr();
                prop_assert_eq!(pointer as usize % 4096, 0);
                prop_assert!(heap.usable_size(pointer).unwrap() >= size);
                live.push(pointer);
                if small && action == 1 {
                    live.push(heap.kmalloc(600).unwrap().as_ptr());
                }
            } else if !live.is_empty() {
                heap.free(live.swap_remove(which.index(live.len()))).unwrap();
            }
            heap.verify().unwrap();
            for (block, size, free) in heap.tlsf.blocks() {
                if !free && (block + HEADER).is_multiple_of(PAGE) && size >= PAGE {
                    prop_assert_eq!(size % PAGE, 0, "a page block off the grid");
                }
            }
            if !small {
                let fragments = heap
                    .tlsf
                    .blocks()
                    .filter(|&(block, _, free)| free && !(block + HEADER).is_multiple_of(PAGE))
                    .count();
                prop_assert!(fragments <= 1, "{} padding fragments", fragments);
            }
        }
        for pointer in live {
            heap.free(pointer).unwrap();
        }
        heap.verify().unwrap();
        prop_assert_eq!(heap.stats().used, 0);
    }
}

/// A block shrunk to slab size moves into a free slot of its class only
/// if one is at hand: it never takes a new slab page for that, so a shrink
/// neither grows the heap nor counts a failed allocation.
#[test]
fn realloc_shrinks_in_place_when_no_slot_is_at_hand() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(8192, false);
    let big = heap.kmalloc(3000).unwrap().as_ptr();
    let other = heap.kmalloc(3000).unwrap().as_ptr();
    let before = heap.stats();
    // No 16-byte slot exists yet, and a page for one would need growth.
    let shrunk = heap.realloc(big, layout(3000, 16), 10).unwrap().as_ptr();
    assert_eq!(shrunk, big, "shrunk in place");
    let after = heap.stats();
    assert_eq!(after.mapped, before.mapped, "no growth for a shrink");
    assert_eq!(after.failed_allocations, before.failed_allocations);
    assert_eq!(after.slab_free, 0, "no slab page taken");
    heap.verify().unwrap();
    // With a freed 16-byte slot at hand, the next such shrink moves there.
    let slot = heap.kmalloc(10).unwrap().as_ptr();
    heap.free(slot).unwrap();
    // SAFETY: a live 3000-byte block.
    unsafe { other.write_bytes(5, 3000) };
    let moved = heap.realloc(other, layout(3000, 16), 10).unwrap().as_ptr();
    assert_eq!(moved, slot, "the slot freed last");
    // SAFETY: a live 10-byte allocation.
    let bytes = unsafe { core::slice::from_raw_parts(moved, 10) };
    assert!(bytes.iter().all(|&b| b == 5), "contents moved with it");
    assert_eq!(heap.free(other), Err(MmError::DoubleFree));
    heap.verify().unwrap();
    heap.free(moved).unwrap();
    heap.free(shrunk).unwrap();
    assert_eq!(heap.stats().live_allocations, 0);
    heap.verify().unwrap();
}

/// A slab page's block can end a few bytes past its page (a tail too
/// small to split off); a pointer there is slack, not a freed block, even
/// when the page's first slot was freed.
#[test]
fn slack_after_a_slab_page_is_not_a_double_free() {
    let mut arena = Arena::new(64 * 1024);
    let mut heap = arena.heap(64 * 1024, false);
    let start = heap.range().0;
    // A 4,064-byte block, then an 8,224-byte one: the second starts at
    // start + 4072, so a page-aligned payload inside it is at start + 8192
    // and leaves 16 bytes after the page, too few to split off.
    let a = heap.kmalloc(4056).unwrap().as_ptr();
    let gap = heap.kmalloc(8216).unwrap().as_ptr();
    assert_eq!(gap as usize, start + 4080);
    // Fill the rest with TLSF blocks, so that the gap, once freed, is the
    // only place a slab page fits.
    let mut fill = Vec::new();
    for size in [30_000, 8000, 4000, 1000, 300] {
        while let Ok(pointer) = heap.kmalloc(size) {
            fill.push(pointer.as_ptr());
        }
    }
    heap.free(gap).unwrap();
    let slot = heap.kmalloc(16).unwrap().as_ptr();
    assert_eq!(slot as usize, start + 8192, "the page went into the gap");
    heap.free(slot).unwrap();
    let before = heap.stats();
    let past = slot.wrapping_add(4096);
    assert_eq!(heap.free(past), Err(MmError::InvalidFree));
    assert_eq!(heap.stats(), before);
    heap.verify().unwrap();
    for pointer in fill.into_iter().chain([a]) {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();
}

#[test]
fn small_objects_share_slab_pages_that_go_back_when_empty() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let empty = heap.stats();
    // 64-byte slots: 63 per page, all in a few pages, 64 bytes apart.
    let blocks: Vec<*mut u8> = (0..1000)
        .map(|_| heap.kmalloc(64).unwrap().as_ptr())
        .collect();
    assert_eq!(blocks[1] as usize - blocks[0] as usize, 64);
    let pages: std::collections::BTreeSet<usize> =
        blocks.iter().map(|&b| b as usize & !4095).collect();
    assert_eq!(pages.len(), 1000usize.div_ceil(63));
    let stats = heap.stats();
    assert_eq!(stats.used, 1000 * 64);
    assert_eq!(stats.slab_free, (pages.len() * 63 - 1000) * 64);
    assert_eq!(stats.used + stats.free + stats.overhead, stats.mapped);
    heap.verify().unwrap();
    // The slack after a page's last slot and a pointer inside a slot are
    // not allocations.
    let page = *pages.iter().next().unwrap() as *mut u8;
    assert_eq!(page, blocks[0], "slots start at the page boundary");
    let before = heap.stats();
    assert_eq!(
        heap.free(page.wrapping_add(63 * 64)),
        Err(MmError::InvalidFree)
    );
    assert_eq!(
        heap.free(blocks[0].wrapping_add(16)),
        Err(MmError::InvalidFree)
    );
    assert_eq!(heap.stats(), before);
    // Sizes of one class reuse the slot just freed (LIFO).
    heap.free(blocks[500]).unwrap();
    assert_eq!(heap.free(blocks[500]), Err(MmError::DoubleFree));
    assert_eq!(heap.stats(), {
        let mut s = before;
        s.used -= 64;
        s.free += 64;
        s.slab_free += 64;
        s.live_allocations -= 1;
        s
    });
    let again = heap.kmalloc(50).unwrap().as_ptr();
    assert_eq!(again, blocks[500]);
    heap.free(again).unwrap();
    // Freeing everything returns all pages but the spare and those holding
    // the last 32 freed slots (kept warm for reuse); trim returns them too
    // and the heap is one free block again.
    for (index, &block) in blocks.iter().enumerate() {
        if index != 500 {
            heap.free(block).unwrap();
        }
    }
    heap.verify().unwrap();
    assert_eq!(heap.stats().used, 0);
    assert!(heap.stats().slab_free <= 33 * 4096);
    heap.trim();
    heap.verify().unwrap();
    assert_eq!(heap.stats().free, empty.free);
    assert_eq!(heap.stats().overhead, empty.overhead);
    assert_eq!(heap.largest_free_block(), MIB - 16);
}

#[test]
fn slab_slots_realloc_in_place_then_move_to_the_tlsf_lists() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, false);
    let a = heap.kmalloc(40).unwrap().as_ptr();
    // SAFETY: a live 40-byte slot.
    unsafe { a.write_bytes(9, 40) };
    // 40 bytes sit in a 48-byte slot: growing to 48 stays, 49 moves.
    assert_eq!(heap.realloc(a, layout(40, 16), 48).unwrap().as_ptr(), a);
    let b = heap.realloc(a, layout(48, 16), 49).unwrap().as_ptr();
    assert_ne!(b, a);
    let c = heap.realloc(b, layout(49, 16), 1000).unwrap().as_ptr();
    // SAFETY: a live block of at least 1000 bytes.
    let kept = unsafe { core::slice::from_raw_parts(c, 40) };
    assert!(kept.iter().all(|&byte| byte == 9));
    assert_eq!(heap.stats().live_allocations, 1);
    heap.verify().unwrap();
    heap.free(c).unwrap();
    heap.verify().unwrap();
}

#[test]
fn red_zones_catch_overflows_in_debug_mode() {
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(MIB, true);
    let a = heap.kmalloc(10).unwrap().as_ptr();
    let b = heap.kmalloc(100).unwrap().as_ptr();
    assert_eq!(heap.usable_size(a), Ok(10));
    // SAFETY: writing the 10 bytes we own, then one byte past them (on
    // purpose: still inside the block, in its red zone).
    unsafe {
        a.write_bytes(1, 10);
        a.add(10).write(0x42);
    }
    heap.free(a).unwrap();
    assert_eq!(heap.stats().red_zone_violations, 1);
    heap.free(b).unwrap();
    assert_eq!(heap.stats().red_zone_violations, 1);
    // The same in a TLSF block (over 256 bytes with the red zone).
    let d = heap.kmalloc(300).unwrap().as_ptr();
    // SAFETY: one byte past the 300 we own, inside the red zone.
    unsafe { d.add(300).write(0) };
    heap.free(d).unwrap();
    assert_eq!(heap.stats().red_zone_violations, 2);
    // realloc keeps the red zone after the new size.
    let c = heap.kmalloc(40).unwrap().as_ptr();
    let c = heap.realloc(c, layout(40, 16), 20).unwrap().as_ptr();
    assert_eq!(heap.usable_size(c), Ok(20));
    let c = heap.realloc(c, layout(20, 16), 3000).unwrap().as_ptr();
    heap.free(c).unwrap();
    assert_eq!(heap.stats().red_zone_violations, 2);
    heap.verify().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize, u32),
    Free(prop::sample::Index),
    Realloc(prop::sample::Index, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![4 => 1usize..256, 3 => 256usize..4096, 1 => 4096usize..65_536];
    prop_oneof![
        5 => (size.clone(), 0u32..13).prop_map(|(s, a)| Op::Alloc(s, a)),
        4 => any::<prop::sample::Index>().prop_map(Op::Free),
        2 => (any::<prop::sample::Index>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

proptest! {
    #![proptest_config(crate::testing::cases(96))]

    #[test]
    fn random_sequences_keep_every_invariant(
        ops in proptest::collection::vec(op(), 1..300),
        debug_checks in any::<bool>(),
    ) {
        let mut arena = Arena::new(2 * MIB);
        let mut heap = arena.heap(64 * 1024, debug_checks);
        // Model: payload address -> (size, align, fill byte).
        let mut live: BTreeMap<usize, (usize, usize, u8)> = BTreeMap::new();
        let mut fill = 0u8;
        let (start, _) = heap.range();
        for op in ops {
            match op {
                Op::Alloc(size, align_log) => {
                    let align = 1usize << align_log;
                    if let Ok(pointer) = heap.alloc(layout(size, align)) {
                        let address = pointer.as_ptr() as usize;
                        prop_assert_eq!(address % align.max(16), 0);
                        prop_assert!(address >= start && address + size <= heap.range().1);
                        if let Some((&below, &(below_size, _, _))) = live.range(..address).next_back() {
                            prop_assert!(below + below_size <= address, "overlaps the block below");
                        }
                        if let Some((&above, _)) = live.range(address..).next() {
                            prop_assert!(address + size <= above, "overlaps the block above");
                        }
                        fill = fill.wrapping_add(1);
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { pointer.as_ptr().write_bytes(fill, size) };
                        live.insert(address, (size, align, fill));
                    }
                }
                Op::Free(index) if !live.is_empty() => {
                    let address = *live.keys().nth(index.index(live.len())).unwrap();
                    let (size, _, byte) = live.remove(&address).unwrap();
                    // SAFETY: a live block of `size` bytes.
                    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, size) };
                    prop_assert!(bytes.iter().all(|&b| b == byte), "block contents changed");
                    heap.free(address as *mut u8).unwrap();
                    prop_assert_eq!(heap.free(address as *mut u8), Err(MmError::DoubleFree));
                }
                Op::Realloc(index, new_size) if !live.is_empty() => {
                    let address = *live.keys().nth(index.index(live.len())).unwrap();
                    let (size, align, byte) = live[&address];
                    if let Ok(pointer) = heap.realloc(address as *mut u8, layout(size, align), new_size) {
                        live.remove(&address);
                        let moved = pointer.as_ptr() as usize;
                        prop_assert_eq!(moved % align.max(16), 0);
                        let kept = size.min(new_size);
                        // SAFETY: a live block of at least `new_size` bytes.
                        let bytes = unsafe { core::slice::from_raw_parts(moved as *const u8, kept) };
                        prop_assert!(bytes.iter().all(|&b| b == byte), "realloc lost data");
                        // SAFETY: as above.
                        unsafe { (moved as *mut u8).write_bytes(byte, new_size) };
                        live.insert(moved, (new_size, align, byte));
                    }
                }
                _ => {}
            }
            if let Err(problem) = heap.verify() {
                return Err(TestCaseError::fail(problem));
            }
            prop_assert_eq!(heap.stats().live_allocations, live.len());
        }
        for &address in live.keys() {
            heap.free(address as *mut u8).unwrap();
        }
        heap.verify().unwrap();
        prop_assert_eq!(heap.stats().red_zone_violations, 0);
        // Coalescing: the whole (grown) heap fits in one allocation again,
        // small blocks cached in quick lists included.
        let mapped = heap.stats().mapped;
        let overhead = if debug_checks { DEBUG_OVERHEAD } else { 0 };
        let whole = heap.kmalloc(mapped - 32 - overhead);
        prop_assert!(whole.is_ok());
        heap.free(whole.unwrap().as_ptr()).unwrap();
        heap.trim();
        prop_assert_eq!(heap.largest_free_block(), mapped - 16);
    }
}

proptest! {
    #![proptest_config(crate::testing::cases(32))]

    /// Few size classes and long runs, so that slab pages go through every
    /// state (full, partial, empty spare, handed back) with the recent
    /// lists in between; contents, counters and `verify` are checked
    /// throughout.
    #[test]
    fn slab_pages_survive_long_runs_of_few_classes(
        ops in proptest::collection::vec((0usize..3, 0u8..10, any::<prop::sample::Index>()), 500..3000),
        debug_checks in any::<bool>(),
    ) {
        const SIZES: [usize; 3] = [8, 48, 200];
        let mut arena = Arena::new(MIB);
        let mut heap = arena.heap(64 * 1024, debug_checks);
        let empty = heap.stats();
        let mut live: Vec<(usize, usize, u8)> = Vec::new();
        for (step, (class, roll, pick)) in ops.into_iter().enumerate() {
            // Phases of mostly allocating and mostly freeing fill and empty
            // whole pages.
            let allocating = (step / 400) % 2 == 0;
            if live.is_empty() || (allocating && roll < 8) || (!allocating && roll < 2) {
                let size = SIZES[class];
                let pointer = heap.kmalloc(size).unwrap().as_ptr();
                let byte = step as u8;
                // SAFETY: a fresh allocation of `size` bytes.
                unsafe { pointer.write_bytes(byte, size) };
                live.push((pointer as usize, size, byte));
            } else {
                let (address, size, byte) = live.swap_remove(pick.index(live.len()));
                // SAFETY: a live allocation of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, size) };
                prop_assert!(bytes.iter().all(|&b| b == byte), "contents changed");
                heap.free(address as *mut u8).unwrap();
                prop_assert_eq!(heap.free(address as *mut u8), Err(MmError::DoubleFree));
            }
            if step % 50 == 0 {
                if let Err(problem) = heap.verify() {
                    return Err(TestCaseError::fail(problem));
                }
            }
            let stats = heap.stats();
            prop_assert_eq!(stats.live_allocations, live.len());
            prop_assert_eq!(stats.used + stats.free + stats.overhead, stats.mapped);
        }
        for (address, _, _) in live.drain(..) {
            heap.free(address as *mut u8).unwrap();
        }
        heap.verify().unwrap();
        heap.trim();
        heap.verify().unwrap();
        let stats = heap.stats();
        prop_assert_eq!((stats.used, stats.slab_free), (0, 0));
        prop_assert_eq!(stats.overhead, empty.overhead);
        prop_assert_eq!(heap.largest_free_block(), stats.mapped - 16);
        prop_assert_eq!(stats.red_zone_violations, 0);
    }
}

/// The heap's counters that a refused request must leave as they were:
/// bytes used, mapped and live blocks, and the sum of free and overhead.
/// (Before it fails, a request hands the heap's caches, the empty slab
/// pages kept as spares, back to the general pool: that moves bytes from
/// overhead and slab slots to plain free blocks, and loses nothing.)
fn settled(stats: &HeapStats) -> (usize, usize, usize, usize) {
    (
        stats.used,
        stats.mapped,
        stats.free + stats.overhead,
        stats.live_allocations,
    )
}

/// The fault-injection sweep over the heap: a workload that grows the heap
/// for large blocks, grows vectors by realloc, and takes slab pages for
/// small objects runs with its Nth growth refused, for N = 1, 2, ... until
/// a run needs no refusal. Every refused operation must report
/// `HeapExhausted`, leave the counters exactly as before it, keep
/// `verify()` passing and every live block's contents intact; the workload
/// then goes on.
#[test]
fn every_refused_growth_is_reported_and_leaves_nothing_behind() {
    use crate::fail::{FailPlan, FailPoint, FailingGrow};
    for nth in 1..1000u64 {
        // Room for the whole workload: only injected failures refuse.
        let mut arena = Arena::new(16 * MIB);
        let memory = arena.memory.base();
        let start = memory.as_ptr().addr();
        let mut point = FailPoint::off();
        point.arm(FailPlan::Nth(nth));
        let grow = FailingGrow {
            inner: Reserve {
                limit: start + 16 * MIB,
                calls: 0,
                remaps: 0,
                remap_fails: false,
                frames: None,
            },
            point,
        };
        // SAFETY: as in `Arena::heap`.
        let mut heap = unsafe {
            Heap::new(
                memory,
                64 * 1024,
                16 * MIB,
                grow,
                &mut arena.bitmaps,
                DebugChecks::On,
            )
        }
        .unwrap();
        let mut live: Vec<(usize, usize, u8)> = Vec::new();
        let mut refused = 0;
        // (size, realloc the last block to this size instead) per step.
        let steps = (0..120u32).map(|step| match step % 6 {
            0 => (48 + (step as usize % 5) * 16, None),
            1 => (100_000 + step as usize * 1_000, None),
            2 => (16, Some(((step as usize) << 11) + 40_000)),
            3 => (200, None),
            4 => (300_000, None),
            _ => (24, None),
        });
        for (step, (size, grow_last)) in steps.enumerate() {
            let before = heap.stats();
            let byte = step as u8;
            let result = match (grow_last, live.last().copied()) {
                (Some(new_size), Some((address, old, old_byte))) => heap
                    .realloc(address as *mut u8, layout(old, 16), new_size)
                    .map(|moved| {
                        live.pop();
                        // SAFETY: the resized block holds `new_size` bytes;
                        // the first of them up to `old` kept the old contents.
                        let kept = unsafe {
                            core::slice::from_raw_parts(moved.as_ptr(), old.min(new_size))
                        };
                        assert!(kept.iter().all(|&b| b == old_byte), "realloc lost data");
                        // SAFETY: as above.
                        unsafe { moved.as_ptr().write_bytes(byte, new_size) };
                        live.push((moved.as_ptr() as usize, new_size, byte));
                    }),
                _ => heap.kmalloc(size).map(|pointer| {
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { pointer.as_ptr().write_bytes(byte, size) };
                    live.push((pointer.as_ptr() as usize, size, byte));
                }),
            };
            if let Err(error) = result {
                refused += 1;
                assert_eq!(error, MmError::HeapExhausted, "step {step}, failure {nth}");
                assert_eq!(
                    settled(&heap.stats()),
                    settled(&before),
                    "step {step}, failure {nth}"
                );
                heap.verify().unwrap();
            }
            // Free some older blocks now and then, so holes are reused.
            if step % 7 == 6 && live.len() > 3 {
                let (address, size, byte) = live.remove(live.len() / 2);
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, size) };
                assert!(bytes.iter().all(|&b| b == byte), "contents changed");
                heap.free(address as *mut u8).unwrap();
            }
        }
        heap.verify().unwrap();
        for (address, size, byte) in live.drain(..) {
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, size) };
            assert!(bytes.iter().all(|&b| b == byte), "contents changed");
            heap.free(address as *mut u8).unwrap();
        }
        heap.verify().unwrap();
        assert_eq!(heap.stats().used, 0);
        assert_eq!(heap.stats().red_zone_violations, 0);
        if refused == 0 {
            // The workload needed fewer growths than `nth`: all swept.
            let points = nth - 1;
            assert!(
                points >= 5,
                "the workload grew the heap only {points} times"
            );
            println!("heap sweep: {points} growth failures injected, each recovered");
            return;
        }
    }
    panic!("the sweep did not end: the workload fails without injection");
}

/// A large free at the end hands whole pages back: `mapped` falls to what
/// the used blocks and the kept slack need, the heap stays consistent,
/// and it grows again on demand.
#[test]
fn a_large_free_at_the_end_gives_pages_back() {
    let mut arena = Arena::new(8 * MIB);
    let mut heap = arena.heap(256 * 1024, true);
    let small = heap.kmalloc(100).unwrap();
    assert_eq!(
        heap.release_tail(64 * 1024, 256 * 1024),
        None,
        "nothing to give"
    );
    let big = heap.kmalloc(4 * MIB).unwrap();
    let grown = heap.stats().mapped;
    assert!(grown > 4 * MIB);
    heap.free(big.as_ptr()).unwrap();
    let (start, end) = heap
        .release_tail(64 * 1024, 256 * 1024)
        .expect("a tail to give back");
    assert_eq!((start % 4096, end % 4096), (0, 0));
    assert_eq!(end - start, grown - heap.stats().mapped);
    assert_eq!(heap.range().1, start);
    assert!(
        heap.stats().mapped <= 256 * 1024 + 64 * 1024 + 4096,
        "{}",
        heap.stats().mapped
    );
    assert!(heap.stats().mapped >= 256 * 1024);
    heap.verify().unwrap();
    assert_eq!(
        heap.release_tail(64 * 1024, 256 * 1024),
        None,
        "nothing more"
    );
    // It grows again over the pages it gave back, and they work.
    let again = heap.kmalloc(2 * MIB).unwrap();
    // SAFETY: a fresh block of 2 MiB.
    unsafe { again.as_ptr().write_bytes(0x5A, 2 * MIB) };
    heap.verify().unwrap();
    heap.free(again.as_ptr()).unwrap();
    heap.free(small.as_ptr()).unwrap();
    assert!(heap.release_tail(0, 256 * 1024).is_some());
    assert_eq!(heap.stats().mapped, 256 * 1024, "down to the floor");
    assert_eq!(heap.stats().used, 0);
    heap.verify().unwrap();
}

proptest! {
    #![proptest_config(testing::cases(64))]

    /// Random sizes allocated, freed and the tail released in between:
    /// every block stays intact, verify() holds, the counters add up.
    #[test]
    fn releasing_the_tail_keeps_every_block(
        ops in proptest::collection::vec((0usize..4, 1usize..200_000, any::<prop::sample::Index>()), 1..150),
    ) {
        let mut arena = Arena::new(8 * MIB);
        let mut heap = arena.heap(128 * 1024, true);
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for (step, (action, size, which)) in ops.into_iter().enumerate() {
            match action {
                0 | 1 => {
                    if let Ok(pointer) = heap.kmalloc(size) {
                        let tag = step as u8;
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { pointer.as_ptr().write_bytes(tag, size) };
                        live.push((pointer.as_ptr(), size, tag));
                    }
                }
                2 if !live.is_empty() => {
                    let (pointer, _, _) = live.swap_remove(which.index(live.len()));
                    heap.free(pointer).unwrap();
                }
                _ => {
                    let before = heap.stats().mapped;
                    if let Some((start, end)) = heap.release_tail(32 * 1024, 128 * 1024) {
                        prop_assert_eq!(before - heap.stats().mapped, end - start);
                        for &(pointer, size, _) in &live {
                            prop_assert!(pointer.addr() + size <= start, "a live block past the cut");
                        }
                    }
                }
            }
            heap.verify().unwrap();
            let stats = heap.stats();
            prop_assert_eq!(stats.used + stats.free + stats.overhead, stats.mapped);
        }
        for (pointer, size, tag) in live {
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(pointer, size) };
            prop_assert!(bytes.iter().all(|&b| b == tag));
            heap.free(pointer).unwrap();
        }
    }
}

/// Calls `release_inside` until it has nothing more, "unmapping" what it
/// returns; returns the bytes given back.
fn release_all_inside(heap: &mut Heap<'_, Reserve>, min: usize, keep: usize) -> usize {
    let mut bytes = 0;
    while let Some((start, end)) = heap.release_inside(min, keep) {
        assert_eq!((start % 4096, end % 4096), (0, 0));
        assert!(end > start);
        unmap(start, end);
        bytes += end - start;
    }
    bytes
}

/// Freeing large blocks in the middle of the heap gives their whole pages
/// back (all but the pages of the free block's header and footer):
/// `mapped` falls by that much; reusing the space remaps it first, and
/// the blocks allocated there work.
#[test]
fn large_frees_inside_the_heap_give_pages_back() {
    let mut arena = Arena::new(8 * MIB);
    let mut heap = arena.heap(256 * 1024, false);
    let blocks: Vec<*mut u8> = (0..8)
        .map(|_| heap.kmalloc(512 * 1024).unwrap().as_ptr())
        .collect();
    let mapped = heap.stats().mapped;
    assert_eq!(
        release_all_inside(&mut heap, 256 * 1024, 0),
        0,
        "nothing free"
    );
    for &block in &blocks[2..6] {
        heap.free(block).unwrap();
    }
    let given = release_all_inside(&mut heap, 256 * 1024, 0);
    heap.verify().unwrap();
    let span = blocks[6] as usize - blocks[2] as usize;
    assert!(given >= span - 3 * 4096, "{given} of {span}");
    assert_eq!(heap.stats().mapped, mapped - given);
    assert_eq!(
        release_all_inside(&mut heap, 256 * 1024, 0),
        0,
        "given once"
    );
    // A small block in the freed span only remaps the page it needs.
    let small = heap.kmalloc(1000).unwrap().as_ptr();
    heap.verify().unwrap();
    // Allocate the span again: it is remapped before use.
    let again: Vec<*mut u8> = (0..4)
        .map(|_| heap.kmalloc(512 * 1024).unwrap().as_ptr())
        .collect();
    for &block in &again {
        // SAFETY: a fresh block of 512 KiB.
        unsafe { block.write_bytes(0x77, 512 * 1024) };
    }
    heap.verify().unwrap();
    assert!(heap.grow.remaps > 0);
    for block in again
        .into_iter()
        .chain([small])
        .chain(blocks[..2].iter().copied())
    {
        heap.free(block).unwrap();
        release_all_inside(&mut heap, 256 * 1024, 0);
        heap.verify().unwrap();
    }
    for &block in &blocks[6..] {
        heap.free(block).unwrap();
        release_all_inside(&mut heap, 256 * 1024, 0);
        heap.verify().unwrap();
    }
    let stats = heap.stats();
    assert_eq!((stats.used, stats.live_allocations), (0, 0));
    // The end of the heap still goes back, above the pages already given.
    let before = stats.mapped;
    if let Some((start, end)) = heap.release_tail(64 * 1024, 256 * 1024) {
        assert_eq!(before - heap.stats().mapped, end - start);
        unmap(start, end);
    }
    heap.verify().unwrap();
    // Everything still coalesces into one block that can be used whole.
    let whole = heap.largest_free_block();
    let all = heap.kmalloc(whole - 16).unwrap().as_ptr();
    // SAFETY: a fresh block of that size.
    unsafe { all.write_bytes(1, whole - 16) };
    heap.verify().unwrap();
    heap.free(all).unwrap();
    heap.verify().unwrap();
}

/// With `keep`, as many free bytes as that stay mapped: a heap with less
/// free memory gives nothing back, one with more gives back the rest.
#[test]
fn free_memory_up_to_keep_stays_mapped() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(4 * MIB, false);
    let big = heap.kmalloc(2 * MIB).unwrap().as_ptr();
    let fence = heap.kmalloc(100).unwrap().as_ptr();
    let rest = heap
        .kmalloc(heap.largest_free_block() - 64)
        .unwrap()
        .as_ptr();
    heap.free(big).unwrap();
    assert_eq!(release_all_inside(&mut heap, 256 * 1024, 3 * MIB), 0);
    heap.free(fence).unwrap();
    heap.verify().unwrap();
    let big = heap.kmalloc(2 * MIB).unwrap().as_ptr();
    heap.free(big).unwrap();
    let free = heap.stats().free;
    let given = release_all_inside(&mut heap, 256 * 1024, MIB);
    assert!(given > 0 && free - given >= MIB, "{given} of {free}");
    assert!(free - given < MIB + 4096);
    heap.verify().unwrap();
    heap.free(rest).unwrap();
    heap.verify().unwrap();
}

/// A remap that fails leaves the request failed and the heap as it was.
#[test]
fn a_failed_remap_fails_the_request_and_changes_nothing() {
    let mut arena = Arena::new(4 * MIB);
    let mut heap = arena.heap(4 * MIB, false);
    let big = heap.kmalloc(4 * MIB - 64 * 1024).unwrap().as_ptr();
    heap.free(big).unwrap();
    assert!(release_all_inside(&mut heap, 256 * 1024, 0) > 3 * MIB);
    heap.grow.remap_fails = true;
    let stats = heap.stats();
    assert_eq!(
        heap.kmalloc(2 * MIB).map(|_| ()),
        Err(MmError::HeapExhausted)
    );
    heap.verify().unwrap();
    assert_eq!(
        HeapStats {
            failed_allocations: stats.failed_allocations,
            ..heap.stats()
        },
        stats
    );
    heap.grow.remap_fails = false;
    let block = heap.kmalloc(2 * MIB).unwrap().as_ptr();
    // SAFETY: a fresh 2 MiB block.
    unsafe { block.write_bytes(3, 2 * MIB) };
    heap.verify().unwrap();
    heap.free(block).unwrap();
    heap.verify().unwrap();
}

proptest! {
    #![proptest_config(testing::cases(64))]

    /// Random allocations (small, large, page-aligned), frees, reallocs,
    /// with the pages inside large free blocks given back after every
    /// free and the tail released now and then, sometimes with remapping
    /// refused: every live block keeps its contents, the heap never writes
    /// into pages it gave back (the remap hook checks), verify() holds
    /// and the counters add up.
    #[test]
    fn giving_pages_back_inside_keeps_every_block(
        ops in proptest::collection::vec((0usize..6, 1usize..400_000, any::<prop::sample::Index>()), 1..200),
        debug_checks in any::<bool>(),
    ) {
        // Half the steps keep 512 KiB of free memory mapped.
        let mut arena = Arena::new(8 * MIB);
        let mut heap = arena.heap(128 * 1024, debug_checks);
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for (step, (action, size, which)) in ops.into_iter().enumerate() {
            let tag = step as u8;
            heap.grow.remap_fails = step % 7 == 3;
            let keep = if step % 2 == 0 { 0 } else { 512 * 1024 };
            match action {
                0 | 1 => {
                    let align = if action == 1 { 4096 } else { 16 };
                    if let Ok(pointer) = heap.alloc(layout(size, align)) {
                        prop_assert_eq!(pointer.as_ptr() as usize % align, 0);
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { pointer.as_ptr().write_bytes(tag, size) };
                        live.push((pointer.as_ptr(), size, tag));
                    }
                }
                2 | 3 if !live.is_empty() => {
                    let (pointer, _, _) = live.swap_remove(which.index(live.len()));
                    heap.free(pointer).unwrap();
                    release_all_inside(&mut heap, 64 * 1024, keep);
                }
                4 if !live.is_empty() => {
                    let index = which.index(live.len());
                    let (pointer, old, byte) = live[index];
                    if let Ok(moved) = heap.realloc(pointer, layout(old, 16), size) {
                        // SAFETY: a live block of at least `size` bytes.
                        let bytes = unsafe { core::slice::from_raw_parts(moved.as_ptr(), old.min(size)) };
                        prop_assert!(bytes.iter().all(|&b| b == byte), "realloc lost data");
                        // SAFETY: as above.
                        unsafe { moved.as_ptr().write_bytes(byte, size) };
                        live[index] = (moved.as_ptr(), size, byte);
                        release_all_inside(&mut heap, 64 * 1024, keep);
                    }
                }
                _ => {
                    if let Some((start, end)) = heap.release_tail(32 * 1024, 128 * 1024) {
                        unmap(start, end);
                    }
                }
            }
            heap.verify().unwrap();
            let stats = heap.stats();
            prop_assert_eq!(stats.used + stats.free + stats.overhead, stats.mapped);
        }
        heap.grow.remap_fails = false;
        for (pointer, size, tag) in live {
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(pointer, size) };
            prop_assert!(bytes.iter().all(|&b| b == tag), "a block's contents changed");
            heap.free(pointer).unwrap();
            heap.verify().unwrap();
        }
        for &(start, end) in heap.released.ranges() {
            // SAFETY: pages of the arena the heap gave back.
            let pages = unsafe { core::slice::from_raw_parts(start as *const u8, end - start) };
            prop_assert!(pages.iter().all(|&b| b == GIVEN_BACK), "given-back pages written");
        }
    }
}

/// Eight blocks of 512 KiB with the second and fifth freed: two holes
/// apart from each other and from the heap's end. Returns all eight.
fn two_holes(heap: &mut Heap<'_, Reserve>) -> Vec<*mut u8> {
    let blocks: Vec<*mut u8> = (0..8)
        .map(|_| heap.kmalloc(512 * 1024).unwrap().as_ptr())
        .collect();
    for &block in [blocks[1], blocks[4]].iter() {
        heap.free(block).unwrap();
    }
    blocks
}

/// Two blocks of 512 KiB (in the holes of [`two_holes`]), written.
fn fill_holes(heap: &mut Heap<'_, Reserve>) -> Vec<*mut u8> {
    let again: Vec<*mut u8> = (0..2)
        .map(|_| heap.kmalloc(512 * 1024).unwrap().as_ptr())
        .collect();
    for &block in &again {
        // SAFETY: a fresh block of 512 KiB.
        unsafe { block.write_bytes(0x5A, 512 * 1024) };
    }
    again
}

/// Frees `again` ([`fill_holes`]) and the six blocks [`two_holes`] kept.
fn free_around_holes(heap: &mut Heap<'_, Reserve>, again: Vec<*mut u8>, blocks: &[*mut u8]) {
    heap.verify().unwrap();
    let kept = blocks
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != 1 && index != 4)
        .map(|(_, &block)| block);
    for block in again.into_iter().chain(kept) {
        heap.free(block).unwrap();
    }
    heap.verify().unwrap();
}

/// Under pressure every free block gives back its mapped interior, not
/// only the one freed last; what it gave is remapped before reuse.
#[test]
fn pressure_gives_back_inside_every_free_block() {
    let mut arena = Arena::new(8 * MIB);
    let mut heap = arena.heap(256 * 1024, false);
    // Two separate holes; the usual release (keeping 4 MiB mapped free)
    // gives back nothing, and then knows only the last freed block.
    let blocks = two_holes(&mut heap);
    assert_eq!(release_all_inside(&mut heap, 256 * 1024, 4 * MIB), 0);
    let mapped = heap.stats().mapped;
    let mut given = 0;
    while let Some((start, end)) = heap.release_any_inside(4096) {
        assert_eq!((start % 4096, end % 4096), (0, 0));
        unmap(start, end);
        given += end - start;
        heap.verify().unwrap();
    }
    // Both holes, less their header and footer pages.
    assert!(given >= 2 * (512 * 1024 - 3 * 4096), "{given}");
    assert_eq!(heap.stats().mapped, mapped - given);
    assert_eq!(heap.release_any_inside(4096), None, "given once");
    let again = fill_holes(&mut heap);
    free_around_holes(&mut heap, again, &blocks);
}

/// After pressure, `remap_released` maps the given-back ranges again in
/// address order up to what was asked, and the next allocations remap
/// nothing more; a hook that cannot map leaves the rest given back.
#[test]
fn remap_released_maps_back_in_address_order() {
    let mut arena = Arena::new(8 * MIB);
    let mut heap = arena.heap(256 * 1024, false);
    let blocks = two_holes(&mut heap);
    let mut given = Vec::new();
    while let Some((start, end)) = heap.release_any_inside(4096) {
        unmap(start, end);
        given.push((start, end));
    }
    assert_eq!(given.len(), 2, "{given:?}");
    given.sort_unstable();
    let mapped = heap.stats().mapped;
    heap.grow.remap_fails = true;
    assert_eq!(heap.remap_released(usize::MAX), 0, "the hook refused");
    assert_eq!(heap.stats().mapped, mapped);
    heap.grow.remap_fails = false;
    // One byte asks for one range: the lower.
    let first = given[0].1 - given[0].0;
    assert_eq!(heap.remap_released(1), first);
    assert_eq!(heap.released.ranges(), &[given[1]]);
    assert_eq!(heap.stats().mapped, mapped + first);
    heap.verify().unwrap();
    let second = given[1].1 - given[1].0;
    assert_eq!(heap.remap_released(usize::MAX), second);
    assert!(heap.released.is_empty());
    assert_eq!(heap.remap_released(usize::MAX), 0, "nothing left");
    let remaps = heap.grow.remaps;
    let again = fill_holes(&mut heap);
    assert_eq!(heap.grow.remaps, remaps, "a request had to remap");
    free_around_holes(&mut heap, again, &blocks);
}

/// A growth the hook cannot back for lack of memory first gives the hook
/// the mapped interior of the free blocks below the heap's end, and grows
/// on that memory; live blocks keep their contents, and what was given
/// is remapped before reuse. A refusal that is not for lack of memory (a
/// cap) gives nothing back.
#[test]
fn growth_short_of_memory_grows_on_pages_given_back() {
    const HOLE: usize = 256 * 1024;
    let mut arena = Arena::new(8 * MIB);
    let mut heap = arena.heap(256 * 1024, false);
    heap.grow.frames = Some(1024);
    let blocks: Vec<*mut u8> = [HOLE, 4096, HOLE, 4096]
        .iter()
        .map(|&size| heap.kmalloc(size).unwrap().as_ptr())
        .collect();
    for (index, &block) in blocks.iter().enumerate() {
        // SAFETY: fresh blocks of at least 4096 bytes.
        unsafe { block.write_bytes(index as u8, 4096) };
    }
    heap.free(blocks[0]).unwrap();
    heap.free(blocks[2]).unwrap();
    let mapped = heap.stats().mapped;
    // The "PMM" is empty now.
    heap.grow.frames = Some(0);
    let block = heap.kmalloc(384 * 1024).expect("grown on the holes' pages");
    // SAFETY: a fresh block of 384 KiB.
    unsafe { block.as_ptr().write_bytes(0x5A, 384 * 1024) };
    heap.verify().unwrap();
    let given = heap.released.bytes();
    assert!(given >= 2 * (HOLE - 3 * 4096), "{given}");
    // Mapped: less what was given, plus the growth, which used it.
    assert!(
        heap.stats().mapped <= mapped + given,
        "grew on fresh memory"
    );
    for index in [1, 3] {
        // SAFETY: live blocks of at least 4096 bytes.
        let bytes = unsafe { core::slice::from_raw_parts(blocks[index], 4096) };
        assert!(
            bytes.iter().all(|&b| b == index as u8),
            "a live block changed"
        );
    }
    // The holes are remapped (from what the growth left) before reuse.
    heap.grow.frames = Some(1024);
    let again = heap.kmalloc(HOLE - 64).unwrap().as_ptr();
    // SAFETY: a fresh block of HOLE - 64 bytes.
    unsafe { again.write_bytes(0x33, HOLE - 64) };
    heap.verify().unwrap();
    for pointer in [again, block.as_ptr(), blocks[1], blocks[3]] {
        heap.free(pointer).unwrap();
    }
    heap.verify().unwrap();

    // At the cap (the hook has memory but no room): nothing given back.
    let mut arena = Arena::new(MIB);
    let mut heap = arena.heap(256 * 1024, false);
    heap.grow.frames = Some(1024);
    let blocks: Vec<*mut u8> = [HOLE, 4096]
        .iter()
        .map(|&size| heap.kmalloc(size).unwrap().as_ptr())
        .collect();
    heap.free(blocks[0]).unwrap();
    let mapped = heap.stats().mapped;
    assert_eq!(heap.kmalloc(MIB), Err(MmError::HeapExhausted));
    assert!(heap.released.is_empty(), "gave back at the cap");
    assert_eq!(heap.stats().mapped, mapped);
    heap.free(blocks[1]).unwrap();
    heap.verify().unwrap();
}
