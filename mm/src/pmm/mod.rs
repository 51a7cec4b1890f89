//! The physical memory manager: 4 KiB frames, bitmap-tracked.
//!
//! [`ranges`] turns the firmware memory map into usable page-aligned
//! ranges, [`bitmap`] is the three-level bitmap, and [`allocator`] is the
//! frame allocator built from both. See docs/pmm.md for the algorithm,
//! its costs and measured figures.
#![forbid(unsafe_code)]

pub mod allocator;
pub mod bitmap;
pub mod blocks;
pub mod cache;
pub mod chunks;
pub mod meta;
pub mod ranges;
pub mod reservations;

pub use allocator::{
    find_free_space, storage_words_within, ChunkCounts, FrameAllocator, InitError, NodeError,
    NodeMemory, NodeReport, NodeStats, Reservation, ReservationKind, Stats, MAX_ORDER, MAX_RANGES,
};
pub use chunks::{Mobility, MAX_NODES};
pub use meta::{CowAction, FrameFlags, FrameMeta, FrameTable, Owner, Release};
pub use ranges::{usable_ranges, MapEntry, PhysRange, RangeSet};
pub use reservations::{ReservationList, ReservationsFull, MAX_RESERVATIONS};
