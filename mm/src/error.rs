//! The one error type of the memory manager.
#![forbid(unsafe_code)]

use core::fmt;

/// Everything that can go wrong in the PMM, the VMM, the heap or the
/// object caches.
///
/// Each variant names one misuse or one exhausted resource, so a caller (or
/// the C shim) can report exactly what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// No free physical frame (or no free run of the requested size).
    OutOfFrames,
    /// The frame is already free: a double free.
    FrameAlreadyFree,
    /// The frame is reserved (kernel image, boot data, firmware) and was
    /// never handed out.
    FrameReserved,
    /// The address lies outside the memory the allocator manages.
    OutOfRange,
    /// The frames were handed out as a block of another size (or the
    /// address is inside a block, not at its start).
    WrongBlockSize,
    /// Part of the block is free already.
    PartlyFree,
    /// An address or size is not aligned as the operation needs.
    Misaligned,
    /// A virtual address is not canonical (bits 48..64 differ from bit 47).
    NonCanonical,
    /// The page is already mapped.
    AlreadyMapped,
    /// The page is not mapped.
    NotMapped,
    /// The request conflicts with a huge (2 MiB / 1 GiB) mapping.
    HugePageConflict,
    /// The CPU does not support the requested page size.
    PageSizeUnsupported,
    /// The heap cannot grow any further.
    HeapExhausted,
    /// The pointer was freed already.
    DoubleFree,
    /// The pointer was never returned by this allocator.
    InvalidFree,
    /// An argument is out of its documented domain (zero count, bad alignment).
    InvalidArgument,
    /// The pointer lies in no slab of the object cache it was freed into.
    NotInCache,
    /// The pointer lies in a slab of the cache but not at an object's start.
    NotAtObject,
    /// The object belongs to another object cache than the one it was
    /// freed into.
    WrongCache,
    /// The object cache still has objects in use (it cannot be destroyed).
    CacheInUse,
    /// No such object cache: never created, or destroyed since.
    NoSuchCache,
    /// Every slot of the object-cache registry is taken.
    TooManyCaches,
    /// A frame's reference or map count would drop below zero (a frame
    /// released more often than it was taken).
    CountUnderflow,
    /// A frame's reference or map count would pass its maximum.
    CountOverflow,
    /// The frame's metadata says it is in use, but it was about to be
    /// claimed as a fresh frame.
    FrameNotFree,
    /// The range is empty (zero length).
    EmptyRange,
    /// The range lies (partly) outside the user half of an address space.
    OutsideUserRange,
    /// The range overlaps a region of the address space.
    RegionOverlap,
    /// Part of the range is covered by no region.
    NoRegion,
    /// The address space's region table is full.
    TooManyRegions,
    /// Writable and executable at once (W^X forbids it).
    WriteAndExecute,
}

impl MmError {
    /// A short, stable, human-readable description.
    pub const fn as_str(self) -> &'static str {
        match self {
            MmError::OutOfFrames => "out of physical frames",
            MmError::FrameAlreadyFree => "frame is already free (double free)",
            MmError::FrameReserved => "frame is reserved and was never allocated",
            MmError::OutOfRange => "address outside managed memory",
            MmError::WrongBlockSize => "not a block of that size (allocated with another order)",
            MmError::PartlyFree => "part of the block is already free",
            MmError::Misaligned => "address or size is misaligned",
            MmError::NonCanonical => "virtual address is not canonical",
            MmError::AlreadyMapped => "page is already mapped",
            MmError::NotMapped => "page is not mapped",
            MmError::HugePageConflict => "conflicts with a huge-page mapping",
            MmError::PageSizeUnsupported => "page size not supported by this CPU",
            MmError::HeapExhausted => "heap exhausted",
            MmError::DoubleFree => "pointer already freed (double free)",
            MmError::InvalidFree => "pointer was never allocated by this heap",
            MmError::InvalidArgument => "invalid argument",
            MmError::NotInCache => "pointer is in no slab of this cache",
            MmError::NotAtObject => "pointer is inside a slab but not at an object's start",
            MmError::WrongCache => "object belongs to another cache",
            MmError::CacheInUse => "cache still has objects in use",
            MmError::NoSuchCache => "no such cache (never created or destroyed)",
            MmError::TooManyCaches => "object-cache registry is full",
            MmError::CountUnderflow => "frame reference or map count would go below zero",
            MmError::CountOverflow => "frame reference or map count would overflow",
            MmError::FrameNotFree => "frame metadata says the frame is in use",
            MmError::EmptyRange => "range is empty",
            MmError::OutsideUserRange => "range is outside the user address range",
            MmError::RegionOverlap => "range overlaps an existing region",
            MmError::NoRegion => "part of the range is in no region",
            MmError::TooManyRegions => "region table is full",
            MmError::WriteAndExecute => "writable and executable at once (W^X)",
        }
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A raw virtual address from the outside (the C interface, the shell, a
/// fault), checked: not canonical is [`MmError::NonCanonical`].
pub fn checked_virt(address: u64) -> Result<x86_64::VirtAddr, MmError> {
    x86_64::VirtAddr::try_new(address).map_err(|_| MmError::NonCanonical)
}

/// A raw physical address from the outside, checked: bits above 52 set is
/// [`MmError::OutOfRange`].
pub fn checked_phys(address: u64) -> Result<x86_64::PhysAddr, MmError> {
    x86_64::PhysAddr::try_new(address).map_err(|_| MmError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addresses_are_checked_at_the_boundary() {
        assert_eq!(checked_virt(0x8000_0000_0000), Err(MmError::NonCanonical));
        assert_eq!(
            checked_virt(0xFFFF_8000_0000_0000).map(|v| v.as_u64()),
            Ok(0xFFFF_8000_0000_0000)
        );
        assert_eq!(checked_phys(1 << 52), Err(MmError::OutOfRange));
        assert_eq!(checked_phys(0x1000).map(|p| p.as_u64()), Ok(0x1000));
    }
}
