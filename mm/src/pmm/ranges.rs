//! Physical address ranges and fixed-capacity sets of them, and the
//! normalisation of a firmware memory map into usable, page-aligned ranges.

use core::fmt;

use arrayvec::ArrayVec;

use crate::layout::PAGE_SIZE;

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// A range from `start` of `len` bytes, saturating at `u64::MAX`.
    pub const fn from_len(start: u64, len: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(len),
        }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `address` is inside.
    pub const fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// Whether the two ranges share at least one byte (an empty range
    /// overlaps nothing).
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start.max(other.start) < self.end.min(other.end)
    }

    /// The common part (possibly empty).
    pub fn intersect(&self, other: &PhysRange) -> PhysRange {
        PhysRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }

    /// The smallest range holding both and everything between them.
    pub fn hull(&self, other: &PhysRange) -> PhysRange {
        PhysRange {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The largest page-aligned range inside this one (start rounded up,
    /// end rounded down); empty if no whole page fits.
    pub fn pages_inside(&self) -> PhysRange {
        let start = self
            .start
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(u64::MAX);
        let end = self.end - self.end % PAGE_SIZE;
        PhysRange { start, end }
    }

    /// Number of whole pages in the range (assumes page alignment).
    pub const fn pages(&self) -> u64 {
        self.len() / PAGE_SIZE
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#012x}-{:#012x}", self.start, self.end)
    }
}

/// A set of ranges has no room for another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityExceeded;

/// A sorted set of disjoint, non-adjacent ranges with room for `N`.
#[derive(Clone, Debug)]
pub struct RangeSet<const N: usize> {
    ranges: ArrayVec<PhysRange, N>,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RangeSet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            ranges: ArrayVec::new_const(),
        }
    }

    /// The ranges, sorted by address.
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.ranges
    }

    /// Total bytes covered.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(PhysRange::len).sum()
    }

    /// Whether `address` is covered.
    pub fn contains(&self, address: u64) -> bool {
        // Ranges are sorted: find the last one starting at or before address.
        let index = self
            .as_slice()
            .partition_point(|range| range.start <= address);
        index > 0 && self.ranges[index - 1].contains(address)
    }

    fn insert_at(&mut self, index: usize, range: PhysRange) -> Result<(), CapacityExceeded> {
        self.ranges
            .try_insert(index, range)
            .map_err(|_| CapacityExceeded)
    }

    /// Adds a range, merging it with every range it overlaps or touches.
    pub fn add(&mut self, range: PhysRange) -> Result<(), CapacityExceeded> {
        if range.is_empty() {
            return Ok(());
        }
        let mut merged = range;
        // First range that ends at or after the new start (may touch it).
        let index = self.as_slice().partition_point(|r| r.end < merged.start);
        while index < self.ranges.len() && self.ranges[index].start <= merged.end {
            merged = merged.hull(&self.ranges[index]);
            self.ranges.remove(index);
        }
        self.insert_at(index, merged)
    }

    /// Removes a range; a range that contains it is split in two.
    pub fn remove(&mut self, range: PhysRange) -> Result<(), CapacityExceeded> {
        if range.is_empty() {
            return Ok(());
        }
        let mut index = self.as_slice().partition_point(|r| r.end <= range.start);
        while index < self.ranges.len() && self.ranges[index].start < range.end {
            let current = self.ranges[index];
            let left = PhysRange {
                start: current.start,
                end: range.start,
            };
            let right = PhysRange {
                start: range.end,
                end: current.end,
            };
            match (left.is_empty(), right.is_empty()) {
                (true, true) => {
                    self.ranges.remove(index);
                }
                (false, true) => {
                    self.ranges[index] = left;
                    index += 1;
                }
                (true, false) => {
                    self.ranges[index] = right;
                    index += 1;
                }
                (false, false) => {
                    self.ranges[index] = left;
                    self.insert_at(index + 1, right)?;
                    index += 2;
                }
            }
        }
        Ok(())
    }

    /// Keeps only the lowest `bytes` bytes of the set.
    pub fn keep_lowest(&mut self, bytes: u64) {
        let mut left = bytes;
        self.ranges.retain(|range| {
            if left == 0 {
                return false;
            }
            if range.len() > left {
                range.end = range.start + left;
            }
            left -= range.len();
            true
        });
    }

    /// Rounds every range inward to whole pages, dropping those with none.
    pub fn shrink_to_pages(&mut self) {
        self.ranges.retain(|range| {
            *range = range.pages_inside();
            !range.is_empty()
        });
    }
}

/// One firmware memory-map entry, reduced to what normalisation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// The bytes it describes (may be empty; an entry whose length runs
    /// past `u64::MAX` ends there, as [`PhysRange::from_len`] makes it).
    pub range: PhysRange,
    /// Whether the firmware calls it usable RAM.
    pub usable: bool,
}

/// Turns a firmware memory map (unsorted, overlapping, unaligned entries
/// allowed) into sorted, disjoint, page-aligned usable ranges inside
/// `window`. Where a usable and a non-usable entry overlap, the non-usable
/// one wins. Fails only if the result needs more than `N` ranges.
pub fn usable_ranges<const N: usize>(
    entries: impl Iterator<Item = MapEntry> + Clone,
    window: PhysRange,
) -> Result<RangeSet<N>, CapacityExceeded> {
    let mut set = RangeSet::<N>::new();
    for entry in entries.clone().filter(|entry| entry.usable) {
        set.add(entry.range.intersect(&window))?;
    }
    for entry in entries.filter(|entry| !entry.usable) {
        set.remove(entry.range)?;
    }
    set.shrink_to_pages();
    Ok(set)
}

#[cfg(test)]
mod tests;
