//! Tests of the frame allocator, including a property test against a model.

use std::collections::BTreeSet;

use super::*;
use crate::pmm::ranges::{usable_ranges, MapEntry};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

/// Usable ranges from `(start, end)` pairs (shared with `order_tests`).
pub(super) fn usable(ranges: &[(u64, u64)]) -> RangeSet<MAX_RANGES> {
    let entries = ranges.iter().map(|&(start, end)| MapEntry {
        range: PhysRange { start, end },
        usable: true,
    });
    usable_ranges(
        entries,
        PhysRange {
            start: 0,
            end: u64::MAX,
        },
    )
    .unwrap()
}

fn reservation(start: u64, end: u64, kind: ReservationKind) -> Reservation {
    Reservation {
        range: PhysRange { start, end },
        kind,
    }
}

/// Allocator over 2..6 MiB and 8..9 MiB (a hole between), with the first
/// 16 KiB of the second range reserved.
fn sample(storage: &mut Vec<u64>) -> FrameAllocator<'_> {
    let usable = usable(&[(2 * MIB, 6 * MIB), (8 * MIB, 9 * MIB)]);
    storage.resize(FrameAllocator::storage_words_for(&usable), 0);
    let reservations = [reservation(
        8 * MIB,
        8 * MIB + 0x4000,
        ReservationKind::BootModule,
    )];
    FrameAllocator::new(usable, &reservations, storage).unwrap()
}

#[test]
fn counts_frames_and_reservations() {
    let mut storage = Vec::new();
    let pmm = sample(&mut storage);
    let stats = pmm.stats();
    assert_eq!(stats.total, 1024 + 256);
    assert_eq!(stats.reserved, 4);
    assert_eq!(stats.free, 1024 + 256 - 4);
    assert_eq!(stats.used, 0);
    assert_eq!(pmm.reserved_frames(ReservationKind::BootModule), 4);
    assert_eq!(pmm.largest_free_run(), 1024);
}

#[test]
fn single_frames_fill_broken_chunks_first_and_free() {
    let mut storage = Vec::new();
    let mut pmm = sample(&mut storage);
    // 8..9 MiB is a partly usable chunk (with a reservation): single
    // frames go there before they break the whole chunk at 2 MiB.
    let first = pmm.alloc_page().unwrap();
    assert_eq!(first.start_address().as_u64(), 8 * MIB + 0x4000);
    let second = pmm.alloc_page().unwrap();
    assert_eq!(second.start_address().as_u64(), 8 * MIB + 0x5000);
    pmm.free_page(first.start_address()).unwrap();
    assert_eq!(pmm.alloc_page(), Some(first));
    assert_eq!(pmm.stats().used, 2);
}

#[test]
fn every_bad_free_has_its_own_error_and_changes_nothing() {
    let mut storage = Vec::new();
    let mut pmm = sample(&mut storage);
    let frame = pmm.alloc_page().unwrap().start_address();
    let before = pmm.stats();
    let cases = [
        (frame + 1u64, MmError::Misaligned),
        (PhysAddr::new(7 * MIB), MmError::OutOfRange), // the hole
        (PhysAddr::new(MIB), MmError::OutOfRange),     // below managed memory
        (PhysAddr::new(64 * MIB), MmError::OutOfRange), // above it
        (PhysAddr::new(8 * MIB + 0x1000), MmError::FrameReserved),
        (frame + 0x1000u64, MmError::FrameAlreadyFree),
    ];
    for (address, error) in cases {
        assert_eq!(pmm.free_page(address), Err(error), "{address:?}");
        assert_eq!(pmm.stats(), before);
    }
    pmm.free_page(frame).unwrap();
    assert_eq!(pmm.free_page(frame), Err(MmError::FrameAlreadyFree));
    assert_eq!(pmm.stats().used, 0);
}

#[test]
fn exhaustion_returns_none_and_recovers() {
    let mut storage = Vec::new();
    let mut pmm = sample(&mut storage);
    let initial = pmm.stats();
    let mut frames = Vec::new();
    while let Some(frame) = pmm.alloc_page() {
        frames.push(frame);
    }
    assert_eq!(frames.len() as u64, initial.free);
    assert_eq!(pmm.alloc_contiguous(1, 1), Err(MmError::OutOfFrames));
    let distinct: BTreeSet<_> = frames.iter().collect();
    assert_eq!(distinct.len(), frames.len());
    for frame in &frames {
        assert!(pmm.reservation_at(frame.start_address().as_u64()).is_none());
        pmm.free_page(frame.start_address()).unwrap();
    }
    assert_eq!(pmm.stats(), initial);
}

#[test]
fn contiguous_runs_are_physically_aligned() {
    // Usable memory starts at an odd frame so bitmap index 0 is unaligned.
    let usable = usable(&[(0x20_3000, 0x100_0000)]);
    let mut storage = vec![0; FrameAllocator::storage_words_for(&usable)];
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    let run = pmm.alloc_contiguous(512, 512).unwrap();
    assert_eq!(run.start_address().as_u64() % (2 * MIB), 0);
    assert_eq!(run.start_address().as_u64(), 0x40_0000);
    assert_eq!(pmm.stats().used, 512);
    // A bad free of the run changes nothing; a good one returns it all.
    let before = pmm.stats();
    assert_eq!(
        pmm.free_contiguous(run.start_address(), 513),
        Err(MmError::PartlyFree)
    );
    assert_eq!(pmm.stats(), before);
    pmm.free_contiguous(run.start_address(), 512).unwrap();
    assert_eq!(pmm.stats().used, 0);
    assert_eq!(pmm.alloc_contiguous(0, 1), Err(MmError::InvalidArgument));
    assert_eq!(pmm.alloc_contiguous(1, 3), Err(MmError::InvalidArgument));
}

#[test]
fn finds_space_around_reservations() {
    let usable = usable(&[(2 * MIB, 3 * MIB), (4 * MIB, 8 * MIB)]);
    let reservations = [
        reservation(4 * MIB, 4 * MIB + 10, ReservationKind::BootInfo),
        reservation(
            4 * MIB + 0x3000,
            4 * MIB + 0x5000,
            ReservationKind::BootModule,
        ),
    ];
    let found = find_free_space(&usable, &reservations, 2 * MIB).unwrap();
    assert_eq!(found, PhysRange::from_len(4 * MIB + 0x5000, 2 * MIB));
    let small = find_free_space(&usable, &reservations, 100).unwrap();
    assert_eq!(small, PhysRange::from_len(2 * MIB, 0x1000));
    assert_eq!(find_free_space(&usable, &reservations, 5 * MIB), None);
}

#[test]
fn init_errors() {
    let empty = RangeSet::new();
    assert_eq!(
        FrameAllocator::new(empty, &[], &mut []).err(),
        Some(InitError::NoMemory)
    );
    let usable = usable(&[(2 * MIB, 4 * MIB)]);
    assert_eq!(
        FrameAllocator::new(usable, &[], &mut [0; 2]).err(),
        Some(InitError::StorageTooSmall)
    );
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    Free(prop::sample::Index),
    Contiguous(usize, u32),
    FreeRun(prop::sample::Index),
    BadFree(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Alloc),
        3 => any::<prop::sample::Index>().prop_map(Op::Free),
        1 => (1usize..40, 0u32..6).prop_map(|(count, align)| Op::Contiguous(count, align)),
        1 => any::<prop::sample::Index>().prop_map(Op::FreeRun),
        1 => (0u64..(16 * MIB)).prop_map(Op::BadFree),
    ]
}

proptest! {
    #![proptest_config(crate::testing::cases(200))]

    #[test]
    fn never_hands_out_a_frame_twice_or_a_reserved_one(ops in proptest::collection::vec(op(), 1..400)) {
        let usable = usable(&[(2 * MIB, 3 * MIB), (3 * MIB + 0x5000, 4 * MIB), (6 * MIB, 6 * MIB + 0x40000)]);
        let reservations = [
            reservation(2 * MIB + 0x10000, 2 * MIB + 0x12345, ReservationKind::PmmBitmap),
            reservation(6 * MIB, 6 * MIB + 0x1000, ReservationKind::Framebuffer),
        ];
        let mut storage = vec![0; FrameAllocator::storage_words_for(&usable)];
        let mut pmm = FrameAllocator::new(usable.clone(), &reservations, &mut storage).unwrap();
        let initial = pmm.stats();
        let mut singles: Vec<u64> = Vec::new();
        let mut runs: Vec<(u64, usize)> = Vec::new();
        let mut owned: BTreeSet<u64> = BTreeSet::new();
        let claim = |owned: &mut BTreeSet<u64>, address: u64| -> Result<(), TestCaseError> {
            prop_assert!(usable.contains(address), "outside usable memory: {:#x}", address);
            prop_assert!(
                !reservations.iter().any(|r| outward_to_pages(r.range).contains(address)),
                "reserved frame handed out: {:#x}", address
            );
            prop_assert!(owned.insert(address), "frame handed out twice: {:#x}", address);
            Ok(())
        };
        for op in ops {
            match op {
                Op::Alloc => {
                    if let Some(frame) = pmm.alloc_page() {
                        let address = frame.start_address().as_u64();
                        claim(&mut owned, address)?;
                        singles.push(address);
                    } else {
                        prop_assert_eq!(pmm.stats().free, 0);
                    }
                }
                Op::Free(index) if !singles.is_empty() => {
                    let address = singles.swap_remove(index.index(singles.len()));
                    pmm.free_page(PhysAddr::new(address)).unwrap();
                    owned.remove(&address);
                }
                Op::Contiguous(count, align_log) => {
                    let align = 1usize << align_log;
                    if let Ok(first) = pmm.alloc_contiguous(count, align) {
                        let first = first.start_address().as_u64();
                        prop_assert_eq!(first % (align as u64 * PAGE_SIZE), 0);
                        for page in 0..count as u64 {
                            claim(&mut owned, first + page * PAGE_SIZE)?;
                        }
                        runs.push((first, count));
                    }
                }
                Op::FreeRun(index) if !runs.is_empty() => {
                    let (first, count) = runs.swap_remove(index.index(runs.len()));
                    pmm.free_contiguous(PhysAddr::new(first), count).unwrap();
                    for page in 0..count as u64 {
                        owned.remove(&(first + page * PAGE_SIZE));
                    }
                }
                Op::BadFree(address) => {
                    let address = address & !0xFFF;
                    if !owned.contains(&address) {
                        let before = pmm.stats();
                        prop_assert!(pmm.free_page(PhysAddr::new(address)).is_err());
                        prop_assert_eq!(pmm.stats(), before);
                    }
                }
                _ => {}
            }
            let stats = pmm.stats();
            prop_assert_eq!(stats.used, owned.len() as u64);
            prop_assert_eq!(stats.free + stats.used + stats.reserved, stats.total);
            // The read-only view: free runs, in order, apart (a run ends at
            // a used frame), holding no owned or reserved frame, adding up
            // to the free count.
            let free_runs: Vec<PhysRange> = pmm.free_runs().collect();
            prop_assert_eq!(free_runs.iter().map(|run| run.pages()).sum::<u64>(), stats.free);
            for pair in free_runs.windows(2) {
                prop_assert!(pair[0].end < pair[1].start, "runs touch or overlap: {:?}", pair);
            }
            for run in &free_runs {
                prop_assert!(owned.range(run.start..run.end).next().is_none(), "owned frame in {}", run);
                prop_assert!(usable.contains(run.start) && usable.contains(run.end - PAGE_SIZE));
                prop_assert!(!reservations.iter().any(|r| outward_to_pages(r.range).overlaps(run)));
            }
        }
        for address in singles {
            pmm.free_page(PhysAddr::new(address)).unwrap();
        }
        for (first, count) in runs {
            pmm.free_contiguous(PhysAddr::new(first), count).unwrap();
        }
        prop_assert_eq!(pmm.stats(), initial);
        prop_assert_eq!(pmm.largest_free_run(), FrameAllocator::new(usable, &reservations, &mut vec![0; storage.len()]).unwrap().largest_free_run());
    }
}

/// Failure injection in front of the frame allocator: an injected failure
/// is an ordinary "out of frames" (no frame, no counter, no bit changes),
/// and the allocator works on at the next call.
#[test]
fn injected_failures_change_nothing() {
    use crate::fail::FailPlan;
    let mut storage = Vec::new();
    let mut pmm = sample(&mut storage);
    let held: Vec<_> = (0..10).map(|_| pmm.alloc_page().unwrap()).collect();
    let before = (pmm.stats(), pmm.largest_free_run());
    pmm.fail_point().arm(FailPlan::Every(2));
    let mut got = Vec::new();
    for call in 1..=20u64 {
        let frame = pmm.alloc_page();
        assert_eq!(frame.is_none(), call % 2 == 0, "call {call}");
        got.extend(frame);
    }
    assert_eq!(
        (pmm.fail_point().calls(), pmm.fail_point().injected()),
        (20, 10)
    );
    pmm.fail_point().arm(FailPlan::Nth(1));
    assert_eq!(pmm.alloc_contiguous(512, 512), Err(MmError::OutOfFrames));
    assert_eq!(pmm.stats().used, before.0.used + 10);
    for frame in got {
        pmm.free_page(frame.start_address()).unwrap();
    }
    assert_eq!((pmm.stats(), pmm.largest_free_run()), before);
    pmm.fail_point().arm(FailPlan::Off);
    assert!(pmm.alloc_contiguous(512, 512).is_ok());
    for frame in held {
        pmm.free_page(frame.start_address()).unwrap();
    }
}
