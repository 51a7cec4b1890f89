//! The heap's counters.
#![forbid(unsafe_code)]

/// Counters of the heap.
// Field order is fixed (repr(C)) so that the counters the small-object
// fast paths update have no updated neighbour the compiler could merge
// them with into one vector store (a store-forwarding stall on the host:
// see "Profiling history" in docs/heap.md).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations (block headers and rounding included;
    /// a slab object counts its slot size).
    pub used: usize,
    /// Bytes of the managed range that are mapped: pages given back
    /// inside free blocks (`Heap::release_inside`) are not counted.
    pub mapped: usize,
    /// Of `free`, the bytes in free slab slots (reusable only by requests
    /// of the same size class).
    pub slab_free: usize,
    /// Bytes neither used nor free: slab page headers and slack, the
    /// heap's 16 bytes of padding and end marker.
    /// `used + free + overhead == mapped`.
    pub overhead: usize,
    /// Blocks currently allocated.
    pub live_allocations: usize,
    /// Failed allocations.
    pub failed_allocations: u64,
    /// Allocations ever made.
    pub total_allocations: u64,
    /// Frees that found the red zone after the block overwritten (debug
    /// checks only): buffer overflows.
    pub red_zone_violations: u64,
    /// Highest `used` ever seen.
    pub peak_used: usize,
    /// Bytes free and mapped: free blocks (less the pages given back
    /// inside them) plus free slots in slab pages.
    pub free: usize,
}
