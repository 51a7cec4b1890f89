//! A three-level bitmap over caller-provided storage: one bit per frame
//! (1 = in use) plus two summary levels, so the first free frame is found
//! with a few `trailing_zeros` instead of a scan.
//!
//! ```text
//! level 2:  bit j set  <=>  level-1 word j is not zero
//! level 1:  bit i set  <=>  level-0 word i has at least one free (0) bit
//! level 0:  bit n set  <=>  frame n is in use (or does not exist)
//! ```
//!
//! Finding a free frame reads one level-2 word (more only on machines with
//! over 1 TiB... or when the low words are full: see `next_free`), one
//! level-1 word and one level-0 word. Marking a frame touches at most one
//! word per level.

/// Bits in a storage word.
const BITS: usize = 64;

/// Storage words needed per level for `frames` frames.
const fn level_words(frames: usize) -> [usize; 3] {
    let level0 = frames.div_ceil(BITS);
    let level1 = level0.div_ceil(BITS);
    let level2 = level1.div_ceil(BITS);
    [level0, level1, level2]
}

/// Storage words (`u64`) a bitmap over `frames` frames needs.
pub const fn storage_words(frames: usize) -> usize {
    let [level0, level1, level2] = level_words(frames);
    level0 + level1 + level2
}

/// The level-0 words covering bits `[first, first + count)`, each with the
/// mask of the bits inside the range.
pub(super) fn word_masks(first: usize, count: usize) -> impl Iterator<Item = (usize, u64)> {
    let end = first + count;
    let words = first / BITS..end.div_ceil(BITS);
    words.map(move |word| {
        let low = first.saturating_sub(word * BITS);
        let high = (end - word * BITS).min(BITS);
        let mask = if high - low == BITS {
            u64::MAX
        } else {
            ((1u64 << (high - low)) - 1) << low
        };
        (word, mask)
    })
}

/// The hierarchical bitmap.
pub struct Bitmap<'a> {
    level0: &'a mut [u64],
    level1: &'a mut [u64],
    level2: &'a mut [u64],
    frames: usize,
    /// No level-2 word below this index is non-zero.
    level2_low: usize,
}

impl<'a> Bitmap<'a> {
    /// A bitmap over `frames` frames, all marked used, in `storage`, which
    /// must hold at least [`storage_words`]`(frames)` words.
    pub fn new_all_used(storage: &'a mut [u64], frames: usize) -> Option<Self> {
        let [words0, words1, words2] = level_words(frames);
        let storage = storage.get_mut(..words0 + words1 + words2)?;
        let (level0, rest) = storage.split_at_mut(words0);
        let (level1, level2) = rest.split_at_mut(words1);
        level0.fill(u64::MAX);
        level1.fill(0);
        level2.fill(0);
        Some(Self {
            level0,
            level1,
            level2,
            frames,
            level2_low: words2,
        })
    }

    /// Number of frames covered.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The level-0 words `[first, first + count)`: one bit per frame, set
    /// when used.
    #[inline]
    pub fn words(&self, first: usize, count: usize) -> &[u64] {
        &self.level0[first..first + count]
    }

    /// Which of the eight level-0 words from `first` (a multiple of 8)
    /// have a free frame: bit `i` for word `first + i`, read from the
    /// summary, so no word is scanned.
    #[inline]
    pub fn words_with_free(&self, first: usize) -> u8 {
        debug_assert!(first.is_multiple_of(8));
        (self.level1[first / BITS] >> (first % BITS)) as u8
    }

    /// Whether frame `index` is marked used. Out-of-range frames are used.
    #[inline]
    pub fn is_used(&self, index: usize) -> bool {
        index >= self.frames || self.level0[index / BITS] & (1 << (index % BITS)) != 0
    }

    /// Re-derives the summary bits of level-0 word `word`.
    #[inline]
    fn update_summary(&mut self, word: usize) {
        let (word1, bit1) = (word / BITS, word % BITS);
        if self.level0[word] != u64::MAX {
            self.level1[word1] |= 1 << bit1;
        } else {
            self.level1[word1] &= !(1 << bit1);
        }
        let (word2, bit2) = (word1 / BITS, word1 % BITS);
        if self.level1[word1] != 0 {
            self.level2[word2] |= 1 << bit2;
            self.level2_low = self.level2_low.min(word2);
        } else {
            self.level2[word2] &= !(1 << bit2);
        }
    }

    /// Marks frame `index` used. It must be inside the bitmap.
    #[inline]
    pub fn set_used(&mut self, index: usize) {
        debug_assert!(index < self.frames);
        self.level0[index / BITS] |= 1 << (index % BITS);
        self.resummarise(index / BITS);
    }

    /// Marks frame `index` free. It must be inside the bitmap.
    #[inline]
    pub fn set_free(&mut self, index: usize) {
        debug_assert!(index < self.frames);
        self.level0[index / BITS] &= !(1 << (index % BITS));
        self.resummarise(index / BITS);
    }

    /// `update_summary` without branches: whether a word has a free bit
    /// is as random as the frames freed, so the summary bits are written
    /// from the comparisons instead of being tested first (a mispredicted
    /// branch costs more than the two stores).
    #[inline]
    fn resummarise(&mut self, word: usize) {
        let (word1, bit1) = (word / BITS, word % BITS);
        let has_free = u64::from(self.level0[word] != u64::MAX);
        let level1 = (self.level1[word1] & !(1 << bit1)) | has_free << bit1;
        self.level1[word1] = level1;
        let (word2, bit2) = (word1 / BITS, word1 % BITS);
        let non_empty = u64::from(level1 != 0);
        self.level2[word2] = (self.level2[word2] & !(1 << bit2)) | non_empty << bit2;
        // Only lower the hint when the word has something (cmov).
        let candidate = if non_empty != 0 { word2 } else { usize::MAX };
        self.level2_low = self.level2_low.min(candidate);
    }

    /// Marks frames `[first, first + count)` used or free, a word at a time.
    #[inline]
    pub fn set_range(&mut self, first: usize, count: usize, used: bool) {
        debug_assert!(first + count <= self.frames);
        for (word, mask) in word_masks(first, count) {
            if used {
                self.level0[word] |= mask;
            } else {
                self.level0[word] &= !mask;
            }
            self.update_summary(word);
        }
    }

    /// Index of the first level-0 word at or after `from` with a free bit.
    fn next_word_with_free(&self, from: usize) -> Option<usize> {
        let word1 = from / BITS;
        if let Some(&bits) = self.level1.get(word1) {
            let masked = bits & (u64::MAX << (from % BITS));
            if masked != 0 {
                return Some(word1 * BITS + masked.trailing_zeros() as usize);
            }
        }
        let word1 = self.next_level1_word(word1 + 1)?;
        Some(word1 * BITS + self.level1[word1].trailing_zeros() as usize)
    }

    /// Index of the first non-zero level-1 word at or after `from`.
    fn next_level1_word(&self, from: usize) -> Option<usize> {
        let mut word2 = from / BITS;
        let mut mask = u64::MAX << (from % BITS);
        while let Some(&bits) = self.level2.get(word2) {
            let masked = bits & mask;
            if masked != 0 {
                return Some(word2 * BITS + masked.trailing_zeros() as usize);
            }
            word2 += 1;
            mask = u64::MAX;
        }
        None
    }

    /// The first free frame at or after `from`.
    pub fn next_free(&self, from: usize) -> Option<usize> {
        if from >= self.frames {
            return None;
        }
        let word = from / BITS;
        let masked = !self.level0[word] & (u64::MAX << (from % BITS));
        let index = if masked != 0 {
            word * BITS + masked.trailing_zeros() as usize
        } else {
            let word = self.next_word_with_free(word + 1)?;
            word * BITS + (!self.level0[word]).trailing_zeros() as usize
        };
        (index < self.frames).then_some(index)
    }

    /// The first used frame at or after `from` (`None`: every frame from
    /// there on is free). O(words scanned).
    pub fn next_used(&self, from: usize) -> Option<usize> {
        if from >= self.frames {
            return None;
        }
        let mut word = from / BITS;
        let mut bits = self.level0[word] & (u64::MAX << (from % BITS));
        while bits == 0 {
            word += 1;
            bits = *self.level0.get(word)?;
        }
        let index = word * BITS + bits.trailing_zeros() as usize;
        (index < self.frames).then_some(index)
    }

    /// The lowest free frame: starts at the lowest non-empty level-2 word,
    /// so it costs O(1) word reads however full the bitmap is.
    #[inline]
    pub fn first_free(&mut self) -> Option<usize> {
        while self.level2_low < self.level2.len() && self.level2[self.level2_low] == 0 {
            self.level2_low += 1;
        }
        let word2 = self.level2_low;
        let bits2 = *self.level2.get(word2)?;
        let word1 = word2 * BITS + bits2.trailing_zeros() as usize;
        let word0 = word1 * BITS + self.level1[word1].trailing_zeros() as usize;
        let index = word0 * BITS + (!self.level0[word0]).trailing_zeros() as usize;
        (index < self.frames).then_some(index)
    }

    /// The first run of `count` free frames at or after `from` whose first
    /// index `i` has `(i + phase) % align == 0` (`align` a power of two;
    /// `phase` lets the caller align physical addresses when bit 0 is not
    /// an aligned frame). Costs O(words scanned): it skips full words
    /// through the summary, then checks each candidate a word at a time.
    pub fn find_run(&self, from: usize, count: usize, align: usize, phase: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two() && count > 0);
        let aligned = |index: usize| (index + phase).next_multiple_of(align) - phase;
        let mut candidate = aligned(self.next_free(from)?);
        loop {
            if candidate.checked_add(count)? > self.frames {
                return None;
            }
            match self.first_used_in(candidate, count) {
                None => return Some(candidate),
                Some(used) => {
                    candidate = aligned(self.next_free(used + 1)?);
                }
            }
        }
    }

    /// The first used frame in `[first, first + count)`, if any.
    fn first_used_in(&self, first: usize, count: usize) -> Option<usize> {
        word_masks(first, count).find_map(|(word, mask)| {
            let used = self.level0[word] & mask;
            (used != 0).then(|| word * BITS + used.trailing_zeros() as usize)
        })
    }

    /// Number of free frames (a full scan; for statistics and tests).
    pub fn count_free(&self) -> usize {
        self.level0
            .iter()
            .map(|word| word.count_zeros() as usize)
            .sum()
    }

    /// Length of the longest run of free frames (a full scan).
    pub fn longest_free_run(&self) -> usize {
        let (mut best, mut current) = (0, 0);
        for word in self.level0.iter() {
            match *word {
                0 => current += BITS,
                u64::MAX => current = 0,
                word => {
                    for bit in 0..BITS {
                        if word & (1 << bit) == 0 {
                            current += 1;
                            best = best.max(current);
                        } else {
                            current = 0;
                        }
                    }
                }
            }
            best = best.max(current);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bitmap(storage: &mut Vec<u64>, frames: usize) -> Bitmap<'_> {
        storage.resize(storage_words(frames), 0);
        Bitmap::new_all_used(storage, frames).unwrap()
    }

    #[test]
    fn storage_covers_all_levels() {
        assert_eq!(storage_words(1), 3);
        assert_eq!(storage_words(64), 3);
        assert_eq!(storage_words(65), 4);
        assert_eq!(storage_words(262_144), 4096 + 64 + 1);
    }

    #[test]
    fn starts_full_and_finds_freed_frames() {
        let mut storage = Vec::new();
        let mut map = bitmap(&mut storage, 10_000);
        assert_eq!(map.first_free(), None);
        map.set_free(9_999);
        map.set_free(4_100);
        assert_eq!(map.first_free(), Some(4_100));
        assert_eq!(map.next_free(4_101), Some(9_999));
        map.set_used(4_100);
        assert_eq!(map.first_free(), Some(9_999));
        assert_eq!(map.count_free(), 1);
    }

    #[test]
    fn frames_past_the_end_are_never_free() {
        let mut storage = Vec::new();
        let mut map = bitmap(&mut storage, 70);
        map.set_range(0, 70, false);
        assert_eq!(map.count_free(), 70);
        assert_eq!(map.next_free(70), None);
        assert!(map.is_used(70));
        assert_eq!(map.find_run(0, 71, 1, 0), None);
        assert_eq!(map.find_run(0, 70, 1, 0), Some(0));
    }

    #[test]
    fn finds_aligned_runs() {
        let mut storage = Vec::new();
        let mut map = bitmap(&mut storage, 4096);
        map.set_range(0, 4096, false);
        map.set_used(3);
        map.set_used(600);
        assert_eq!(map.find_run(0, 512, 512, 0), Some(1024));
        assert_eq!(map.find_run(0, 3, 1, 0), Some(0));
        assert_eq!(map.find_run(0, 4, 1, 0), Some(4));
        assert_eq!(map.longest_free_run(), 4096 - 601);
        // Phase 5: candidates are indices with (i + 5) % 8 == 0: 3 is used, 11 is free.
        assert_eq!(map.find_run(0, 2, 8, 5), Some(11));
    }

    proptest! {
        #![proptest_config(crate::testing::cases(256))]

        #[test]
        fn matches_a_vector_of_bools(
            frames in 1usize..5000,
            ops in proptest::collection::vec((any::<bool>(), any::<prop::sample::Index>(), 1usize..300), 0..60),
        ) {
            let mut storage = Vec::new();
            let mut map = bitmap(&mut storage, frames);
            let mut model = vec![true; frames];
            for (used, at, count) in ops {
                let first = at.index(frames);
                let count = count.min(frames - first);
                map.set_range(first, count, used);
                model[first..first + count].fill(used);
                let first_free = model.iter().position(|u| !u);
                prop_assert_eq!(map.first_free(), first_free);
                let probe = at.index(frames);
                prop_assert_eq!(map.next_free(probe), model[probe..].iter().position(|u| !u).map(|i| i + probe));
                prop_assert_eq!(map.count_free(), model.iter().filter(|u| !**u).count());
                for (align, phase) in [(1usize, 0usize), (8, 0), (64, 0), (8, 3), (512, 100)] {
                    let want = (0..frames)
                        .filter(|s| (s + phase) % align == 0)
                        .find(|&s| s + count <= frames && model[s..s + count].iter().all(|u| !u));
                    prop_assert_eq!(map.find_run(0, count, align, phase), want);
                }
            }
        }
    }
}
