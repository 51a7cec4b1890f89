//! Memory pressure: before an allocation that ran out of frames fails,
//! the heap and the object caches give back what they can, and the
//! allocation is tried once more.
//!
//! Only callers that hold no lock may ask (the heap's give-back takes the
//! heap, VMM and PMM locks, and an object cache's lock): today the user
//! page-fault path, which runs with nothing held (a fault from ring 3, or
//! in a user copy routine, which is never called under a lock).
//!
//! Under a lock there is less to take, but not nothing:
//! - a heap growth that finds no frame (under the heap lock) first gives
//!   back the mapped interior of the heap's own free blocks, which needs
//!   only the VMM and PMM locks that come after the heap's in the lock
//!   order, and grows on those frames (`Heap::give_back_for_growth` in
//!   the core);
//! - a slab the PMM cannot give (under the cache's lock, which comes
//!   before the heap's) takes what the heap gives back ([`heap_only`]);
//! - frames taken under the heap's or the VMM's lock (heap growth, page
//!   tables) take the empty slabs of the object caches not locked right
//!   now ([`frame_under_lock`]): a cache's lock comes before those, so it
//!   is only tried, never waited for.
//!
//! The kernel keeps no per-CPU record of the locks a CPU holds (and runs
//! with interrupts off, so "interrupts on" cannot stand in for "no lock
//! held"); each path above gives back only what its place in the lock
//! order allows. Every give-back needs [`frames_short`]: an injected
//! failure, the heap's cap or a fragmented PMM never trigger one.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::PhysFrame;

use super::{heap, pmm, slab};

/// Times memory was reclaimed, and the pages it gave back.
static RECLAIMS: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);

/// Gives back every page the heap and the object caches can spare;
/// returns how many. Call with no lock held.
pub fn under_pressure() -> u64 {
    let pages = heap::release_under_pressure() + slab::shrink_all() as u64;
    record(pages, "the heap and object caches");
    pages
}

/// Gives back every page the heap can spare, not the object caches':
/// for a caller that holds one object cache's lock (the heap's, the
/// VMM's and the PMM's come after it in the lock order; another cache's
/// may not be taken). Returns how many.
pub fn heap_only() -> u64 {
    let pages = heap::release_under_pressure();
    record(pages, "the heap");
    pages
}

/// Gives back the empty slabs of the object caches not locked right now
/// (`slab::try_shrink_all`), waiting for no lock: what a frame allocation
/// under the heap's or the VMM's lock can still reclaim. Returns how many
/// pages.
pub fn unlocked_caches() -> u64 {
    let pages = slab::try_shrink_all() as u64;
    record(pages, "the object caches");
    pages
}

/// A frame from `take` (`pmm::alloc_page` or `pmm::alloc_zeroed`) for a
/// caller that may hold the heap's or the VMM's lock (page tables, heap
/// growth): if the PMM is out of frames, the object caches not in use
/// give back their empty slabs ([`unlocked_caches`]) and it is tried once
/// more.
pub fn frame_under_lock(take: fn() -> Option<PhysFrame>) -> Option<PhysFrame> {
    take().or_else(|| {
        (frames_short(1) && unlocked_caches() > 0)
            .then(take)
            .flatten()
    })
}

fn record(pages: u64, from: &str) {
    RECLAIMS.fetch_add(1, Ordering::Relaxed);
    PAGES.fetch_add(pages, Ordering::Relaxed);
    if pages > 0 {
        log::info!("memory pressure: {from} gave back {pages} pages");
    }
}

/// Whether the PMM is really short of `pages` frames (with room for a
/// few page tables): a failure with more free than that came from
/// elsewhere (an injected failure, fragmentation), and giving pages back
/// would not be what it needs.
pub fn frames_short(pages: u64) -> bool {
    pmm::stats().free < pages + 8
}

/// How often memory was reclaimed since boot, and the pages given back.
pub fn stats() -> (u64, u64) {
    (
        RECLAIMS.load(Ordering::Relaxed),
        PAGES.load(Ordering::Relaxed),
    )
}
