//! Tests of range sets and memory-map normalisation.

use super::*;
use proptest::prelude::*;

fn r(start: u64, end: u64) -> PhysRange {
    PhysRange { start, end }
}

fn usable(start: u64, len: u64) -> MapEntry {
    MapEntry {
        range: PhysRange::from_len(start, len),
        usable: true,
    }
}

fn reserved(start: u64, len: u64) -> MapEntry {
    MapEntry {
        range: PhysRange::from_len(start, len),
        usable: false,
    }
}

const ALL: PhysRange = PhysRange {
    start: 0,
    end: u64::MAX,
};

#[test]
fn hull_spans_both_ranges_and_the_gap_between() {
    assert_eq!(
        r(0x5000, 0x6000).hull(&r(0x1000, 0x2000)),
        r(0x1000, 0x6000)
    );
    assert_eq!(
        r(0x1000, 0x4000).hull(&r(0x2000, 0x3000)),
        r(0x1000, 0x4000)
    );
    assert_eq!(r(0x1000, 0x2000).hull(&ALL), ALL);
}

#[test]
fn add_merges_overlapping_and_touching_ranges() {
    let mut set = RangeSet::<8>::new();
    set.add(r(0x5000, 0x6000)).unwrap();
    set.add(r(0x1000, 0x2000)).unwrap();
    set.add(r(0x2000, 0x3000)).unwrap(); // touches the first
    set.add(r(0x5800, 0x9000)).unwrap(); // overlaps the second
    assert_eq!(set.as_slice(), &[r(0x1000, 0x3000), r(0x5000, 0x9000)]);
    set.add(r(0x0, 0x10000)).unwrap(); // swallows everything
    assert_eq!(set.as_slice(), &[r(0, 0x10000)]);
}

#[test]
fn remove_splits_and_trims() {
    let mut set = RangeSet::<8>::new();
    set.add(r(0x1000, 0x9000)).unwrap();
    set.remove(r(0x3000, 0x4000)).unwrap();
    assert_eq!(set.as_slice(), &[r(0x1000, 0x3000), r(0x4000, 0x9000)]);
    set.remove(r(0x0, 0x2000)).unwrap();
    set.remove(r(0x8000, 0xA000)).unwrap();
    assert_eq!(set.as_slice(), &[r(0x2000, 0x3000), r(0x4000, 0x8000)]);
    set.remove(r(0x0, 0x10000)).unwrap();
    assert!(set.as_slice().is_empty());
}

#[test]
fn capacity_is_reported_not_ignored() {
    let mut set = RangeSet::<2>::new();
    set.add(r(0x1000, 0x2000)).unwrap();
    set.add(r(0x3000, 0x4000)).unwrap();
    assert_eq!(set.add(r(0x5000, 0x6000)), Err(CapacityExceeded));
    assert_eq!(set.remove(r(0x1400, 0x1800)), Err(CapacityExceeded));
}

#[test]
fn normalises_a_messy_map() {
    let entries = [
        usable(0x30_0000, 0x10_0000),  // sorted after the next one
        usable(0x10_0000, 0x20_0800),  // unaligned end, overlaps the next
        reserved(0x28_0000, 0x1000),   // punches a hole
        usable(0x50_0000, 0),          // zero length
        usable(0x60_0123, 0x2000),     // unaligned start: one whole page inside
        reserved(0x6F_0000, 0x2_0000), // reserved wins over usable below
        usable(0x70_0000, 0x1_0000),
        usable(u64::MAX - 0xFFF, 0x10_0000), // wraps past the top
    ];
    let set = usable_ranges::<16>(entries.iter().copied(), ALL).unwrap();
    assert_eq!(
        set.as_slice(),
        &[
            r(0x10_0000, 0x28_0000),
            r(0x28_1000, 0x40_0000),
            r(0x60_1000, 0x60_2000),
        ]
    );
    // The 0x70_0000 entry lies inside the reservation ending at 0x71_0000,
    // and the wrapping entry holds no whole page below u64::MAX.
    assert!(!set.contains(0x70_0000));
    assert!(!set.contains(u64::MAX - 0xFFF));
}

#[test]
fn clips_to_the_window() {
    let entries = [usable(0, 0x1000_0000)];
    let window = r(0x20_0000, 0x200_0000);
    let set = usable_ranges::<4>(entries.iter().copied(), window).unwrap();
    assert_eq!(set.as_slice(), &[window]);
    assert_eq!(set.total() / PAGE_SIZE, 7680);
}

#[test]
fn keeps_the_lowest_bytes() {
    let mut set = RangeSet::<4>::new();
    set.add(r(0x20_0000, 0x30_0000)).unwrap();
    set.add(r(0x40_0000, 0x80_0000)).unwrap();
    set.keep_lowest(0x18_0000);
    assert_eq!(
        set.as_slice(),
        &[r(0x20_0000, 0x30_0000), r(0x40_0000, 0x48_0000)]
    );
    set.keep_lowest(u64::MAX);
    assert_eq!(set.total(), 0x18_0000);
    set.keep_lowest(0);
    assert!(set.as_slice().is_empty());
}

proptest! {
    #![proptest_config(crate::testing::cases(256))]

    /// Every byte of the result is page-aligned, inside the window, inside
    /// a usable entry and outside every reserved entry; every whole page
    /// that satisfies those is in the result.
    #[test]
    fn normalisation_matches_a_page_by_page_model(
        entries in proptest::collection::vec((0u64..64, 0u64..24, any::<bool>(), 0u64..4096), 0..12),
        window in (0u64..32, 16u64..64),
    ) {
        let entries: Vec<MapEntry> = entries
            .into_iter()
            .map(|(page, pages, usable, skew)| MapEntry {
                range: PhysRange::from_len(page * PAGE_SIZE + skew, pages * PAGE_SIZE),
                usable,
            })
            .collect();
        let window = r(window.0 * PAGE_SIZE, window.1 * PAGE_SIZE);
        let set = usable_ranges::<32>(entries.iter().copied(), window).unwrap();
        for pair in set.as_slice().windows(2) {
            prop_assert!(pair[0].end < pair[1].start, "sorted, disjoint, not touching");
        }
        for page in 0..70u64 {
            let frame = r(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
            let in_usable = {
                // Usable entries are merged first, so a page may span two of them.
                let mut merged = RangeSet::<32>::new();
                for entry in entries.iter().filter(|e| e.usable) {
                    merged.add(entry.range).unwrap();
                }
                merged.as_slice().iter().any(|m| m.start <= frame.start && frame.end <= m.end)
            };
            let touches_reserved = entries
                .iter()
                .filter(|e| !e.usable)
                .any(|e| e.range.overlaps(&frame));
            let in_window = window.start <= frame.start && frame.end <= window.end;
            let expected = in_usable && !touches_reserved && in_window;
            prop_assert_eq!(set.contains(frame.start), expected, "page {:#x}", frame.start);
        }
    }
}
