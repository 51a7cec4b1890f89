//! Reservations: the memory the frame allocators must never hand out
//! (kernel image, boot page tables, everything GRUB handed over), collected
//! once and honoured by the bootstrap pool and the PMM alike.

use core::fmt;

use arrayvec::ArrayVec;

use super::ranges::PhysRange;
use crate::layout::PAGE_SIZE;

/// Most reservations a [`ReservationList`] (and so an allocator) holds.
/// Ranges of one kind that touch share an entry, so GRUB's modules, laid
/// end to end, take one.
pub const MAX_RESERVATIONS: usize = 32;

/// Why a range of usable memory is kept from the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationKind {
    /// The kernel image.
    KernelImage,
    /// The boot page tables (0x1000-0x4FFF).
    BootPageTables,
    /// The Multiboot2 information as GRUB left it.
    BootInfo,
    /// A boot module.
    BootModule,
    /// This allocator's own bitmap.
    PmmBitmap,
    /// The framebuffer.
    Framebuffer,
    /// Low memory the design keeps out of general use.
    LowMemory,
    /// Anything else.
    Other,
}

impl ReservationKind {
    /// Every kind, for per-kind statistics.
    pub const ALL: [ReservationKind; 8] = [
        ReservationKind::KernelImage,
        ReservationKind::BootPageTables,
        ReservationKind::BootInfo,
        ReservationKind::BootModule,
        ReservationKind::PmmBitmap,
        ReservationKind::Framebuffer,
        ReservationKind::LowMemory,
        ReservationKind::Other,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ReservationKind::KernelImage => "kernel image",
            ReservationKind::BootPageTables => "boot page tables",
            ReservationKind::BootInfo => "boot information",
            ReservationKind::BootModule => "boot module",
            ReservationKind::PmmBitmap => "PMM bitmap",
            ReservationKind::Framebuffer => "framebuffer",
            ReservationKind::LowMemory => "low memory",
            ReservationKind::Other => "other",
        }
    }
}

/// A reserved range and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The bytes kept (page-aligned outward when applied).
    pub range: PhysRange,
    /// Why.
    pub kind: ReservationKind,
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.range)
    }
}

/// Rounds a range outward to whole pages.
pub fn outward_to_pages(range: PhysRange) -> PhysRange {
    PhysRange {
        start: range.start - range.start % PAGE_SIZE,
        end: range
            .end
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(u64::MAX),
    }
}

/// A reservation that found the list full: nothing may be dropped
/// silently, so the caller refuses to boot and names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationsFull {
    /// The reservation that did not fit.
    pub rejected: Reservation,
}

impl fmt::Display for ReservationsFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {MAX_RESERVATIONS} separate reservations: {} did not fit",
            self.rejected
        )
    }
}

/// Reservations collected at boot, at most [`MAX_RESERVATIONS`] entries;
/// a range that overlaps or touches (in whole pages) one of its own kind
/// widens that entry instead of taking a new one.
#[derive(Clone, Debug)]
pub struct ReservationList {
    entries: ArrayVec<Reservation, MAX_RESERVATIONS>,
}

impl Default for ReservationList {
    fn default() -> Self {
        Self::new()
    }
}

impl ReservationList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            entries: ArrayVec::new_const(),
        }
    }

    /// Adds `range` (empty ranges are ignored). Fails, changing nothing,
    /// only when it needs a new entry and all are taken.
    pub fn push(
        &mut self,
        range: PhysRange,
        kind: ReservationKind,
    ) -> Result<(), ReservationsFull> {
        if range.is_empty() {
            return Ok(());
        }
        let pages = outward_to_pages(range);
        let touching = self.entries.iter_mut().find(|entry| {
            let known = outward_to_pages(entry.range);
            entry.kind == kind && known.start <= pages.end && pages.start <= known.end
        });
        if let Some(entry) = touching {
            entry.range = entry.range.hull(&range);
            return Ok(());
        }
        let rejected = Reservation { range, kind };
        self.entries
            .try_push(rejected)
            .map_err(|_| ReservationsFull { rejected })
    }

    /// The reservations, in the order they were first added.
    pub fn as_slice(&self) -> &[Reservation] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn touching_ranges_of_one_kind_share_an_entry() {
        let mut list = ReservationList::new();
        for index in 0..100u64 {
            let start = 0x40_0000 + index * 0x5_0000;
            list.push(
                range(start, start + 0x5_0000 - 7),
                ReservationKind::BootModule,
            )
            .unwrap();
        }
        assert_eq!(list.as_slice().len(), 1);
        assert_eq!(
            list.as_slice()[0].range,
            range(0x40_0000, 0x40_0000 + 100 * 0x5_0000 - 7)
        );
    }

    #[test]
    fn kinds_are_never_merged() {
        let mut list = ReservationList::new();
        list.push(range(0x1000, 0x2000), ReservationKind::BootInfo)
            .unwrap();
        list.push(range(0x2000, 0x3000), ReservationKind::BootModule)
            .unwrap();
        assert_eq!(
            list.as_slice(),
            &[
                Reservation {
                    range: range(0x1000, 0x2000),
                    kind: ReservationKind::BootInfo
                },
                Reservation {
                    range: range(0x2000, 0x3000),
                    kind: ReservationKind::BootModule
                },
            ]
        );
    }

    #[test]
    fn a_full_list_names_what_did_not_fit_and_keeps_the_rest() {
        let mut list = ReservationList::new();
        for index in 0..MAX_RESERVATIONS as u64 {
            list.push(
                range(index * 0x10_0000, index * 0x10_0000 + 0x1000),
                ReservationKind::BootModule,
            )
            .unwrap();
        }
        let before = list.as_slice().to_vec();
        let rejected = range(0x7000_0000, 0x7000_1000);
        assert_eq!(
            list.push(rejected, ReservationKind::BootModule),
            Err(ReservationsFull {
                rejected: Reservation {
                    range: rejected,
                    kind: ReservationKind::BootModule
                }
            })
        );
        assert_eq!(list.as_slice(), &before[..]);
        // A range that widens an existing entry still fits.
        list.push(range(0x1000, 0x2000), ReservationKind::BootModule)
            .unwrap();
        assert_eq!(list.as_slice()[0].range, range(0, 0x2000));
    }

    #[test]
    fn empty_ranges_take_no_entry() {
        let mut list = ReservationList::new();
        list.push(range(0x5000, 0x5000), ReservationKind::Other)
            .unwrap();
        assert!(list.as_slice().is_empty());
    }
}
