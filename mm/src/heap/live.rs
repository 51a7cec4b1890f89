//! The live map: one bit per 16-byte granule of the heap, set exactly
//! where a live allocation (TLSF block payload or slab slot) starts.
//!
//! `free` accepts a pointer only if its bit is set. Whether a refused
//! pointer is a double free or a wild one is worked out on the error path
//! (`Heap::bad_free`), so the map stays one bit per granule: it is read or
//! written on every operation, and on a large heap it misses the cache.
#![forbid(unsafe_code)]

use super::tlsf::GRANULE;

/// Words of map a heap of `max` bytes needs.
pub const fn words_for(max: usize) -> usize {
    (max / GRANULE).div_ceil(64)
}

/// Where one granule's bit is: its word in the map and the bit's mask.
#[derive(Clone, Copy)]
pub struct LiveBit {
    word: usize,
    mask: u64,
}

/// The bits of a heap, in words kept outside it, addressed by offsets
/// from the heap's start (so that the heap, which has its start at hand,
/// computes the offset once for its range check and its bit).
pub struct LiveMap<'a> {
    words: &'a mut [u64],
}

impl<'a> LiveMap<'a> {
    /// An empty map in `words` (cleared here).
    pub fn new(words: &'a mut [u64]) -> Self {
        words.fill(0);
        Self { words }
    }

    /// Where the bit of the allocation `offset` bytes (a multiple of 16)
    /// into the heap is kept.
    #[inline(always)]
    pub fn bit(&self, offset: usize) -> LiveBit {
        let granule = offset / GRANULE;
        LiveBit {
            word: granule / 64,
            mask: 1 << (granule % 64),
        }
    }

    /// Whether the bit `at` is set.
    #[inline(always)]
    pub fn is_set(&self, at: LiveBit) -> bool {
        self.words[at.word] & at.mask != 0
    }

    /// Sets the bit `at`.
    #[inline(always)]
    pub fn set(&mut self, at: LiveBit) {
        self.words[at.word] |= at.mask;
    }

    /// Clears the bit `at`.
    #[inline(always)]
    pub fn clear(&mut self, at: LiveBit) {
        self.words[at.word] &= !at.mask;
    }

    /// Bits set.
    pub fn count(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }
}
