//! The kernel heap allocator: slab caches for small objects in front of a
//! two-level segregated-fit (TLSF) allocator with boundary tags, over a
//! memory range that can grow at its end.
//!
//! * O(1) `alloc` and `free` (a few bit scans; no list walks). Requests up
//!   to 256 bytes take a slot from a 4 KiB page of their size class
//!   (`slab`); the rest take TLSF blocks, coalesced with both neighbours
//!   when freed, with 8-byte headers, 16-byte-aligned results and
//!   alignments up to 4096 (`tlsf`).
//! * Hardened: a bitmap of live allocation starts (kept outside the heap)
//!   makes `free` of a foreign, interior or already-freed pointer an error
//!   that changes nothing; `verify()` checks every invariant.
//! * Grows through a [`Grow`] hook (the kernel maps more pages) up to a cap.
//!
//! See docs/heap.md for the algorithm, its bounds and measured figures.

mod slab;
mod tlsf;

pub use tlsf::{DebugChecks, Grow, Heap, HeapStats, NoGrow, MAX_ALIGN};

#[cfg(test)]
mod tests;
