//! The physical frame allocator: usable ranges from the memory map,
//! reservations carved out of them, and a [`Bitmap`] that tracks every
//! frame between the lowest and highest usable address.

use core::fmt;

use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use arrayvec::ArrayVec;

use super::bitmap::{storage_words, Bitmap};
use super::ranges::{PhysRange, RangeSet};
pub use super::reservations::{outward_to_pages, Reservation, ReservationKind};
use crate::fail::FailPoint;
use crate::layout::PAGE_SIZE;
use crate::MmError;

/// Most usable ranges the allocator tracks.
pub const MAX_RANGES: usize = 64;
/// Most reservations the allocator tracks.
pub const MAX_RESERVATIONS: usize = super::reservations::MAX_RESERVATIONS;

/// Counters of the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Frames in usable memory.
    pub total: u64,
    /// Frames free for allocation.
    pub free: u64,
    /// Frames handed out and not yet returned.
    pub used: u64,
    /// Usable frames kept by reservations.
    pub reserved: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames: {} free, {} used, {} reserved",
            self.total, self.free, self.used, self.reserved
        )
    }
}

/// Why the allocator could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// No usable memory at all.
    NoMemory,
    /// The storage is smaller than [`FrameAllocator::storage_words_for`] says.
    StorageTooSmall,
    /// More than [`MAX_RESERVATIONS`] reservations.
    TooManyReservations,
}

/// A bitmap frame allocator over the usable ranges of physical memory.
pub struct FrameAllocator<'a> {
    bitmap: Bitmap<'a>,
    /// Physical address of bitmap bit 0.
    base: u64,
    usable: RangeSet<MAX_RANGES>,
    reservations: ArrayVec<Reservation, MAX_RESERVATIONS>,
    stats: Stats,
    /// Failure injection in front of every allocation (off unless armed).
    fail: FailPoint,
}

impl<'a> FrameAllocator<'a> {
    /// Frames the bitmap must span for these usable ranges.
    fn span(usable: &RangeSet<MAX_RANGES>) -> Option<PhysRange> {
        let ranges = usable.as_slice();
        Some(PhysRange {
            start: ranges.first()?.start,
            end: ranges.last()?.end,
        })
    }

    /// Storage words (`u64`) the bitmap needs for these usable ranges.
    pub fn storage_words_for(usable: &RangeSet<MAX_RANGES>) -> usize {
        Self::span(usable).map_or(0, |span| storage_words(span.pages() as usize))
    }

    /// Builds the allocator: every frame in `usable` is free except those in
    /// `reservations` (rounded outward to whole pages).
    pub fn new(
        usable: RangeSet<MAX_RANGES>,
        reservations: &[Reservation],
        storage: &'a mut [u64],
    ) -> Result<Self, InitError> {
        let span = Self::span(&usable).ok_or(InitError::NoMemory)?;
        if reservations.len() > MAX_RESERVATIONS {
            return Err(InitError::TooManyReservations);
        }
        let frames = span.pages() as usize;
        let bitmap = Bitmap::new_all_used(storage, frames).ok_or(InitError::StorageTooSmall)?;
        let total = usable.total() / PAGE_SIZE;
        let mut allocator = Self {
            bitmap,
            base: span.start,
            usable,
            reservations: ArrayVec::new(),
            stats: Stats {
                total,
                free: 0,
                used: 0,
                reserved: 0,
            },
            fail: FailPoint::off(),
        };
        for index in 0..allocator.usable.as_slice().len() {
            let range = allocator.usable.as_slice()[index];
            let first = allocator.index_of(range.start);
            allocator
                .bitmap
                .set_range(first, range.pages() as usize, false);
        }
        allocator
            .reservations
            .try_extend_from_slice(reservations)
            .map_err(|_| InitError::TooManyReservations)?;
        for reservation in reservations {
            for index in 0..allocator.usable.as_slice().len() {
                let range = allocator.usable.as_slice()[index];
                let kept = outward_to_pages(reservation.range).intersect(&range);
                if !kept.is_empty() {
                    let first = allocator.index_of(kept.start);
                    allocator
                        .bitmap
                        .set_range(first, kept.pages() as usize, true);
                }
            }
        }
        let free = allocator.bitmap.count_free() as u64;
        allocator.stats.free = free;
        allocator.stats.reserved = allocator.stats.total - free;
        Ok(allocator)
    }

    fn index_of(&self, address: u64) -> usize {
        ((address - self.base) / PAGE_SIZE) as usize
    }

    fn frame_at(&self, index: usize) -> PhysFrame<Size4KiB> {
        let address = PhysAddr::new(self.base + index as u64 * PAGE_SIZE);
        PhysFrame::containing_address(address)
    }

    /// Allocates the lowest free frame.
    #[inline]
    pub fn alloc_page(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.fail.hit() {
            return None;
        }
        let index = self.bitmap.first_free()?;
        self.bitmap.set_used(index);
        self.stats.free -= 1;
        self.stats.used += 1;
        Some(self.frame_at(index))
    }

    /// Checks that `address` names a frame this allocator handed out;
    /// returns its bitmap index.
    fn check_allocated(&self, address: PhysAddr) -> Result<usize, MmError> {
        let address = address.as_u64();
        if !address.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        if !self.usable.contains(address) {
            return Err(MmError::OutOfRange);
        }
        let index = self.index_of(address);
        if !self.bitmap.is_used(index) {
            return Err(MmError::FrameAlreadyFree);
        }
        if self.reservation_at(address).is_some() {
            return Err(MmError::FrameReserved);
        }
        Ok(index)
    }

    /// Returns a frame. Errors (and changes nothing) if the address is
    /// misaligned, outside usable memory, reserved or already free.
    #[inline]
    pub fn free_page(&mut self, address: PhysAddr) -> Result<(), MmError> {
        let index = self.check_allocated(address)?;
        self.bitmap.set_free(index);
        self.stats.free += 1;
        self.stats.used -= 1;
        Ok(())
    }

    /// Allocates `count` contiguous frames, the first aligned to `align`
    /// frames (a power of two), e.g. 512 for a 2 MiB page.
    pub fn alloc_contiguous(
        &mut self,
        count: usize,
        align: usize,
    ) -> Result<PhysFrame<Size4KiB>, MmError> {
        if count == 0 || !align.is_power_of_two() {
            return Err(MmError::InvalidArgument);
        }
        if self.fail.hit() {
            return Err(MmError::OutOfFrames);
        }
        // Align the physical frame number, not the bitmap index.
        let phase = (self.base / PAGE_SIZE) as usize % align;
        let index = self
            .bitmap
            .find_run(0, count, align, phase)
            .ok_or(MmError::OutOfFrames)?;
        self.bitmap.set_range(index, count, true);
        self.stats.free -= count as u64;
        self.stats.used += count as u64;
        Ok(self.frame_at(index))
    }

    /// Returns `count` frames from `first`. Checks every frame first, so on
    /// error nothing is freed.
    pub fn free_contiguous(&mut self, first: PhysAddr, count: usize) -> Result<(), MmError> {
        if count == 0 {
            return Err(MmError::InvalidArgument);
        }
        for page in 0..count as u64 {
            self.check_allocated(first + page * PAGE_SIZE)?;
        }
        let index = self.index_of(first.as_u64());
        self.bitmap.set_range(index, count, false);
        self.stats.free += count as u64;
        self.stats.used -= count as u64;
        Ok(())
    }

    /// The reservation covering `address`, if any.
    pub fn reservation_at(&self, address: u64) -> Option<Reservation> {
        self.reservations()
            .find(|reservation| outward_to_pages(reservation.range).contains(address))
            .copied()
    }

    /// The reservations, as registered.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter()
    }

    /// Usable frames inside reservations of `kind`.
    pub fn reserved_frames(&self, kind: ReservationKind) -> u64 {
        self.reservations()
            .filter(|reservation| reservation.kind == kind)
            .map(|reservation| {
                let range = outward_to_pages(reservation.range);
                self.usable
                    .as_slice()
                    .iter()
                    .map(|usable| range.intersect(usable).pages())
                    .sum::<u64>()
            })
            .sum()
    }

    /// The usable ranges.
    pub fn usable(&self) -> &[PhysRange] {
        self.usable.as_slice()
    }

    /// Whether `address` lies in usable memory (allocated, free or reserved).
    pub fn manages(&self, address: u64) -> bool {
        self.usable.contains(address)
    }

    /// The failure-injection point in front of `alloc_page` and
    /// `alloc_contiguous` (see [`crate::fail`]).
    pub fn fail_point(&mut self) -> &mut FailPoint {
        &mut self.fail
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Usable frames (the design's `pmm_get_total_pages`).
    pub fn total_pages(&self) -> u64 {
        self.stats.total
    }

    /// Every run of free frames, in address order, read from the bitmap
    /// (nothing changes). O(bitmap words) in all.
    pub fn free_runs(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let mut from = 0;
        core::iter::from_fn(move || {
            let start = self.bitmap.next_free(from)?;
            let end = self.bitmap.next_used(start).unwrap_or(self.bitmap.frames());
            from = end;
            let address = self.base + start as u64 * PAGE_SIZE;
            Some(PhysRange::from_len(
                address,
                (end - start) as u64 * PAGE_SIZE,
            ))
        })
    }

    /// Longest run of free frames (scans the bitmap).
    pub fn largest_free_run(&self) -> u64 {
        self.bitmap.longest_free_run() as u64
    }
}

/// Finds room for `bytes` inside `usable` that overlaps none of
/// `reservations`: the lowest page-aligned address that fits.
pub fn find_free_space(
    usable: &RangeSet<MAX_RANGES>,
    reservations: &[Reservation],
    bytes: u64,
) -> Option<PhysRange> {
    let bytes = bytes.checked_next_multiple_of(PAGE_SIZE)?;
    for range in usable.as_slice() {
        let mut candidate = PhysRange::from_len(range.start, bytes);
        while candidate.end <= range.end {
            let blocker = reservations
                .iter()
                .map(|reservation| outward_to_pages(reservation.range))
                .filter(|reserved| reserved.overlaps(&candidate))
                .map(|reserved| reserved.end)
                .max();
            match blocker {
                None => return Some(candidate),
                Some(end) => candidate = PhysRange::from_len(end, bytes),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
