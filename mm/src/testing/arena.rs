//! Page-aligned host memory for a heap under test or benchmark.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

/// `len` bytes of page-aligned host memory, freed on drop.
pub struct Arena {
    base: NonNull<u8>,
    layout: Layout,
}

impl Arena {
    /// Allocates `len` bytes (a non-zero multiple of 4096), aligned to a
    /// page; panics if the host has no memory for them.
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 4096).expect("arena size overflows");
        assert!(len > 0 && len.is_multiple_of(4096), "arena of {len} bytes");
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc(layout) }).expect("host out of memory");
        Self { base, layout }
    }

    /// The first byte; the pointer carries the whole arena's provenance.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Bytes in the arena.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the arena holds no byte (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed only here.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}
