//! The regions of a user address space: sorted, non-overlapping ranges of
//! pages, each with its permissions and what backs it, in a fixed-capacity
//! array searched by bisection.
//!
//! A region says what the pages *may* be; the page tables say what is
//! mapped now. Operations check everything before they change anything,
//! so a refused one leaves the table as it was. Regions are never merged:
//! a protect in the middle of a region costs two more slots, an unmap in
//! its middle one.
#![forbid(unsafe_code)]

use core::fmt;

use arrayvec::ArrayVec;
use x86_64::{PhysAddr, VirtAddr};

use crate::layout::{PAGE_SIZE, USER_START, USER_TOP};
use crate::MmError;

/// What user code may do with a region's pages. Always readable (x86
/// cannot map a page that is writable or executable but not readable);
/// never writable and executable together (W^X).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Perms {
    write: bool,
    exec: bool,
}

impl Perms {
    /// Read only.
    pub const READ: Perms = Perms {
        write: false,
        exec: false,
    };
    /// Read and write (data, stacks, heaps).
    pub const READ_WRITE: Perms = Perms {
        write: true,
        exec: false,
    };
    /// Read and execute (code).
    pub const READ_EXEC: Perms = Perms {
        write: false,
        exec: true,
    };

    /// The permissions asked for: `WriteAndExecute` if both `write` and
    /// `exec`, `InvalidArgument` without `read`.
    pub const fn new(read: bool, write: bool, exec: bool) -> Result<Perms, MmError> {
        if write && exec {
            return Err(MmError::WriteAndExecute);
        }
        if !read {
            return Err(MmError::InvalidArgument);
        }
        Ok(Perms { write, exec })
    }

    /// Always true: every region is readable.
    pub const fn readable(self) -> bool {
        true
    }

    /// Whether writes are allowed.
    pub const fn writable(self) -> bool {
        self.write
    }

    /// Whether instruction fetches are allowed.
    pub const fn executable(self) -> bool {
        self.exec
    }
}

impl fmt::Display for Perms {
    /// `r--`, `rw-` or `r-x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write = if self.write { "w" } else { "-" };
        let exec = if self.exec { "x" } else { "-" };
        write!(f, "r{write}{exec}")
    }
}

/// What backs a region's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegionKind {
    /// Private memory, zero-filled on first touch and copied on write
    /// after a clone.
    Anonymous,
    /// The physical frames from `phys` (for the region's first page), in
    /// order: device memory, a buffer the kernel shares. Mapped eagerly;
    /// the space never frees them and keeps no count of them.
    Fixed {
        /// Physical address of the region's first page.
        phys: PhysAddr,
    },
    /// Memory shared with every clone of the space (writes seen by all):
    /// allocated and zeroed eagerly, freed with its last mapping.
    Shared,
}

impl RegionKind {
    /// The kind of the part of a region that starts `offset` bytes in
    /// (a Fixed region's frames move along).
    pub fn advanced(self, offset: u64) -> RegionKind {
        match self {
            RegionKind::Fixed { phys } => RegionKind::Fixed {
                phys: phys + offset,
            },
            other => other,
        }
    }
}

/// A range of user pages with one set of permissions and one backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address (page-aligned).
    pub start: VirtAddr,
    /// End (exclusive, page-aligned).
    pub end: VirtAddr,
    /// What user code may do.
    pub perms: Perms,
    /// What backs the pages.
    pub kind: RegionKind,
}

impl Region {
    /// The region `[start, end)` (checked when inserted).
    pub const fn new(start: VirtAddr, end: VirtAddr, perms: Perms, kind: RegionKind) -> Self {
        Self {
            start,
            end,
            perms,
            kind,
        }
    }

    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.end.as_u64().saturating_sub(self.start.as_u64())
    }

    /// Whether the region covers nothing (never true of an inserted one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: VirtAddr) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The kind of the page at `addr` (inside): a Fixed region's frame
    /// for that page.
    pub fn kind_at(&self, addr: VirtAddr) -> RegionKind {
        self.kind
            .advanced(addr.as_u64().saturating_sub(self.start.as_u64()))
    }

    /// The part from `at` (inside) to the end.
    fn tail(&self, at: VirtAddr) -> Region {
        Region {
            start: at,
            kind: self.kind_at(at),
            ..*self
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#014x}-{:#014x} {} ",
            self.start.as_u64(),
            self.end.as_u64(),
            self.perms
        )?;
        match self.kind {
            RegionKind::Anonymous => f.write_str("anonymous"),
            RegionKind::Shared => f.write_str("shared"),
            RegionKind::Fixed { phys } => write!(f, "fixed @ {:#x}", phys.as_u64()),
        }
    }
}

/// Checks a user range: page-aligned (`Misaligned`), not empty
/// (`EmptyRange`), inside `[USER_START, USER_TOP)` (`OutsideUserRange`).
/// Returns its end.
pub fn check_user_range(start: VirtAddr, len: u64) -> Result<VirtAddr, MmError> {
    if !start.as_u64().is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Misaligned);
    }
    if len == 0 {
        return Err(MmError::EmptyRange);
    }
    match start.as_u64().checked_add(len) {
        Some(end) if start.as_u64() >= USER_START && end <= USER_TOP => {
            Ok(VirtAddr::new_truncate(end))
        }
        _ => Err(MmError::OutsideUserRange),
    }
}

/// Up to `N` regions, sorted by address and never overlapping.
#[derive(Clone, Debug, Default)]
pub struct Regions<const N: usize> {
    regions: ArrayVec<Region, N>,
}

impl<const N: usize> Regions<N> {
    /// No region.
    pub const fn new() -> Self {
        Self {
            regions: ArrayVec::new_const(),
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there is no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// How many regions fit.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The regions in address order.
    pub fn as_slice(&self) -> &[Region] {
        &self.regions
    }

    /// The regions in address order.
    pub fn iter(&self) -> core::slice::Iter<'_, Region> {
        self.regions.iter()
    }

    /// Index of the first region that ends after `addr`.
    fn first_ending_after(&self, addr: VirtAddr) -> usize {
        self.regions.partition_point(|region| region.end <= addr)
    }

    /// Index after the last region that starts before `addr`.
    fn end_of_starting_before(&self, addr: VirtAddr) -> usize {
        self.regions.partition_point(|region| region.start < addr)
    }

    /// The region containing `addr`: O(log n).
    pub fn find(&self, addr: VirtAddr) -> Option<&Region> {
        let index = self.first_ending_after(addr);
        self.regions
            .get(index)
            .filter(|region| region.start <= addr)
    }

    /// The regions that overlap `[start, start + len)`, in order (empty
    /// for a range that is not a valid user range).
    pub fn overlapping(&self, start: VirtAddr, len: u64) -> &[Region] {
        match check_user_range(start, len) {
            Ok(end) => {
                let (first, last) = (
                    self.first_ending_after(start),
                    self.end_of_starting_before(end),
                );
                &self.regions[first..last.max(first)]
            }
            Err(_) => &[],
        }
    }

    /// Adds `region`. Refused: misaligned, empty or outside the user range
    /// (as [`check_user_range`]), a Fixed frame address not page-aligned
    /// (`Misaligned`) or past 52 bits (`OutOfRange`), overlapping a region
    /// (`RegionOverlap`), no slot left (`TooManyRegions`).
    pub fn insert(&mut self, region: Region) -> Result<(), MmError> {
        if region.end <= region.start {
            return Err(if region.end == region.start {
                MmError::EmptyRange
            } else {
                MmError::InvalidArgument
            });
        }
        let end = check_user_range(region.start, region.len())?;
        if let RegionKind::Fixed { phys } = region.kind {
            if !phys.as_u64().is_multiple_of(PAGE_SIZE) {
                return Err(MmError::Misaligned);
            }
            let last = phys.as_u64().checked_add(region.len() - 1);
            if last.and_then(|last| PhysAddr::try_new(last).ok()).is_none() {
                return Err(MmError::OutOfRange);
            }
        }
        let index = self.first_ending_after(region.start);
        if self.regions.get(index).is_some_and(|next| next.start < end) {
            return Err(MmError::RegionOverlap);
        }
        self.regions
            .try_insert(index, region)
            .map_err(|_| MmError::TooManyRegions)
    }

    /// Checks that [`Regions::remove_range`] would succeed, changing
    /// nothing.
    pub fn check_remove(&self, start: VirtAddr, len: u64) -> Result<(), MmError> {
        let end = check_user_range(start, len)?;
        let index = self.first_ending_after(start);
        let splits = self
            .regions
            .get(index)
            .is_some_and(|region| region.start < start && end < region.end);
        if splits && self.regions.is_full() {
            return Err(MmError::TooManyRegions);
        }
        Ok(())
    }

    /// Removes `[start, start + len)` from the regions, cutting the ones
    /// that stick out at either edge; holes in the range are fine.
    /// Returns the bytes removed. Refused (nothing changes) as
    /// [`check_user_range`], or `TooManyRegions` when a full table would
    /// have to split one region in two.
    pub fn remove_range(&mut self, start: VirtAddr, len: u64) -> Result<u64, MmError> {
        self.check_remove(start, len)?;
        let end = VirtAddr::new_truncate(start.as_u64() + len);
        let first = self.first_ending_after(start);
        let Some(&region) = self.regions.get(first) else {
            return Ok(0);
        };
        if region.start < start && end < region.end {
            // One region around the range: cut it in two (the check
            // above made room for the tail).
            self.regions
                .try_insert(first + 1, region.tail(end))
                .map_err(|_| MmError::TooManyRegions)?;
            self.regions[first].end = start;
            return Ok(len);
        }
        let mut removed = 0;
        let mut index = first;
        while let Some(region) = self.regions.get_mut(index) {
            if region.start >= end {
                break;
            }
            let (cut_start, cut_end) = (region.start.max(start), region.end.min(end));
            removed += cut_end - cut_start;
            if region.start < start {
                // Sticks out on the left: keep the head.
                region.end = start;
                index += 1;
            } else if region.end > end {
                // Sticks out on the right: keep the tail.
                *region = region.tail(end);
                index += 1;
            } else {
                self.regions.remove(index);
            }
        }
        Ok(removed)
    }

    /// Gives `[start, start + len)` the permissions `perms`, splitting the
    /// regions at the edges. Refused (nothing changes) as
    /// [`check_user_range`], `NoRegion` if any page of the range is in no
    /// region, `TooManyRegions` if the splits do not fit.
    pub fn protect_range(
        &mut self,
        start: VirtAddr,
        len: u64,
        perms: Perms,
    ) -> Result<(), MmError> {
        let end = check_user_range(start, len)?;
        let first = self.first_ending_after(start);
        let last = self.end_of_starting_before(end);
        let covered = last > first
            && self.regions[first].start <= start
            && self.regions[last - 1].end >= end
            && self.regions[first..last]
                .windows(2)
                .all(|pair| pair[0].end == pair[1].start);
        if !covered {
            return Err(MmError::NoRegion);
        }
        let split_left = self.regions[first].start < start;
        let split_right = self.regions[last - 1].end > end;
        if self.regions.len() + usize::from(split_left) + usize::from(split_right) > N {
            return Err(MmError::TooManyRegions);
        }
        let (mut first, mut last) = (first, last);
        if split_right {
            let tail = self.regions[last - 1].tail(end);
            self.regions
                .try_insert(last, tail)
                .map_err(|_| MmError::TooManyRegions)?;
            self.regions[last - 1].end = end;
        }
        if split_left {
            let tail = self.regions[first].tail(start);
            self.regions
                .try_insert(first + 1, tail)
                .map_err(|_| MmError::TooManyRegions)?;
            self.regions[first].end = start;
            first += 1;
            last += 1;
        }
        for region in &mut self.regions[first..last] {
            region.perms = perms;
        }
        Ok(())
    }
}

impl<'a, const N: usize> IntoIterator for &'a Regions<N> {
    type Item = &'a Region;
    type IntoIter = core::slice::Iter<'a, Region>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests;
