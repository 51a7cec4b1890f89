//! Memory pressure: before an allocation that ran out of frames fails,
//! the heap and the object caches give back what they can, and the
//! allocation is tried once more.
//!
//! Only callers that hold no lock may ask (the heap's give-back takes the
//! heap, VMM and PMM locks, and an object cache's lock): today the user
//! page-fault path, which runs with nothing held (a fault from ring 3, or
//! in a user copy routine, which is never called under a lock).
//!
//! Under a lock there is less to take, but not nothing: a heap growth that
//! finds no frame (under the heap lock) first gives back the mapped
//! interior of the heap's own free blocks, which needs only the VMM and
//! PMM locks that come after the heap's in the lock order, and grows on
//! those frames (`Heap::give_back_for_growth` in the core). Page tables
//! under the VMM lock and slab pages under a cache's still fail as before:
//! the kernel keeps no per-CPU record of the locks a CPU holds, and the
//! kernel runs with interrupts off, so "interrupts on" cannot stand in
//! for "no lock held" either.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{heap, slab};

/// Times memory was reclaimed, and the pages it gave back.
static RECLAIMS: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);

/// Gives back every page the heap and the object caches can spare;
/// returns how many. Call with no lock held.
pub fn under_pressure() -> u64 {
    let pages = heap::release_under_pressure() + slab::shrink_all() as u64;
    RECLAIMS.fetch_add(1, Ordering::Relaxed);
    PAGES.fetch_add(pages, Ordering::Relaxed);
    if pages > 0 {
        log::info!("memory pressure: the heap and object caches gave back {pages} pages");
    }
    pages
}

/// How often memory was reclaimed since boot, and the pages given back.
pub fn stats() -> (u64, u64) {
    (
        RECLAIMS.load(Ordering::Relaxed),
        PAGES.load(Ordering::Relaxed),
    )
}
