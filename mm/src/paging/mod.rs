//! Page tables: a 4-level mapper with huge pages, table freeing, rollback
//! on failure, explicit TLB flush tokens and debug walks.
//!
//! The mapper reaches tables through a [`PhysMem`] (the kernel's direct
//! map, or a host buffer standing in for physical memory in tests) and gets
//! table frames from the `x86_64` crate's `FrameAllocator` /
//! `FrameDeallocator` traits. It never touches CR3 or the TLB itself: each
//! change returns a `#[must_use]` token that the caller flushes.

pub mod batch;
pub mod flags;
pub mod flush;
pub mod mapper;
pub mod shootdown;
pub mod walk;

pub use batch::{TlbBatch, BATCH_PAGES};
pub use flags::*;
pub use flush::{Flush, FlushRange, Tlb};
pub use mapper::{check_span, Mapper, OffsetMem, PageSize, PhysMem, Translation};
pub use walk::{Run, Walk};
