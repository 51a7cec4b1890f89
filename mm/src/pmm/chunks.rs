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
/// Most NUMA nodes one allocator keeps apart.
pub const MAX_NODES: usize = 8;
/// Lists per node: whole, then per kind one per hint.
const LISTS_PER_NODE: usize = 1 + KINDS * HINTS;
/// The bit of a packed chunk where its node (3 bits) starts.
const NODE: u32 = 27;

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
    /// The current chunk of its kind on its node: off every list.
    pub current: bool,
    /// The NUMA node its memory belongs to.
    pub node: u8,
}

impl Chunk {
    /// Before a free of a block that merged into order `merged`: the hint
    /// becomes that order if the chunk had no free frame, else the larger
    /// of the two (it stays an upper bound).
    #[inline]
    pub fn raise_hint(&mut self, merged: u32) {
        let merged = merged as u8;
        self.hint = if self.free == 0 {
            merged
        } else {
            self.hint.max(merged)
        };
    }

    #[inline]
    fn pack(self) -> u64 {
        u64::from(self.free)
            | u64::from(self.hint) << 16
            | (self.kind.index() as u64) << 24
            | u64::from(self.holes) << 25
            | u64::from(self.current) << CURRENT
            | u64::from(self.node) << NODE
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
            node: (word >> NODE & 7) as u8,
        }
    }
}

/// The list a packed chunk belongs on: `None` (full, or current), or
/// `node * LISTS_PER_NODE + l` where `l` is 0 for whole and `1 + kind *
/// HINTS + hint` for a partial list. Read straight from the packed word,
/// so a change that moves no chunk costs a compare.
#[inline]
fn list_of(word: u64) -> Option<usize> {
    let free = (word & FREE_MASK) as usize;
    if free == 0 || word >> CURRENT & 1 != 0 {
        return None;
    }
    let node = (word >> NODE & 7) as usize;
    let list = if free == CHUNK_FRAMES {
        0
    } else {
        let kind = (word >> 24 & 1) as usize;
        let hint = ((word >> 16) as u8).min(HINTS as u8 - 1) as usize;
        1 + kind * HINTS + hint
    };
    Some(node * LISTS_PER_NODE + list)
}

/// Storage words the chunk table and lists need for `chunks` chunks.
pub const fn chunk_storage_words(chunks: usize) -> usize {
    chunks + LISTS_PER_NODE * storage_words(chunks * MAX_NODES)
}

/// The chunk table and its lists.
///
/// A list is one bitmap over `MAX_NODES * chunks` bits, node-major: bit
/// `node * chunks + chunk`, so the lowest member on a node is the first
/// set bit from the node's start.
pub struct Chunks<'a> {
    table: &'a mut [u64],
    /// Index 0: whole; `1 + kind * HINTS + hint`: partial.
    lists: [Bitmap<'a>; LISTS_PER_NODE],
    /// Per node and kind, bit `h` set: the partial list of hint `h` is
    /// not empty on that node.
    nonempty: [[u16; KINDS]; MAX_NODES],
    /// Members per node and list (to keep `nonempty` exact).
    members: [[u32; LISTS_PER_NODE]; MAX_NODES],
}

impl<'a> Chunks<'a> {
    /// A table of `chunks` chunks, every one with no free frame, on node
    /// 0, in `storage` of at least [`chunk_storage_words`] words.
    pub fn new(storage: &'a mut [u64], chunks: usize) -> Option<Self> {
        let storage = storage.get_mut(..chunk_storage_words(chunks))?;
        let (table, mut rest) = storage.split_at_mut(chunks);
        table.fill(0);
        let words = storage_words(chunks * MAX_NODES);
        let lists = core::array::from_fn(|_| {
            let (list, remaining) = core::mem::take(&mut rest).split_at_mut(words);
            rest = remaining;
            Bitmap::new_all_used(list, chunks * MAX_NODES).expect("sized above")
        });
        Some(Self {
            table,
            lists,
            nonempty: [[0; KINDS]; MAX_NODES],
            members: [[0; LISTS_PER_NODE]; MAX_NODES],
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

    /// Chunks of `node` with every frame free.
    pub fn whole_count(&self, node: usize) -> usize {
        self.members[node][0] as usize
    }

    /// Replaces what is known of chunk `index`, moving it between lists.
    #[inline]
    pub fn set(&mut self, index: usize, chunk: Chunk) {
        let (old, new) = (self.table[index], chunk.pack());
        self.table[index] = new;
        let (from, to) = (list_of(old), list_of(new));
        if from != to {
            if let Some(list) = from {
                self.leave(index, list);
            }
            if let Some(list) = to {
                self.join(index, list);
            }
        }
    }

    fn leave(&mut self, index: usize, list: usize) {
        let (node, list) = (list / LISTS_PER_NODE, list % LISTS_PER_NODE);
        self.lists[list].set_used(node * self.table.len() + index);
        self.members[node][list] -= 1;
        if list > 0 && self.members[node][list] == 0 {
            let (kind, hint) = ((list - 1) / HINTS, (list - 1) % HINTS);
            self.nonempty[node][kind] &= !(1 << hint);
        }
    }

    fn join(&mut self, index: usize, list: usize) {
        let (node, list) = (list / LISTS_PER_NODE, list % LISTS_PER_NODE);
        self.lists[list].set_free(node * self.table.len() + index);
        self.members[node][list] += 1;
        if list > 0 {
            let (kind, hint) = ((list - 1) / HINTS, (list - 1) % HINTS);
            self.nonempty[node][kind] |= 1 << hint;
        }
    }

    /// The node of chunk `index`.
    #[inline]
    pub fn node_of(&self, index: usize) -> usize {
        (self.table[index] >> NODE & 7) as usize
    }

    /// The lowest member of `list` on `node`.
    #[inline]
    fn first_on(&self, list: usize, node: usize) -> Option<usize> {
        let chunks = self.table.len();
        let found = self.lists[list].next_free(node * chunks)?;
        (found < (node + 1) * chunks).then(|| found - node * chunks)
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
    /// one, where `merged` computes the order the freed frame merged into
    /// (only called when it matters; `buddy_free` false means it is 0):
    /// * the chunk is current and does not become whole by it;
    /// * it was full and its kind has no current chunk on its node: it
    ///   becomes that current one (from no list to no list);
    /// * it is on a partial list and the merged order does not raise its
    ///   hint, so it stays on that list.
    ///
    /// True: done; false: nothing changed, take the general path. A
    /// current chunk's hint is left alone (see `make_current`).
    #[inline]
    pub fn give_one(
        &mut self,
        index: usize,
        buddy_free: bool,
        merged: impl FnOnce() -> u32,
        current: &mut [[Option<usize>; KINDS]; MAX_NODES],
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
            let node = (*word >> NODE & 7) as usize;
            if current[node][kind].is_some() {
                return false;
            }
            *word += 1 | 1 << CURRENT;
            current[node][kind] = Some(index);
            return true;
        }
        let hint = (*word >> 16 & 0xFF) as u32;
        if !buddy_free || hint >= HINTS as u32 - 1 || merged() <= hint {
            *word += 1;
            return true;
        }
        false
    }

    /// The lowest chunk of `kind` on `node` whose hint is at least
    /// `order`, taking the smallest such hint first (best fit: big blocks
    /// stay whole).
    #[inline]
    pub fn partial_for(&self, node: usize, kind: Mobility, order: u32) -> Option<usize> {
        let lists = self.nonempty[node][kind.index()] >> order;
        if lists == 0 {
            return None;
        }
        let hint = order as usize + lists.trailing_zeros() as usize;
        self.first_on(1 + kind.index() * HINTS + hint, node)
    }

    /// The lowest whole chunk on `node`.
    #[inline]
    pub fn first_whole(&self, node: usize) -> Option<usize> {
        if self.members[node][0] == 0 {
            return None;
        }
        self.first_on(0, node)
    }

    /// The lowest run of `count` whole chunks on `node` starting at a
    /// multiple of `count` (a power of two).
    pub fn whole_run(&self, node: usize, count: usize) -> Option<usize> {
        let chunks = self.table.len();
        if (self.members[node][0] as usize) < count {
            return None;
        }
        // Node-major bits: the node's first chunk is bit node * chunks,
        // so align chunk numbers, not bit numbers.
        let phase = (count - (node * chunks) % count) % count;
        let found = self.lists[0].find_run(node * chunks, count, count, phase)?;
        (found + count <= (node + 1) * chunks).then(|| found - node * chunks)
    }
}
