//! Object caches for kernel objects: a named [`SlabCache`] of objects of
//! one size and alignment, on slabs (blocks of pages) from a
//! [`SlabPages`] source, with an optional constructor run once per object
//! when its slab is made (Bonwick's slab allocator is the model; Linux's
//! `kmem_cache` the interface).
//!
//! * [`geometry`]: stride, slab order and header place, chosen so that
//!   header and slack stay under 12 % of a slab;
//! * `header`: the header at each slab's end, with the free bitmap
//!   (objects are never written by the cache: a freed object stays
//!   constructed);
//! * `index`: the sorted bases of a cache's slabs, which every freed
//!   pointer is checked against before any slab memory is read;
//! * [`cache`]: the partial/full/empty lists, allocation, free, shrink;
//! * [`magazine`]: per-CPU magazines in front of a cache, the lock-free
//!   fast path, and the retire protocol that keeps it safe;
//! * [`stats`]: the counters a cache reports.
//!
//! This is separate from the heap's own size classes (`heap::slab`), which
//! serve `kmalloc` from TLSF-supplied pages; see docs/slab.md.

pub mod cache;
pub mod geometry;
mod header;
mod index;
pub mod magazine;
pub mod pages;
pub mod stats;
#[cfg(test)]
mod tests;

pub use cache::{Constructor, SlabCache, DEFAULT_RESERVE, NAME_BYTES};
pub use geometry::{
    Geometry, MAX_ALIGN, MAX_OBJECT_SIZE, MAX_SLAB_ORDER, MIN_ALIGN, WASTE_LIMIT_PERCENT,
};
pub use index::INLINE as INLINE_SLABS;
pub use pages::SlabPages;
pub use stats::{CacheStats, CacheTotals};
