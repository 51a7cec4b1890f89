//! Naturally aligned free blocks inside one 2 MiB chunk, found with word
//! operations on its eight bitmap words (bit set = frame in use).
//!
//! A block of order `k` is 2^k frames starting at a multiple of 2^k. Up
//! to order 6 a block lies inside one word: shifting the free bits onto
//! themselves `k` times leaves bit `i` set exactly when frames
//! `i..i + 2^k` are all free, and a mask keeps the aligned positions.
//! Orders 7 to 9 are runs of 2, 4 or 8 whole free words.

/// Frames in a chunk (2 MiB of 4 KiB frames): an order-9 block.
pub const CHUNK_FRAMES: usize = 512;
/// Bitmap words per chunk.
pub const CHUNK_WORDS: usize = CHUNK_FRAMES / 64;
/// Order of a whole chunk.
pub const CHUNK_ORDER: u32 = 9;

/// Bits at the aligned start positions of order-`k` blocks in a word.
const ALIGNED: [u64; 7] = [
    u64::MAX,
    0x5555_5555_5555_5555,
    0x1111_1111_1111_1111,
    0x0101_0101_0101_0101,
    0x0001_0001_0001_0001,
    0x0000_0001_0000_0001,
    0x0000_0000_0000_0001,
];

/// Start bits of the free aligned order-`order` blocks (`order <= 6`) in
/// a word whose set bits are used frames.
#[inline]
fn free_starts(used: u64, order: u32) -> u64 {
    let mut free = !used;
    for step in 0..order {
        free &= free >> (1u32 << step);
    }
    free & ALIGNED[order as usize]
}

/// The first free aligned block of `order` (0..=9) in a chunk's words, as
/// a frame offset inside the chunk.
#[inline]
pub fn find_block(words: &[u64], order: u32) -> Option<usize> {
    debug_assert_eq!(words.len(), CHUNK_WORDS);
    if order <= 6 {
        words.iter().enumerate().find_map(|(index, &used)| {
            let starts = free_starts(used, order);
            (starts != 0).then(|| index * 64 + starts.trailing_zeros() as usize)
        })
    } else {
        let group = 1usize << (order - 6);
        words
            .chunks_exact(group)
            .position(|group| group.iter().all(|&used| used == 0))
            .map(|index| index * group * 64)
    }
}

/// The largest order of a free aligned block in a chunk's words (`None`:
/// no free frame). Exact; reads every word.
pub fn largest_free_order(words: &[u64]) -> Option<u32> {
    debug_assert_eq!(words.len(), CHUNK_WORDS);
    for order in (7..=CHUNK_ORDER).rev() {
        if find_block(words, order).is_some() {
            return Some(order);
        }
    }
    let mut best = None;
    for &used in words {
        if used == u64::MAX {
            continue;
        }
        let mut order = 6;
        while free_starts(used, order) == 0 {
            order -= 1;
        }
        best = best.max(Some(order));
        if order == 6 {
            break;
        }
    }
    best
}

/// Whether frames `[offset, offset + 2^order)` of a chunk are all free.
#[inline]
fn is_free(words: &[u64], offset: usize, order: u32) -> bool {
    if order <= 6 {
        let mask = if order == 6 {
            u64::MAX
        } else {
            ((1u64 << (1u32 << order)) - 1) << (offset % 64)
        };
        words[offset / 64] & mask == 0
    } else {
        let first = offset / 64;
        words[first..first + (1 << (order - 6))]
            .iter()
            .all(|&used| used == 0)
    }
}

/// The order of the largest free aligned block that contains the block of
/// `order` at `offset`, which is free: it climbs while the buddy (the
/// other half of the next larger block) is free too, as a buddy allocator
/// would merge.
#[inline]
pub fn merged_order(words: &[u64], offset: usize, order: u32) -> u32 {
    let mut order = order;
    let mut offset = offset;
    while order < CHUNK_ORDER {
        let buddy = offset ^ (1 << order);
        if !is_free(words, buddy, order) {
            break;
        }
        offset &= !(1 << order);
        order += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_find(free: &[bool], order: u32) -> Option<usize> {
        let size = 1 << order;
        (0..CHUNK_FRAMES)
            .step_by(size)
            .find(|&start| free[start..start + size].iter().all(|&f| f))
    }

    fn words_of(free: &[bool]) -> [u64; CHUNK_WORDS] {
        let mut words = [0u64; CHUNK_WORDS];
        for (frame, &is_free) in free.iter().enumerate() {
            if !is_free {
                words[frame / 64] |= 1 << (frame % 64);
            }
        }
        words
    }

    #[test]
    fn finds_blocks_in_a_half_used_word() {
        // Frames 0..4 used, 4..64 free in word 0; the rest used.
        let mut words = [u64::MAX; CHUNK_WORDS];
        words[0] = 0xF;
        assert_eq!(find_block(&words, 0), Some(4));
        assert_eq!(find_block(&words, 2), Some(4));
        assert_eq!(find_block(&words, 3), Some(8));
        assert_eq!(find_block(&words, 5), Some(32));
        assert_eq!(find_block(&words, 6), None);
        assert_eq!(largest_free_order(&words), Some(5));
        assert_eq!(merged_order(&words, 4, 2), 2);
        assert_eq!(merged_order(&words, 32, 4), 5);
    }

    #[test]
    fn whole_words_make_the_large_orders() {
        let mut words = [u64::MAX; CHUNK_WORDS];
        words[4..8].fill(0);
        assert_eq!(find_block(&words, 7), Some(256));
        assert_eq!(find_block(&words, 8), Some(256));
        assert_eq!(find_block(&words, 9), None);
        assert_eq!(largest_free_order(&words), Some(8));
        words.fill(0);
        assert_eq!(largest_free_order(&words), Some(9));
        assert_eq!(merged_order(&words, 300, 0), 9);
        assert_eq!(largest_free_order(&[u64::MAX; CHUNK_WORDS]), None);
    }

    proptest! {
        #![proptest_config(crate::testing::cases(512))]

        #[test]
        fn agree_with_a_frame_by_frame_model(
            free in proptest::collection::vec(any::<bool>(), CHUNK_FRAMES),
            runs in proptest::collection::vec((0usize..CHUNK_FRAMES, 0u32..=9), 0..6),
        ) {
            // Random frames plus a few free aligned blocks, so the large
            // orders are exercised too.
            let mut free = free;
            for (at, order) in runs {
                let size = 1usize << order;
                let start = at / size * size;
                free[start..start + size].fill(true);
            }
            let words = words_of(&free);
            for order in 0..=CHUNK_ORDER {
                prop_assert_eq!(find_block(&words, order), model_find(&free, order));
            }
            let largest = (0..=CHUNK_ORDER).rev().find(|&o| model_find(&free, o).is_some());
            prop_assert_eq!(largest_free_order(&words), largest);
            for frame in (0..CHUNK_FRAMES).filter(|&f| free[f]) {
                let want = (0..=CHUNK_ORDER)
                    .take_while(|&o| {
                        let size = 1usize << o;
                        let start = frame / size * size;
                        free[start..start + size].iter().all(|&f| f)
                    })
                    .last()
                    .unwrap();
                prop_assert_eq!(merged_order(&words, frame, 0), want);
            }
        }
    }
}
