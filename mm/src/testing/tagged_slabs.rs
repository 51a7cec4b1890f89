//! A page source for object caches with per-CPU magazines: slabs from a
//! [`SlabArena`], tagged in a per-page table while they are slabs (as the
//! kernel's frame metadata tags them), retired with the wait over every
//! magazine (`slab::magazine`'s retire protocol).

use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use super::SlabArena;
use crate::layout::PAGE_SIZE;
use crate::slab::magazine::{quiesce, Magazine, SlabTags};
use crate::slab::SlabPages;

const PAGE: usize = PAGE_SIZE as usize;

/// Each page's slab tag (0: none).
pub struct PageTags {
    base: usize,
    pages: Vec<AtomicU32>,
    /// Dawdle 50 us after each lookup, widening the window between a
    /// lock-free free's tag load and its read of the slab (race tests).
    pub dawdle: AtomicBool,
}

impl PageTags {
    /// Whether every page is untagged.
    pub fn all_clear(&self) -> bool {
        self.pages.iter().all(|tag| tag.load(Ordering::SeqCst) == 0)
    }
}

// SAFETY: a tag is set by `TaggedSlabs::publish` after the slab's header
// is written and cleared by `TaggedSlabs::retire` (SeqCst, then `quiesce`
// over every magazine of the cache) before the block goes back to the
// arena; loads are SeqCst.
unsafe impl SlabTags for PageTags {
    fn tag_of(&self, address: usize) -> Option<NonZeroU32> {
        let page = address.checked_sub(self.base)? / PAGE;
        let tag = NonZeroU32::new(self.pages.get(page)?.load(Ordering::SeqCst));
        if self.dawdle.load(Ordering::Relaxed) {
            let began = std::time::Instant::now();
            while began.elapsed().as_micros() < 50 {
                std::hint::spin_loop();
            }
        }
        tag
    }
}

/// Slabs from an arena of its own for one cache tagged `tag`, whose
/// magazines are `magazines`.
pub struct TaggedSlabs {
    /// Where the blocks come from (a test may set its budget).
    pub arena: SlabArena,
    tags: Arc<PageTags>,
    tag: NonZeroU32,
    magazines: Arc<Vec<Magazine>>,
    retired: Arc<AtomicUsize>,
}

// SAFETY: the arena's memory belongs to this value alone and moves with
// it; the shared parts are atomics.
unsafe impl Send for TaggedSlabs {}

impl TaggedSlabs {
    /// An arena of `pages` pages for the cache tagged `tag`, and `cpus`
    /// magazines for it; also the tag table and the retirement count,
    /// shared.
    pub fn new(
        pages: usize,
        tag: NonZeroU32,
        cpus: usize,
    ) -> (Self, Arc<PageTags>, Arc<Vec<Magazine>>, Arc<AtomicUsize>) {
        let arena = SlabArena::new(pages);
        let tags = Arc::new(PageTags {
            base: arena.pointer(0).addr(),
            pages: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            dawdle: AtomicBool::new(false),
        });
        let magazines = Arc::new((0..cpus).map(|_| Magazine::new()).collect::<Vec<_>>());
        let retired = Arc::new(AtomicUsize::new(0));
        let slabs = Self {
            arena,
            tags: tags.clone(),
            tag,
            magazines: magazines.clone(),
            retired: retired.clone(),
        };
        (slabs, tags, magazines, retired)
    }

    fn set(&self, block: NonNull<u8>, order: u32, tag: u32) {
        let first = (block.as_ptr().addr() - self.tags.base) / PAGE;
        for page in &self.tags.pages[first..first + (1 << order)] {
            page.store(tag, Ordering::SeqCst);
        }
    }
}

// SAFETY: forwards to the arena, which keeps the promise.
unsafe impl SlabPages for TaggedSlabs {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        self.arena.alloc_slab(order)
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.arena.free_slab(block, order) }
    }

    fn publish(&mut self, block: NonNull<u8>, order: u32) {
        self.set(block, order, self.tag.get());
    }

    fn retire(&mut self, block: NonNull<u8>, order: u32) {
        self.set(block, order, 0);
        quiesce(self.magazines.iter());
        self.retired.fetch_add(1, Ordering::Relaxed);
    }
}
