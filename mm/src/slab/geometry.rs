//! How a cache lays out its slabs: object stride, slab order, objects per
//! slab and where the slab header goes, chosen once when the cache is made.
//!
//! A slab is a block of 2^order pages, aligned to its size. Objects fill it
//! from its first byte at a fixed stride (the size rounded up to the
//! alignment); the header (list links, counter, then two bitmaps: free in
//! the slab, and live, handed to a user) sits at its end, and whatever is
//! left between the last object and the header is slack:
//!
//! ```text
//! base                                                  base + (4096 << order)
//! | object 0 | object 1 | ... | object n-1 | slack | header | free | live |
//! ```
//!
//! The order is the smallest one whose slack and header together are under
//! [`WASTE_LIMIT_PERCENT`] of the slab; for every object size and alignment
//! a cache accepts some order up to [`MAX_SLAB_ORDER`] meets it (tested:
//! the waste can never exceed one stride plus the header, at most
//! 8 KiB + 48 B = 6.3 % of a 128 KiB slab).
#![forbid(unsafe_code)]

use crate::layout::PAGE_SIZE;
use crate::MmError;

/// Objects are aligned to at least this (a pointer's alignment, as Linux's
/// `kmem_cache_create` gives an alignment of 0).
pub const MIN_ALIGN: usize = 8;
/// The largest alignment a cache accepts: a page (slabs are aligned to at
/// least that, and object 0 starts at the slab's first byte).
pub const MAX_ALIGN: usize = PAGE_SIZE as usize;
/// The largest object a cache accepts; larger ones belong to `kmalloc` or
/// the PMM.
pub const MAX_OBJECT_SIZE: usize = 8192;
/// The largest slab: 2^5 pages, 128 KiB (only objects above 4 KiB need it).
pub const MAX_SLAB_ORDER: u32 = 5;
/// Slab bytes that may go to the header and slack, in percent.
pub const WASTE_LIMIT_PERCENT: usize = 12;
/// Bytes of the header before its bitmaps (links, counter, list tag).
pub const HEADER_FIXED: usize = 32;

/// Bytes of a slab of `order`.
pub const fn slab_bytes(order: u32) -> usize {
    (PAGE_SIZE as usize) << order
}

/// The layout of one cache's slabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes the cache's user asked for per object.
    pub size: usize,
    /// Alignment of every object (at least [`MIN_ALIGN`]).
    pub align: usize,
    /// Distance between objects: `size` rounded up to `align`.
    pub stride: usize,
    /// Each slab is 2^`order` pages.
    pub order: u32,
    /// Objects per slab.
    pub objects: usize,
    /// Words of each of the header's two bitmaps (one bit per object).
    pub bitmap_words: usize,
    /// Offset of the header from the slab's first byte.
    pub header_offset: usize,
}

impl Geometry {
    /// The layout for objects of `size` bytes aligned to `align` (0 means
    /// [`MIN_ALIGN`]): `InvalidArgument` unless `size` is 1 to
    /// [`MAX_OBJECT_SIZE`] and `align` a power of two up to [`MAX_ALIGN`].
    pub const fn new(size: usize, align: usize) -> Result<Geometry, MmError> {
        if size == 0 || size > MAX_OBJECT_SIZE || align > MAX_ALIGN {
            return Err(MmError::InvalidArgument);
        }
        let align = match align {
            0 => MIN_ALIGN,
            _ if !align.is_power_of_two() => return Err(MmError::InvalidArgument),
            _ if align < MIN_ALIGN => MIN_ALIGN,
            _ => align,
        };
        let stride = size.next_multiple_of(align);
        let mut order = 0;
        let mut best: Option<Geometry> = None;
        while order <= MAX_SLAB_ORDER {
            let candidate = Self::with_order(size, align, stride, order);
            if candidate.objects > 0 {
                if candidate.waste() * 100 < WASTE_LIMIT_PERCENT * slab_bytes(order) {
                    return Ok(candidate);
                }
                // Keep the least wasteful in case none meets the limit
                // (the tests show one always does).
                best = match best {
                    Some(known) if known.waste_per_mille() <= candidate.waste_per_mille() => {
                        Some(known)
                    }
                    _ => Some(candidate),
                };
            }
            order += 1;
        }
        match best {
            Some(geometry) => Ok(geometry),
            None => Err(MmError::InvalidArgument),
        }
    }

    /// The layout of a slab of `order` for objects of `stride`: as many
    /// objects as fit in front of a header whose bitmap covers them.
    const fn with_order(size: usize, align: usize, stride: usize, order: u32) -> Geometry {
        let bytes = slab_bytes(order);
        let mut objects = (bytes - HEADER_FIXED) / stride;
        while objects > 0 && objects * stride + header_bytes(objects) > bytes {
            objects -= 1;
        }
        Geometry {
            size,
            align,
            stride,
            order,
            objects,
            bitmap_words: objects.div_ceil(64),
            header_offset: bytes - header_bytes(objects),
        }
    }

    /// Bytes of one slab.
    pub const fn slab_bytes(&self) -> usize {
        slab_bytes(self.order)
    }

    /// Pages of one slab.
    pub const fn slab_pages(&self) -> usize {
        1 << self.order
    }

    /// Bytes of a slab not covered by object strides: header and slack
    /// (the padding inside a stride is the alignment's, not the slab's).
    pub const fn waste(&self) -> usize {
        self.slab_bytes() - self.objects * self.stride
    }

    /// [`waste`](Self::waste) in thousandths of the slab.
    pub const fn waste_per_mille(&self) -> usize {
        self.waste() * 1000 / self.slab_bytes()
    }
}

/// Bytes of the header of a slab of `objects`: the fixed part and two
/// bits per object (free, live), each bitmap in whole words.
const fn header_bytes(objects: usize) -> usize {
    HEADER_FIXED + 2 * objects.div_ceil(64) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_size_and_alignment_wastes_under_the_limit() {
        for align_shift in 3..=12 {
            let align = 1 << align_shift;
            for size in 1..=MAX_OBJECT_SIZE {
                let geometry = Geometry::new(size, align).unwrap();
                assert!(
                    geometry.waste() * 100 < WASTE_LIMIT_PERCENT * geometry.slab_bytes(),
                    "{geometry:?}"
                );
                assert!(geometry.objects >= 1);
                assert!(geometry.objects * geometry.stride <= geometry.header_offset);
                assert_eq!(
                    geometry.header_offset + HEADER_FIXED + 16 * geometry.bitmap_words,
                    geometry.slab_bytes()
                );
                assert!(geometry.header_offset.is_multiple_of(8));
                assert!(geometry.stride.is_multiple_of(align) && geometry.stride >= size);
            }
        }
    }

    #[test]
    fn small_objects_use_single_pages_and_large_ones_higher_orders() {
        let order = |size| Geometry::new(size, 0).unwrap().order;
        assert!((1..=480).all(|size| order(size) == 0));
        // 7 objects of 512 B in a page would waste 12.5 %: 15 in 8 KiB.
        assert_eq!(order(512), 1);
        assert_eq!(order(1024), 2, "15 objects of 1 KiB in 16 KiB");
        assert_eq!(order(2048), 3);
        assert_eq!(order(4096), 4);
        assert_eq!(order(8192), 5);
    }

    #[test]
    fn the_bitmap_covers_every_object_of_the_smallest_size() {
        let geometry = Geometry::new(1, 0).unwrap();
        assert_eq!(geometry.stride, 8);
        // 492 * 8 + 32 + 2 * 8 * 8 = 4096: 492 objects, two bitmaps of
        // 8 words.
        assert_eq!((geometry.objects, geometry.bitmap_words), (492, 8));
        assert_eq!(geometry.order, 0);
    }

    #[test]
    fn bad_sizes_and_alignments_are_refused() {
        assert_eq!(Geometry::new(0, 8), Err(MmError::InvalidArgument));
        assert_eq!(
            Geometry::new(MAX_OBJECT_SIZE + 1, 8),
            Err(MmError::InvalidArgument)
        );
        assert_eq!(Geometry::new(64, 24), Err(MmError::InvalidArgument));
        assert_eq!(Geometry::new(64, 8192), Err(MmError::InvalidArgument));
        assert_eq!(Geometry::new(64, 3), Err(MmError::InvalidArgument));
        assert_eq!(Geometry::new(5, 0).map(|g| g.align), Ok(MIN_ALIGN));
        assert_eq!(Geometry::new(5, 2).map(|g| g.align), Ok(MIN_ALIGN));
    }
}
