//! The 2 MiB chunks of a frame allocator: a free count, a mobility kind
//! and an order hint per chunk, and the lists that find a chunk for a
//! request in O(1).
//!
//! Every chunk with a free frame is on exactly one list:
//!
//! * `whole`: all 512 frames free (the order-9 and larger allocations
//!   take these, and a kind claims one when its own chunks are full);
//! * `partial[kind][hint]`: some frames free, owned by `kind`, and no free
//!   aligned block larger than order `hint` (0..=8). The hint is an upper
//!   bound: a free raises it to the order the freed block merged into,
//!   an allocation leaves it alone, and a search that fails in the chunk
//!   replaces it by the exact value. So a request of order `k` looks at
//!   the lists with `hint >= k` only, and each failed look moves a chunk
//!   below `k` for good (until a free raises it again).
//!
//! A chunk keeps its kind while it has used frames; the kind is what
//! keeps unmovable allocations together (mobility grouping).

use super::bitmap::{storage_words, Bitmap};
use super::blocks::{CHUNK_FRAMES, CHUNK_ORDER};

/// Whether the frames of an allocation may later be moved (migrated by a
/// compaction) or must stay where they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mobility {
    /// Page tables, heap, kernel objects: never moved.
    Unmovable,
    /// User and cache-like data, which a compaction may migrate.
    Movable,
}

impl Mobility {
    /// Both kinds, in index order.
    pub const ALL: [Mobility; KINDS] = [Mobility::Unmovable, Mobility::Movable];

    const fn index(self) -> usize {
        self as usize
    }

    /// The other kind (where a request steals from when its own and the
    /// whole chunks are gone).
    pub const fn other(self) -> Mobility {
        match self {
            Mobility::Unmovable => Mobility::Movable,
            Mobility::Movable => Mobility::Unmovable,
        }
    }

    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Mobility::Unmovable => "unmovable",
            Mobility::Movable => "movable",
        }
    }
}

/// The free count's bits in a packed chunk.
const FREE_MASK: u64 = 0xFFFF;
/// The bit of a packed chunk that says it is current.
const CURRENT: u32 = 26;

/// Mobility kinds.
pub const KINDS: usize = 2;
/// Partial lists per kind: hints 0..=8.
const HINTS: usize = CHUNK_ORDER as usize;

/// What is known of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Free frames (0..=512).
    pub free: u16,
    /// No free aligned block of a larger order (meaningful while
    /// `0 < free < 512`).
    pub hint: u8,
    /// Who owns its used frames.
    pub kind: Mobility,
    /// Some frame is reserved or not RAM: frees near it check the
    /// reservations and the usable ranges.
    pub holes: bool,
    /// The current chunk of its kind: off every list.
    pub current: bool,
}

impl Chunk {
    #[inline]
    fn pack(self) -> u64 {
        u64::from(self.free)
            | u64::from(self.hint) << 16
            | (self.kind.index() as u64) << 24
            | u64::from(self.holes) << 25
            | u64::from(self.current) << CURRENT
    }

    #[inline]
    fn unpack(word: u64) -> Self {
        Self {
            free: word as u16,
            hint: (word >> 16) as u8,
            kind: if word >> 24 & 1 == 0 {
                Mobility::Unmovable
            } else {
                Mobility::Movable
            },
            holes: word >> 25 & 1 != 0,
            current: word >> CURRENT & 1 != 0,
        }
    }
}

/// The list a packed chunk belongs on: 0 none (full, or current), 1
/// whole, `2 + kind * HINTS + hint` a partial list. Read straight from
/// the packed word, so a change that moves no chunk costs a compare.
#[inline]
fn list_of(word: u64) -> usize {
    let free = (word & FREE_MASK) as usize;
    if free == 0 || word >> CURRENT & 1 != 0 {
        0
    } else if free == CHUNK_FRAMES {
        1
    } else {
        let kind = (word >> 24 & 1) as usize;
        let hint = ((word >> 16) as u8).min(HINTS as u8 - 1) as usize;
        2 + kind * HINTS + hint
    }
}

/// Storage words the chunk table and lists need for `chunks` chunks.
pub const fn chunk_storage_words(chunks: usize) -> usize {
    chunks + (1 + KINDS * HINTS) * storage_words(chunks)
}

/// The chunk table and its lists.
pub struct Chunks<'a> {
    table: &'a mut [u64],
    whole: Bitmap<'a>,
    partial: [[Bitmap<'a>; HINTS]; KINDS],
    /// Per kind, bit `h` set: `partial[kind][h]` is not empty.
    nonempty: [u16; KINDS],
    /// Members per partial list (to keep `nonempty` exact).
    members: [[u32; HINTS]; KINDS],
    whole_count: usize,
}

impl<'a> Chunks<'a> {
    /// A table of `chunks` chunks, every one with no free frame, in
    /// `storage` of at least [`chunk_storage_words`] words.
    pub fn new(storage: &'a mut [u64], chunks: usize) -> Option<Self> {
        let storage = storage.get_mut(..chunk_storage_words(chunks))?;
        let (table, mut rest) = storage.split_at_mut(chunks);
        table.fill(
            Chunk {
                free: 0,
                hint: 0,
                kind: Mobility::Unmovable,
                holes: false,
                current: false,
            }
            .pack(),
        );
        let words = storage_words(chunks);
        let mut next = || {
            let (list, remaining) = core::mem::take(&mut rest).split_at_mut(words);
            rest = remaining;
            Bitmap::new_all_used(list, chunks).expect("sized above")
        };
        let whole = next();
        let partial = core::array::from_fn(|_| core::array::from_fn(|_| next()));
        Some(Self {
            table,
            whole,
            partial,
            nonempty: [0; KINDS],
            members: [[0; HINTS]; KINDS],
            whole_count: 0,
        })
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// What is known of chunk `index`.
    #[inline]
    pub fn get(&self, index: usize) -> Chunk {
        Chunk::unpack(self.table[index])
    }

    /// Chunks with every frame free.
    pub fn whole_count(&self) -> usize {
        self.whole_count
    }

    /// Replaces what is known of chunk `index`, moving it between lists.
    #[inline]
    pub fn set(&mut self, index: usize, chunk: Chunk) {
        let (old, new) = (self.table[index], chunk.pack());
        self.table[index] = new;
        let (from, to) = (list_of(old), list_of(new));
        if from != to {
            self.leave(index, from);
            self.join(index, to);
        }
    }

    fn leave(&mut self, index: usize, list: usize) {
        match list {
            0 => {}
            1 => {
                self.whole.set_used(index);
                self.whole_count -= 1;
            }
            _ => {
                let (kind, hint) = ((list - 2) / HINTS, (list - 2) % HINTS);
                self.partial[kind][hint].set_used(index);
                self.members[kind][hint] -= 1;
                if self.members[kind][hint] == 0 {
                    self.nonempty[kind] &= !(1 << hint);
                }
            }
        }
    }

    fn join(&mut self, index: usize, list: usize) {
        match list {
            0 => {}
            1 => {
                self.whole.set_free(index);
                self.whole_count += 1;
            }
            _ => {
                let (kind, hint) = ((list - 2) / HINTS, (list - 2) % HINTS);
                self.partial[kind][hint].set_free(index);
                self.members[kind][hint] += 1;
                self.nonempty[kind] |= 1 << hint;
            }
        }
    }

    /// One frame taken from current chunk `index` (which has a free
    /// frame); true if it is full now and so no longer current. A current
    /// chunk is on no list, and neither is a full one: no list changes.
    #[inline]
    pub fn take_one_from_current(&mut self, index: usize) -> bool {
        let word = &mut self.table[index];
        debug_assert!(*word >> CURRENT & 1 != 0 && *word & FREE_MASK != 0);
        *word -= 1;
        if *word & FREE_MASK == 0 {
            *word &= !(1 << CURRENT);
            true
        } else {
            false
        }
    }

    /// One frame given back to chunk `index` the quick way, if there is
    /// one, where `merged` is the order the freed frame merged into:
    /// * the chunk is current and does not become whole by it;
    /// * it was full and its kind has no current chunk: it becomes the
    ///   current one (from no list to no list);
    /// * it is on a partial list and `merged` does not raise its hint, so
    ///   it stays on that list.
    ///
    /// True: done; false: nothing changed, take the general path. A
    /// current chunk's hint is left alone (see `make_current`).
    #[inline]
    pub fn give_one(
        &mut self,
        index: usize,
        merged: u32,
        current: &mut [Option<usize>; KINDS],
    ) -> bool {
        let word = &mut self.table[index];
        let free = *word & FREE_MASK;
        if free >= CHUNK_FRAMES as u64 - 1 {
            return false;
        }
        if *word >> CURRENT & 1 != 0 {
            *word += 1;
            return true;
        }
        if free == 0 {
            let kind = (*word >> 24 & 1) as usize;
            if current[kind].is_some() {
                return false;
            }
            *word += 1 | 1 << CURRENT;
            current[kind] = Some(index);
            return true;
        }
        if merged <= (*word >> 16 & 0xFF) as u32 {
            *word += 1;
            return true;
        }
        false
    }

    /// The lowest chunk of `kind` whose hint is at least `order`, taking
    /// the smallest such hint first (best fit: big blocks stay whole).
    #[inline]
    pub fn partial_for(&mut self, kind: Mobility, order: u32) -> Option<usize> {
        let lists = self.nonempty[kind.index()] >> order;
        if lists == 0 {
            return None;
        }
        let hint = order as usize + lists.trailing_zeros() as usize;
        self.partial[kind.index()][hint].first_free()
    }

    /// The lowest whole chunk.
    #[inline]
    pub fn first_whole(&mut self) -> Option<usize> {
        self.whole.first_free()
    }

    /// The lowest run of `count` whole chunks starting at a multiple of
    /// `count` (a power of two).
    pub fn whole_run(&self, count: usize) -> Option<usize> {
        self.whole.find_run(0, count, count, 0)
    }
}
