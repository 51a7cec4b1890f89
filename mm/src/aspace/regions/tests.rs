//! Host tests of the region table: unit cases for each refusal, and
//! random inserts, removals and protects against a page-level model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Slots in the table under test: small, so "full" happens often.
const SLOTS: usize = 6;
/// Pages of the window the random operations work in.
const WINDOW: u64 = 48;

fn page(index: u64) -> VirtAddr {
    VirtAddr::new(USER_START + index * PAGE_SIZE)
}

fn region(first: u64, pages: u64, perms: Perms, kind: RegionKind) -> Region {
    Region::new(page(first), page(first + pages), perms, kind)
}

fn fixed(phys: u64) -> RegionKind {
    RegionKind::Fixed {
        phys: PhysAddr::new(phys),
    }
}

/// Every page of every region with its permissions and per-page kind.
fn expand(regions: &Regions<SLOTS>) -> BTreeMap<u64, (Perms, RegionKind)> {
    let mut pages = BTreeMap::new();
    for region in regions {
        let mut addr = region.start;
        while addr < region.end {
            let index = (addr.as_u64() - USER_START) / PAGE_SIZE;
            pages.insert(index, (region.perms, region.kind_at(addr)));
            addr += PAGE_SIZE;
        }
    }
    pages
}

/// Sorted, non-overlapping, non-empty, aligned and inside the user range.
fn well_formed(regions: &Regions<SLOTS>) -> bool {
    regions.iter().all(|r| {
        r.start < r.end && check_user_range(r.start, r.len()).is_ok() && r.find_self_ok(regions)
    }) && regions
        .as_slice()
        .windows(2)
        .all(|pair| pair[0].end <= pair[1].start)
}

impl Region {
    /// `find` of the region's first and last byte finds it.
    fn find_self_ok(&self, regions: &Regions<SLOTS>) -> bool {
        regions.find(self.start) == Some(self) && regions.find(self.end - 1u64) == Some(self)
    }
}

#[test]
fn perms_refuse_write_and_execute_and_missing_read() {
    assert_eq!(Perms::new(true, true, true), Err(MmError::WriteAndExecute));
    assert_eq!(
        Perms::new(false, false, false),
        Err(MmError::InvalidArgument)
    );
    assert_eq!(Perms::new(true, true, false), Ok(Perms::READ_WRITE));
    assert_eq!(Perms::new(true, false, true), Ok(Perms::READ_EXEC));
    let names: Vec<String> = [Perms::READ, Perms::READ_WRITE, Perms::READ_EXEC]
        .iter()
        .map(|perms| perms.to_string())
        .collect();
    assert_eq!(names, ["r--", "rw-", "r-x"]);
    assert!(Perms::READ.readable() && !Perms::READ.writable() && !Perms::READ.executable());
}

#[test]
fn each_bad_insert_has_its_own_error_and_changes_nothing() {
    let mut regions = Regions::<SLOTS>::new();
    regions
        .insert(region(4, 4, Perms::READ, RegionKind::Anonymous))
        .unwrap();
    let before = regions.as_slice().to_vec();
    let anon = RegionKind::Anonymous;
    let cases = [
        (region(6, 4, Perms::READ, anon), MmError::RegionOverlap),
        (region(2, 3, Perms::READ, anon), MmError::RegionOverlap),
        (region(9, 0, Perms::READ, anon), MmError::EmptyRange),
        (
            Region::new(page(9) + 1u64, page(10), Perms::READ, anon),
            MmError::Misaligned,
        ),
        (
            Region::new(
                VirtAddr::new(USER_START - PAGE_SIZE),
                page(1),
                Perms::READ,
                anon,
            ),
            MmError::OutsideUserRange,
        ),
        (
            Region::new(
                VirtAddr::new(USER_TOP - PAGE_SIZE),
                VirtAddr::new(0xFFFF_8000_0000_0000),
                Perms::READ,
                anon,
            ),
            MmError::OutsideUserRange,
        ),
        (
            region(20, 1, Perms::READ, fixed(0x1234)),
            MmError::Misaligned,
        ),
        (
            region(20, 2, Perms::READ, fixed((1 << 52) - PAGE_SIZE)),
            MmError::OutOfRange,
        ),
    ];
    for (bad, error) in cases {
        assert_eq!(regions.insert(bad), Err(error), "{bad}");
        assert_eq!(regions.as_slice(), &before[..]);
    }
    for index in 0..SLOTS as u64 - 1 {
        regions
            .insert(region(10 + 2 * index, 1, Perms::READ, anon))
            .unwrap();
    }
    assert_eq!(
        regions.insert(region(40, 1, Perms::READ, anon)),
        Err(MmError::TooManyRegions)
    );
    assert_eq!(regions.len(), SLOTS);
}

#[test]
fn the_guard_page_below_user_end_is_refused() {
    let mut regions = Regions::<SLOTS>::new();
    let top = VirtAddr::new(USER_TOP);
    let below = VirtAddr::new(USER_TOP - PAGE_SIZE);
    assert_eq!(check_user_range(below, PAGE_SIZE), Ok(top));
    assert_eq!(
        check_user_range(below, 2 * PAGE_SIZE),
        Err(MmError::OutsideUserRange)
    );
    assert_eq!(
        check_user_range(top, PAGE_SIZE),
        Err(MmError::OutsideUserRange)
    );
    let last = Region::new(below, top, Perms::READ, RegionKind::Anonymous);
    assert_eq!(regions.insert(last), Ok(()));
    assert_eq!(regions.find(below), Some(&last));
    assert_eq!(regions.find(top), None);
}

#[test]
fn removing_and_protecting_split_fixed_regions_with_their_frames() {
    let mut regions = Regions::<SLOTS>::new();
    regions
        .insert(region(0, 8, Perms::READ_WRITE, fixed(0x40_0000)))
        .unwrap();
    regions
        .protect_range(page(2), 2 * PAGE_SIZE, Perms::READ)
        .unwrap();
    assert_eq!(regions.remove_range(page(5), PAGE_SIZE), Ok(PAGE_SIZE));
    let kinds: Vec<(u64, u64, Perms, RegionKind)> = regions
        .iter()
        .map(|r| {
            let pages = |a: VirtAddr| (a.as_u64() - USER_START) / PAGE_SIZE;
            (pages(r.start), pages(r.end), r.perms, r.kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (0, 2, Perms::READ_WRITE, fixed(0x40_0000)),
            (2, 4, Perms::READ, fixed(0x40_2000)),
            (4, 5, Perms::READ_WRITE, fixed(0x40_4000)),
            (6, 8, Perms::READ_WRITE, fixed(0x40_6000)),
        ]
    );
    assert_eq!(regions.find(page(5)), None);
    assert_eq!(regions.find(page(3)).map(|r| r.perms), Some(Perms::READ));
    assert_eq!(regions.overlapping(page(3), 3 * PAGE_SIZE).len(), 2);
    assert_eq!(
        regions.protect_range(page(4), 2 * PAGE_SIZE, Perms::READ),
        Err(MmError::NoRegion)
    );
    assert_eq!(regions.remove_range(page(30), PAGE_SIZE), Ok(0));
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert {
        first: u64,
        pages: u64,
        perms: Perms,
        kind: RegionKind,
    },
    Remove {
        first: u64,
        pages: u64,
    },
    Protect {
        first: u64,
        pages: u64,
        perms: Perms,
    },
    /// An operation on a bad range: 0 unaligned, 1 below the user range,
    /// 2 past its end.
    Bad {
        which: u8,
        what: u8,
    },
}

fn perms() -> impl Strategy<Value = Perms> {
    prop_oneof![
        Just(Perms::READ),
        Just(Perms::READ_WRITE),
        Just(Perms::READ_EXEC)
    ]
}

fn kind() -> impl Strategy<Value = RegionKind> {
    prop_oneof![
        Just(RegionKind::Anonymous),
        Just(RegionKind::Shared),
        (0..64u64).prop_map(|frame| fixed(0x100_0000 + frame * PAGE_SIZE)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let first = 0..WINDOW;
    let pages = 0..12u64;
    prop_oneof![
        4 => (first.clone(), pages.clone(), perms(), kind())
            .prop_map(|(first, pages, perms, kind)| Op::Insert { first, pages, perms, kind }),
        2 => (first.clone(), pages.clone()).prop_map(|(first, pages)| Op::Remove { first, pages }),
        2 => (first, pages, perms())
            .prop_map(|(first, pages, perms)| Op::Protect { first, pages, perms }),
        1 => (0..3u8, 0..3u8).prop_map(|(which, what)| Op::Bad { which, what }),
    ]
}

/// Pages `first..first + pages` of the window.
fn span(first: u64, pages: u64) -> std::ops::Range<u64> {
    first..first + pages
}

/// How many regions would have to be split at `addr` (one strictly
/// containing it).
fn splits_at(regions: &Regions<SLOTS>, addr: VirtAddr) -> usize {
    usize::from(regions.iter().any(|r| r.start < addr && addr < r.end))
}

/// Runs `op` on both and checks the outcome; returns whether it failed.
fn step(
    regions: &mut Regions<SLOTS>,
    model: &mut BTreeMap<u64, (Perms, RegionKind)>,
    op: Op,
) -> Result<(), TestCaseError> {
    let before = regions.as_slice().to_vec();
    let outcome = match op {
        Op::Insert {
            first,
            pages,
            perms,
            kind,
        } => {
            let result = regions.insert(region(first, pages, perms, kind));
            let expected = if pages == 0 {
                Err(MmError::EmptyRange)
            } else if span(first, pages).any(|p| model.contains_key(&p)) {
                Err(MmError::RegionOverlap)
            } else if before.len() == SLOTS {
                Err(MmError::TooManyRegions)
            } else {
                for (offset, p) in span(first, pages).enumerate() {
                    model.insert(p, (perms, kind.advanced(offset as u64 * PAGE_SIZE)));
                }
                Ok(())
            };
            prop_assert_eq!(result, expected);
            result
        }
        Op::Remove { first, pages } => {
            let result = regions.remove_range(page(first), pages * PAGE_SIZE);
            let (start, end) = (page(first), page(first + pages));
            let inside_one = before.iter().any(|r| r.start < start && end < r.end);
            let expected = if pages == 0 {
                Err(MmError::EmptyRange)
            } else if inside_one && before.len() == SLOTS {
                Err(MmError::TooManyRegions)
            } else {
                let removed = span(first, pages)
                    .filter(|p| model.remove(p).is_some())
                    .count() as u64;
                Ok(removed * PAGE_SIZE)
            };
            prop_assert_eq!(result, expected);
            result.map(|_| ())
        }
        Op::Protect {
            first,
            pages,
            perms,
        } => {
            let (start, end) = (page(first), page(first + pages));
            let result = regions.protect_range(start, pages * PAGE_SIZE, perms);
            let splits = splits_at(regions, start) + splits_at(regions, end);
            let expected = if pages == 0 {
                Err(MmError::EmptyRange)
            } else if span(first, pages).any(|p| !model.contains_key(&p)) {
                Err(MmError::NoRegion)
            } else if result == Err(MmError::TooManyRegions) && before.len() + splits > SLOTS {
                Err(MmError::TooManyRegions)
            } else {
                for p in span(first, pages) {
                    if let Some(entry) = model.get_mut(&p) {
                        entry.0 = perms;
                    }
                }
                Ok(())
            };
            prop_assert_eq!(result, expected);
            result
        }
        Op::Bad { which, what } => {
            let (start, len, error) = match which {
                0 => (page(1) + 8u64, PAGE_SIZE, MmError::Misaligned),
                1 => (
                    VirtAddr::new(USER_START - PAGE_SIZE),
                    2 * PAGE_SIZE,
                    MmError::OutsideUserRange,
                ),
                _ => (
                    VirtAddr::new(USER_TOP - PAGE_SIZE),
                    2 * PAGE_SIZE,
                    MmError::OutsideUserRange,
                ),
            };
            let result = match what {
                0 => regions.insert(Region::new(
                    start,
                    VirtAddr::new_truncate(start.as_u64() + len),
                    Perms::READ,
                    RegionKind::Anonymous,
                )),
                1 => regions.remove_range(start, len).map(|_| ()),
                _ => regions.protect_range(start, len, Perms::READ),
            };
            prop_assert_eq!(result, Err(error));
            result
        }
    };
    if outcome.is_err() {
        prop_assert_eq!(
            regions.as_slice(),
            &before[..],
            "a refused op changed the table"
        );
    }
    prop_assert!(well_formed(regions), "{:?}", regions);
    prop_assert_eq!(&expand(regions), model);
    Ok(())
}

proptest! {
    #![proptest_config(crate::testing::cases(512))]

    /// Random inserts, removals, protects and bad ranges keep the table
    /// equal to a map from page to (permissions, kind), sorted and
    /// non-overlapping; refusals change nothing.
    #[test]
    fn regions_follow_a_page_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut regions = Regions::<SLOTS>::new();
        let mut model = BTreeMap::new();
        for op in ops {
            step(&mut regions, &mut model, op)?;
        }
    }
}
