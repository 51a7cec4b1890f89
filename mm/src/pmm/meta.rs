//! Per-frame metadata: who owns each physical frame, how many page-table
//! entries map it and how many references keep it alive, for
//! copy-on-write sharing between address spaces.
//!
//! One [`FrameMeta`] of 8 bytes per 4 KiB frame (0.2 % of RAM), in storage
//! the caller hands over, indexed by frame number in O(1) through a
//! [`FrameTable`]. Every field is an atomic, so the table is `Sync` and
//! the counts can move without a lock; each count change is one
//! compare-and-swap loop that refuses to underflow or overflow rather
//! than wrap.
//!
//! The copy-on-write protocol (the address space's side is in
//! `mm::aspace`):
//! * a fresh frame is [`FrameTable::claim`]ed: owner set, one reference,
//!   one mapping;
//! * cloning a space [`FrameTable::share`]s it: one more reference and
//!   mapping, the [`FrameFlags::COW`] flag set;
//! * a write fault asks [`FrameTable::cow_write`]: the last reference
//!   takes the frame over in place, otherwise the writer copies it and
//!   [`FrameTable::release`]s its share of the original;
//! * unmapping releases; the caller frees the frame when it hears
//!   [`Release::Last`].
//!
//! A frame of an object cache's slab is outside that protocol: its
//! reference field holds instead the tag of the cache
//! ([`FrameMeta::tag_slab`]), which lets a lock-free free find its cache
//! (`slab::magazine`, whose retire protocol needs the SeqCst stores and
//! loads used here).

use core::num::NonZeroU32;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};

use x86_64::structures::paging::PhysFrame;

use crate::layout::PAGE_SIZE;
use crate::MmError;

/// What a frame is used for.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Not in use (the state a fresh table starts in).
    Free = 0,
    /// Kernel data of no more specific kind (boot data, stacks).
    Kernel = 1,
    /// A page table.
    PageTable = 2,
    /// A page of a user address space.
    User = 3,
    /// Kernel heap memory.
    Heap = 4,
    /// A slab of an object cache.
    Slab = 5,
    /// Never allocatable: firmware, the kernel image, holes.
    Reserved = 6,
}

impl Owner {
    /// The owner stored as `raw` (an unknown value reads as `Reserved`,
    /// the state nobody may take).
    pub const fn from_raw(raw: u8) -> Owner {
        match raw {
            0 => Owner::Free,
            1 => Owner::Kernel,
            2 => Owner::PageTable,
            3 => Owner::User,
            4 => Owner::Heap,
            5 => Owner::Slab,
            _ => Owner::Reserved,
        }
    }
}

/// Flags of a frame, as a small bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flag.
    pub const EMPTY: FrameFlags = FrameFlags(0);
    /// The contents may be moved to another frame (compaction).
    pub const MOVABLE: FrameFlags = FrameFlags(1 << 0);
    /// Shared copy-on-write between address spaces.
    pub const COW: FrameFlags = FrameFlags(1 << 1);
    /// Pinned: must stay where it is (DMA, a page being read by the kernel).
    pub const PINNED: FrameFlags = FrameFlags(1 << 2);

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }
}

/// The metadata of one frame: 8 bytes, every field an atomic.
#[derive(Debug)]
pub struct FrameMeta {
    owner: AtomicU8,
    flags: AtomicU8,
    map_count: AtomicU16,
    refs: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<FrameMeta>() == 8);

impl FrameMeta {
    /// A free frame: no owner, no flags, no mapping, no reference.
    pub const fn new() -> Self {
        Self {
            owner: AtomicU8::new(Owner::Free as u8),
            flags: AtomicU8::new(0),
            map_count: AtomicU16::new(0),
            refs: AtomicU32::new(0),
        }
    }

    /// Who owns the frame.
    pub fn owner(&self) -> Owner {
        Owner::from_raw(self.owner.load(Ordering::Acquire))
    }

    /// Records who owns the frame (no count changes: for frames outside
    /// the copy-on-write protocol, such as tables or slabs).
    pub fn set_owner(&self, owner: Owner) {
        self.owner.store(owner as u8, Ordering::Release);
    }

    /// The frame's flags.
    pub fn flags(&self) -> FrameFlags {
        FrameFlags(self.flags.load(Ordering::Acquire))
    }

    /// Sets the flags of `flags`.
    pub fn insert_flags(&self, flags: FrameFlags) {
        self.flags.fetch_or(flags.0, Ordering::AcqRel);
    }

    /// Clears the flags of `flags`.
    pub fn remove_flags(&self, flags: FrameFlags) {
        self.flags.fetch_and(!flags.0, Ordering::AcqRel);
    }

    /// How many page-table entries map the frame.
    pub fn map_count(&self) -> u16 {
        self.map_count.load(Ordering::Acquire)
    }

    /// How many references keep the frame alive.
    pub fn refs(&self) -> u32 {
        self.refs.load(Ordering::Acquire)
    }

    /// Marks the frame part of a published slab of the object cache
    /// tagged `tag` (after the slab's header is written: the SeqCst store
    /// publishes it).
    pub fn tag_slab(&self, tag: NonZeroU32) {
        self.owner.store(Owner::Slab as u8, Ordering::Relaxed);
        self.refs.store(tag.get(), Ordering::SeqCst);
    }

    /// Undoes [`tag_slab`](Self::tag_slab): the slab is being retired.
    pub fn untag_slab(&self) {
        self.refs.store(0, Ordering::SeqCst);
        self.owner.store(Owner::Free as u8, Ordering::Release);
    }

    /// The tag of the published slab the frame belongs to, if it does.
    pub fn slab_tag(&self) -> Option<NonZeroU32> {
        let tag = self.refs.load(Ordering::SeqCst);
        // A user frame's reference count is no tag.
        if self.owner() != Owner::Slab {
            return None;
        }
        NonZeroU32::new(tag)
    }

    /// Back to the state of [`FrameMeta::new`].
    fn reset(&self) {
        self.flags.store(0, Ordering::Relaxed);
        self.map_count.store(0, Ordering::Relaxed);
        self.refs.store(0, Ordering::Relaxed);
        self.owner.store(Owner::Free as u8, Ordering::Release);
    }
}

impl Default for FrameMeta {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`FrameTable::release`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// That was the last reference: the frame is free in the table and
    /// the caller gives it back to the frame allocator.
    Last,
    /// Other references remain; the frame stays.
    StillShared,
}

/// What a write fault on a copy-on-write page must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CowAction {
    /// The faulting space holds the only reference: make the page
    /// writable in place (the COW flag is cleared).
    TakeOver,
    /// Others share the frame: copy it into a fresh frame, map that, and
    /// release the original.
    Copy,
}

/// The metadata of a run of frames from a physical base, one
/// [`FrameMeta`] per frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameTable<'a> {
    entries: &'a [FrameMeta],
    base: PhysFrame,
}

impl<'a> FrameTable<'a> {
    /// The table for the frames from `base`, one per entry of `entries`.
    /// The entries are taken as they are (a fresh table is
    /// [`FrameMeta::new`] everywhere: every frame free).
    pub fn new(entries: &'a [FrameMeta], base: PhysFrame) -> Self {
        Self { entries, base }
    }

    /// Bytes of metadata per frame.
    pub const fn bytes_per_frame() -> usize {
        core::mem::size_of::<FrameMeta>()
    }

    /// Bytes of storage a table for `frames` frames needs.
    pub const fn storage_bytes_for(frames: u64) -> u64 {
        frames.saturating_mul(Self::bytes_per_frame() as u64)
    }

    /// Number of frames covered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table covers no frame.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first frame covered.
    pub fn base(&self) -> PhysFrame {
        self.base
    }

    /// The metadata of `frame`, or `None` outside the table: O(1).
    pub fn get(&self, frame: PhysFrame) -> Option<&'a FrameMeta> {
        let offset = frame
            .start_address()
            .as_u64()
            .checked_sub(self.base.start_address().as_u64())?;
        self.entries.get(usize::try_from(offset / PAGE_SIZE).ok()?)
    }

    fn entry(&self, frame: PhysFrame) -> Result<&'a FrameMeta, MmError> {
        self.get(frame).ok_or(MmError::OutOfRange)
    }

    /// Takes a frame fresh from the allocator for `owner`: one reference,
    /// one mapping. Refused with `FrameNotFree` if the table says the
    /// frame is in use (nothing changes then).
    pub fn claim(&self, frame: PhysFrame, owner: Owner) -> Result<(), MmError> {
        let meta = self.entry(frame)?;
        meta.refs
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| MmError::FrameNotFree)?;
        meta.map_count.store(1, Ordering::Relaxed);
        meta.flags.store(0, Ordering::Relaxed);
        meta.owner.store(owner as u8, Ordering::Release);
        Ok(())
    }

    /// One more space maps the frame: +1 reference, +1 mapping, COW flag
    /// set. Returns the new reference count. Refused on a free frame
    /// (`CountUnderflow`: nothing to share) or a full count.
    pub fn share(&self, frame: PhysFrame) -> Result<u32, MmError> {
        let meta = self.entry(frame)?;
        let refs = increment_u32(&meta.refs)?;
        if let Err(error) = increment_u16(&meta.map_count) {
            meta.refs.fetch_sub(1, Ordering::AcqRel);
            return Err(error);
        }
        meta.insert_flags(FrameFlags::COW);
        Ok(refs)
    }

    /// One mapping and reference fewer. On the last one the metadata is
    /// reset to free and the caller frees the frame. Refused (nothing
    /// changes) when either count is zero already.
    pub fn release(&self, frame: PhysFrame) -> Result<Release, MmError> {
        let meta = self.entry(frame)?;
        decrement_u16(&meta.map_count)?;
        let refs = match decrement_u32(&meta.refs) {
            Ok(refs) => refs,
            Err(error) => {
                meta.map_count.fetch_add(1, Ordering::AcqRel);
                return Err(error);
            }
        };
        Ok(match refs {
            0 => {
                meta.reset();
                Release::Last
            }
            _ => Release::StillShared,
        })
    }

    /// A write fault on a COW page of `frame`: the only reference takes
    /// it over (COW flag cleared), otherwise it must be copied. Refused on
    /// a free frame.
    pub fn cow_write(&self, frame: PhysFrame) -> Result<CowAction, MmError> {
        let meta = self.entry(frame)?;
        match meta.refs() {
            0 => Err(MmError::CountUnderflow),
            1 => {
                meta.remove_flags(FrameFlags::COW);
                Ok(CowAction::TakeOver)
            }
            _ => Ok(CowAction::Copy),
        }
    }
}

/// `count + 1` unless `count` is zero (nothing to add to) or full.
fn increment_u32(count: &AtomicU32) -> Result<u32, MmError> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| match value {
            0 => None,
            value => value.checked_add(1),
        })
        .map(|old| old + 1)
        .map_err(|old| {
            if old == 0 {
                MmError::CountUnderflow
            } else {
                MmError::CountOverflow
            }
        })
}

/// `count + 1`, refused when full.
fn increment_u16(count: &AtomicU16) -> Result<u16, MmError> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
            value.checked_add(1)
        })
        .map(|old| old + 1)
        .map_err(|_| MmError::CountOverflow)
}

/// `count - 1`, refused at zero. Returns the new value.
fn decrement_u32(count: &AtomicU32) -> Result<u32, MmError> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
            value.checked_sub(1)
        })
        .map(|old| old - 1)
        .map_err(|_| MmError::CountUnderflow)
}

/// As [`decrement_u32`], for a map count.
fn decrement_u16(count: &AtomicU16) -> Result<u16, MmError> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
            value.checked_sub(1)
        })
        .map(|old| old - 1)
        .map_err(|_| MmError::CountUnderflow)
}

#[cfg(test)]
mod tests;
