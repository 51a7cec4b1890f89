//! What an object cache reports about itself.
#![forbid(unsafe_code)]

/// A cache's counters and layout, copied out (for `slabinfo`, `meminfo`,
/// tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes its user asked for per object.
    pub object_size: usize,
    /// Alignment of every object.
    pub align: usize,
    /// Distance between objects in a slab.
    pub stride: usize,
    /// Objects per slab.
    pub objects_per_slab: usize,
    /// Each slab is 2^`slab_order` pages.
    pub slab_order: u32,
    /// Objects handed out and not freed.
    pub in_use: usize,
    /// Objects waiting in per-CPU magazines (free for allocation there;
    /// still held by their slabs).
    pub in_magazines: usize,
    /// Objects in all slabs (in use or free).
    pub total: usize,
    /// Slabs in existence.
    pub slabs: usize,
    /// Of those, slabs with free and used objects.
    pub partial_slabs: usize,
    /// Slabs with no free object.
    pub full_slabs: usize,
    /// Slabs with no object in use (at most the reserve).
    pub empty_slabs: usize,
    /// Pages the slab index holds beyond its inline room (0 up to 8 slabs).
    pub index_pages: usize,
    /// Allocations that succeeded.
    pub allocations: u64,
    /// Frees that succeeded.
    pub frees: u64,
    /// Allocations that failed (the page source had no block).
    pub failed: u64,
    /// Frees refused (double, foreign or interior pointers).
    pub refused_frees: u64,
    /// Slabs made (each one ran the constructor on all its objects).
    pub slabs_created: u64,
    /// Slabs given back to the page source.
    pub slabs_released: u64,
    /// Of `allocations`, those a magazine served without the cache's lock.
    pub magazine_allocations: u64,
    /// Of `frees`, those a magazine took without the cache's lock.
    pub magazine_frees: u64,
}

impl CacheStats {
    /// Pages of the slabs alone.
    pub fn slab_pages(&self) -> usize {
        self.slabs << self.slab_order
    }

    /// Pages the cache holds from its page source: slabs and index.
    pub fn pages(&self) -> usize {
        self.slab_pages() + self.index_pages
    }

    /// The share of allocations and frees magazines served without the
    /// lock, in percent (`None` before any).
    pub fn magazine_hit_percent(&self) -> Option<u64> {
        let all = self.allocations + self.frees;
        let hits = self.magazine_allocations + self.magazine_frees;
        (all > 0).then(|| hits * 100 / all)
    }
}

/// Counters summed over several caches (`meminfo`'s line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheTotals {
    /// Caches counted.
    pub caches: usize,
    /// Objects in use.
    pub in_use: usize,
    /// Objects in all slabs.
    pub total: usize,
    /// Objects waiting in per-CPU magazines.
    pub in_magazines: usize,
    /// Slabs.
    pub slabs: usize,
    /// Pages held (slabs and indexes).
    pub pages: usize,
    /// Bytes of objects in use (their requested size).
    pub bytes_in_use: usize,
}

impl CacheTotals {
    /// Adds one cache's figures.
    pub fn add(&mut self, stats: &CacheStats) {
        self.caches += 1;
        self.in_use += stats.in_use;
        self.total += stats.total;
        self.in_magazines += stats.in_magazines;
        self.slabs += stats.slabs;
        self.pages += stats.pages();
        self.bytes_in_use += stats.in_use * stats.object_size;
    }
}
