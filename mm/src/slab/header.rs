//! The header at the end of every slab: its links in the cache's partial,
//! full or empty list, its objects held, and after it two bitmaps of one
//! bit per object:
//!
//! * *free* (1 = free in the slab): read and written under the cache's
//!   lock only;
//! * *live* (1 = handed to a user, not freed since): atomic words, because
//!   the per-CPU magazines (`slab::magazine`) set and clear them without
//!   the lock. An object in a magazine is neither free nor live, so a
//!   second free of it finds its live bit clear, as for one free in the
//!   slab.
//!
//! Objects are never written by the cache, so a freed object keeps the
//! state its constructor gave it.

use core::mem::{align_of, size_of};
use core::ptr;
use core::sync::atomic::AtomicU64;

use super::geometry::HEADER_FIXED;

/// Which list a slab is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Some objects free, some in use.
    Partial = 0,
    /// No object free.
    Full = 1,
    /// No object in use.
    Empty = 2,
}

impl ListKind {
    /// The three kinds, in index order.
    pub const ALL: [ListKind; 3] = [ListKind::Partial, ListKind::Full, ListKind::Empty];

    /// The kind stored as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<ListKind> {
        Self::ALL.get(byte as usize).copied()
    }

    /// The list a slab of `in_use` of `objects` objects belongs in.
    pub fn for_count(in_use: usize, objects: usize) -> ListKind {
        match in_use {
            0 => ListKind::Empty,
            n if n == objects => ListKind::Full,
            _ => ListKind::Partial,
        }
    }
}

/// The fixed part of a slab header; `bitmap_words` words of free bitmap
/// and as many of live bitmap follow it.
#[repr(C)]
pub struct SlabHeader {
    /// The next slab in the same list (null: last).
    pub next: *mut SlabHeader,
    /// The previous slab in the same list (null: first).
    pub prev: *mut SlabHeader,
    /// The magazine whose home the slab is (its address; 0: none), which
    /// other magazines' refills pass over (`slab::magazine`).
    pub owner: usize,
    /// Objects not free in the slab: live, or in a magazine.
    pub in_use: u32,
    /// The list the slab is in (a [`ListKind`] as a byte: read back by the
    /// consistency check, which must not trust it).
    pub list: u8,
    _reserved: [u8; 3],
}

const _: () = assert!(size_of::<SlabHeader>() == HEADER_FIXED && align_of::<SlabHeader>() == 8);

impl SlabHeader {
    /// A header in `list`, linked nowhere, nothing in use.
    pub const fn new(list: ListKind) -> Self {
        Self {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            owner: 0,
            in_use: 0,
            list: list as u8,
            _reserved: [0; 3],
        }
    }
}

/// The free bitmap after `header`.
///
/// # Safety
/// `header` is the header of a live slab whose bitmap has `words` words,
/// and no other reference to that bitmap exists while the slice lives.
pub unsafe fn bitmap<'a>(header: *mut SlabHeader, words: usize) -> &'a mut [u64] {
    // SAFETY: the bitmap follows the 32-byte, 8-aligned header inside the
    // slab (the caller's contract), so it is 8-aligned and `words` long.
    unsafe { core::slice::from_raw_parts_mut(header.add(1).cast::<u64>(), words) }
}

/// The free bitmap after `header`, to read.
///
/// # Safety
/// As for [`bitmap`], with no mutable reference to it while this lives.
pub unsafe fn bits<'a>(header: *const SlabHeader, words: usize) -> &'a [u64] {
    // SAFETY: as in `bitmap`.
    unsafe { core::slice::from_raw_parts(header.add(1).cast::<u64>(), words) }
}

/// The live bitmap after `header`'s free bitmap of `words` words.
///
/// # Safety
/// `header` is the header of a slab that stays live while the slice does,
/// with bitmaps of `words` words (written by [`clear_live`] when the slab
/// was made).
pub unsafe fn live<'a>(header: *const SlabHeader, words: usize) -> &'a [AtomicU64] {
    // SAFETY: the live bitmap follows the free bitmap, 8-aligned and
    // `words` long inside the slab (the caller's contract); it is only
    // ever reached through atomics once the slab is made.
    unsafe { core::slice::from_raw_parts(header.add(1).cast::<u64>().add(words).cast(), words) }
}

/// Clears the live bitmap of a slab being made.
///
/// # Safety
/// `header` is the header of a new slab with bitmaps of `words` words,
/// which no one else can reach yet.
pub unsafe fn clear_live(header: *mut SlabHeader, words: usize) {
    // SAFETY: the caller's contract; the words lie inside the slab.
    unsafe { ptr::write_bytes(header.add(1).cast::<u64>().add(words), 0, words) };
}

/// The word of a live bitmap holding `object`'s bit, and the bit.
pub fn live_bit(live: &[AtomicU64], object: usize) -> (&AtomicU64, u64) {
    (&live[object / 64], 1 << (object % 64))
}

/// Marks objects `0..objects` free in `bitmap`, and the bits past them
/// (which name no object) not free.
pub fn fill(bitmap: &mut [u64], objects: usize) {
    for (word, bits) in bitmap.iter_mut().enumerate() {
        let first = word * 64;
        *bits = match objects.saturating_sub(first) {
            0 => 0,
            n if n >= 64 => u64::MAX,
            n => (1 << n) - 1,
        };
    }
}

/// Takes up to `count` free objects of `bitmap`, lowest first, calling
/// `taken(n, object)` for the `n`th; returns how many it took.
pub fn take_up_to(bitmap: &mut [u64], count: usize, mut taken: impl FnMut(usize, usize)) -> usize {
    let mut n = 0;
    for (word, bits) in bitmap.iter_mut().enumerate() {
        while *bits != 0 && n < count {
            taken(n, word * 64 + bits.trailing_zeros() as usize);
            *bits &= *bits - 1;
            n += 1;
        }
        if n == count {
            break;
        }
    }
    n
}
