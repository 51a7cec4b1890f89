//! Where object caches get their slabs: a source of page blocks.

use core::ptr::NonNull;

/// A source of blocks of 2^order pages for slabs (and for a cache's slab
/// index): the kernel's is the PMM through the direct map; host tests use
/// an arena (`mm::testing::SlabArena`).
///
/// # Safety
/// An implementation promises that a block returned by
/// [`alloc_slab`](Self::alloc_slab)`(order)` is `4096 << order` bytes of
/// writable memory, aligned to its size, that nothing else reads or writes
/// until it comes back through [`free_slab`](Self::free_slab) (its
/// contents on arrival may be anything). The caches write their headers
/// into it and hand its objects out on that promise.
pub unsafe trait SlabPages {
    /// A block of 2^`order` pages, or `None` if none is left.
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>>;

    /// Takes back a block.
    ///
    /// # Safety
    /// `block` came from `alloc_slab(order)` of this source, with this
    /// `order`, and nothing uses it any more.
    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32);

    /// Called when `block` (from `alloc_slab(order)`) has become a slab,
    /// its header and bitmaps written: a source that serves lock-free
    /// frees (`slab::magazine`) makes it findable by [`SlabTags`] here.
    /// The default does nothing.
    ///
    /// [`SlabTags`]: super::magazine::SlabTags
    fn publish(&mut self, block: NonNull<u8>, order: u32) {
        let _ = (block, order);
    }

    /// Called before a published slab goes back through
    /// [`free_slab`](Self::free_slab): a source that publishes must make
    /// the block unfindable and then wait until no lock-free free that
    /// found it is still reading its header (`slab::magazine`'s retire
    /// protocol). The default does nothing.
    fn retire(&mut self, block: NonNull<u8>, order: u32) {
        let _ = (block, order);
    }
}

// SAFETY: forwards to `P`, which keeps the promise.
unsafe impl<P: SlabPages + ?Sized> SlabPages for &mut P {
    fn alloc_slab(&mut self, order: u32) -> Option<NonNull<u8>> {
        (**self).alloc_slab(order)
    }

    unsafe fn free_slab(&mut self, block: NonNull<u8>, order: u32) {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).free_slab(block, order) }
    }

    fn publish(&mut self, block: NonNull<u8>, order: u32) {
        (**self).publish(block, order)
    }

    fn retire(&mut self, block: NonNull<u8>, order: u32) {
        (**self).retire(block, order)
    }
}
