//! Tests of blocks of every order: alignment, misuse, exhaustion and
//! mobility grouping, with a property test against a frame-by-frame model.

use std::collections::BTreeMap;

use super::tests::usable;
use super::*;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn reservation(start: u64, end: u64) -> Reservation {
    Reservation {
        range: PhysRange { start, end },
        kind: ReservationKind::BootModule,
    }
}

fn storage_for(usable: &RangeSet<MAX_RANGES>) -> Vec<u64> {
    vec![0; FrameAllocator::storage_words_for(usable)]
}

fn address(frame: PhysFrame<Size4KiB>) -> u64 {
    frame.start_address().as_u64()
}

#[test]
fn every_order_allocates_aligned_and_frees() {
    let usable = usable(&[(2 * MIB, 5 * 1024 * MIB)]);
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    let initial = pmm.stats();
    let mut held = Vec::new();
    for order in 0..=MAX_ORDER {
        for mobility in Mobility::ALL {
            let block = pmm.alloc_order(order, mobility).unwrap();
            assert_eq!(address(block) % (PAGE_SIZE << order), 0, "order {order}");
            held.push((address(block), order));
        }
    }
    let frames: u64 = held.iter().map(|&(_, order)| 1u64 << order).sum();
    assert_eq!(pmm.stats().used, frames);
    held.sort();
    for pair in held.windows(2) {
        let ((first, order), (second, _)) = (pair[0], pair[1]);
        assert!(first + (PAGE_SIZE << order) <= second, "blocks overlap");
    }
    for (block, order) in held {
        pmm.free_order(PhysAddr::new(block), order).unwrap();
    }
    assert_eq!(pmm.stats(), initial);
    assert_eq!(
        pmm.alloc_order(MAX_ORDER + 1, Mobility::Movable),
        Err(MmError::InvalidArgument)
    );
}

#[test]
fn every_misuse_of_a_block_has_its_own_error_and_changes_nothing() {
    let usable = usable(&[(2 * MIB, 10 * MIB)]);
    let reservations = [reservation(9 * MIB, 9 * MIB + 0x1000)];
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &reservations, &mut storage).unwrap();
    let pair = address(pmm.alloc_order(1, Mobility::Unmovable).unwrap());
    let eight = address(pmm.alloc_order(3, Mobility::Unmovable).unwrap());
    let one = address(pmm.alloc_order(0, Mobility::Unmovable).unwrap());
    let two = address(pmm.alloc_order(0, Mobility::Unmovable).unwrap());
    let huge = address(pmm.alloc_order(9, Mobility::Movable).unwrap());
    let before = (pmm.stats(), pmm.free_runs().collect::<Vec<_>>());
    let (adjacent_low, adjacent_high) = (one.min(two), one.max(two));
    let cases = [
        (pair, 0, MmError::WrongBlockSize),              // too small
        (eight, 2, MmError::WrongBlockSize),             // half of it
        (eight + PAGE_SIZE, 0, MmError::WrongBlockSize), // inside
        (
            eight,
            4,
            if eight.is_multiple_of(PAGE_SIZE << 4) {
                MmError::PartlyFree
            } else {
                MmError::Misaligned
            },
        ),
        (huge, 8, MmError::WrongBlockSize),
        (huge + 256 * PAGE_SIZE, 8, MmError::WrongBlockSize),
        (
            huge,
            10,
            if huge.is_multiple_of(PAGE_SIZE << 10) {
                MmError::PartlyFree
            } else {
                MmError::Misaligned
            },
        ),
        (9 * MIB, 0, MmError::FrameReserved),
        (7 * MIB, 0, MmError::FrameAlreadyFree),
        (12 * MIB, 0, MmError::OutOfRange),
        (pair, MAX_ORDER + 1, MmError::InvalidArgument),
    ];
    for (block, order, error) in cases {
        assert_eq!(
            pmm.free_order(PhysAddr::new(block), order),
            Err(error),
            "{block:#x} order {order}"
        );
        assert_eq!((pmm.stats(), pmm.free_runs().collect::<Vec<_>>()), before);
    }
    // Four frames from the pair: one block and the frames after it.
    assert!(pmm.free_order(PhysAddr::new(pair), 2).is_err());
    assert_eq!((pmm.stats(), pmm.free_runs().collect::<Vec<_>>()), before);
    if adjacent_high == adjacent_low + PAGE_SIZE && adjacent_low % (2 * PAGE_SIZE) == 0 {
        // Two single frames side by side are not one order-1 block.
        assert_eq!(
            pmm.free_order(PhysAddr::new(adjacent_low), 1),
            Err(MmError::WrongBlockSize)
        );
    }
    // A contiguous run frees with its count, not part of it.
    let run = address(pmm.alloc_contiguous(5, 1).unwrap());
    assert_eq!(
        pmm.free_contiguous(PhysAddr::new(run), 4),
        Err(MmError::WrongBlockSize)
    );
    assert!(pmm.free_contiguous(PhysAddr::new(run), 6).is_err());
    pmm.free_contiguous(PhysAddr::new(run), 5).unwrap();
    for (block, order) in [(pair, 1), (eight, 3), (one, 0), (two, 0), (huge, 9)] {
        pmm.free_order(PhysAddr::new(block), order).unwrap();
    }
    assert_eq!(
        pmm.free_order(PhysAddr::new(huge), 9),
        Err(MmError::FrameAlreadyFree)
    );
}

#[test]
fn exhaustion_by_order_hands_out_every_block_then_recovers() {
    // 2..8 MiB and 9..9.5 MiB, with one reserved frame at 4 MiB + 64 KiB.
    let usable = usable(&[(2 * MIB, 8 * MIB), (9 * MIB, 9 * MIB + MIB / 2)]);
    let reservations = [reservation(4 * MIB + 0x10000, 4 * MIB + 0x11000)];
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &reservations, &mut storage).unwrap();
    let initial = pmm.stats();
    for order in [9, 4, 0] {
        let mut held = Vec::new();
        while let Ok(block) = pmm.alloc_order(order, Mobility::Movable) {
            held.push(address(block));
        }
        let expected = match order {
            // 2-4 MiB and 6-8 MiB (4-6 MiB has the reservation).
            9 => 2,
            // 6 MiB of 64 KiB blocks minus the reserved one, plus 9-9.5 MiB.
            4 => (6 * MIB / 0x10000 - 1) + MIB / 2 / 0x10000,
            _ => initial.free,
        };
        assert_eq!(held.len() as u64, expected, "order {order}");
        for block in held {
            pmm.free_order(PhysAddr::new(block), order).unwrap();
        }
        assert_eq!(pmm.stats(), initial);
    }
}

#[test]
fn unmovable_frames_stay_together() {
    let usable = usable(&[(2 * MIB, 66 * MIB)]);
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    // Interleave: for every unmovable frame, 15 movable ones.
    let mut held = Vec::new();
    for step in 0..4096 {
        let mobility = if step % 16 == 0 {
            Mobility::Unmovable
        } else {
            Mobility::Movable
        };
        held.push((address(pmm.alloc_order(0, mobility).unwrap()), mobility));
    }
    let chunks_of = |mobility| {
        let mut chunks: Vec<u64> = held
            .iter()
            .filter(|&&(_, m)| m == mobility)
            .map(|&(a, _)| a / (2 * MIB))
            .collect();
        chunks.dedup();
        chunks.len()
    };
    // 256 unmovable frames fit one chunk; 3840 movable ones fill 7.5.
    assert_eq!(chunks_of(Mobility::Unmovable), 1);
    assert_eq!(chunks_of(Mobility::Movable), 8);
    let counts = pmm.chunk_counts();
    assert_eq!(counts.owned, [1, 8]);
    assert_eq!(counts.whole, 32 - 9);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32, bool),
    Free(prop::sample::Index),
    Run(usize, u32),
    BadFree(u64, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![6 => 0u32..=3, 1 => 4u32..=8, 1 => 9u32..=10], any::<bool>())
            .prop_map(|(order, movable)| Op::Alloc(order, movable)),
        5 => any::<prop::sample::Index>().prop_map(Op::Free),
        1 => (1usize..700, 0u32..10).prop_map(|(count, align)| Op::Run(count, align)),
        1 => (0u64..(20 * MIB), 0u32..=10).prop_map(|(address, order)| Op::BadFree(address, order)),
    ]
}

/// Frame-by-frame: what the allocator should consider free.
struct Model {
    usable: RangeSet<MAX_RANGES>,
    reservations: Vec<Reservation>,
    /// Block start -> frames, for every block handed out.
    owned: BTreeMap<u64, u64>,
}

impl Model {
    fn is_free(&self, frame: u64) -> bool {
        self.usable.contains(frame)
            && !self
                .reservations
                .iter()
                .any(|r| outward_to_pages(r.range).contains(frame))
            && self
                .owned
                .range(..=frame)
                .next_back()
                .is_none_or(|(&start, &frames)| frame >= start + frames * PAGE_SIZE)
    }

    fn has_block(&self, order: u32) -> bool {
        let size = PAGE_SIZE << order;
        let span = self.usable.as_slice();
        let (low, high) = (span[0].start, span[span.len() - 1].end);
        (low.next_multiple_of(size)..high)
            .step_by(size as usize)
            .any(|start| (0..1u64 << order).all(|f| self.is_free(start + f * PAGE_SIZE)))
    }
}

proptest! {
    #![proptest_config(crate::testing::cases(96))]

    #[test]
    fn blocks_of_every_order_match_a_model(ops in proptest::collection::vec(op(), 1..300)) {
        let usable = usable(&[(2 * MIB, 9 * MIB), (9 * MIB + 0x3000, 14 * MIB), (16 * MIB, 20 * MIB + 0x5000)]);
        let reservations = vec![
            reservation(4 * MIB + 0x7000, 4 * MIB + 0x9000),
            reservation(16 * MIB + 0x10_0000, 16 * MIB + 0x10_1000),
        ];
        let mut storage = storage_for(&usable);
        let mut pmm = FrameAllocator::new(usable.clone(), &reservations, &mut storage).unwrap();
        let initial = pmm.stats();
        let mut model = Model { usable, reservations, owned: BTreeMap::new() };
        for op in ops {
            match op {
                Op::Alloc(order, movable) => {
                    let mobility = if movable { Mobility::Movable } else { Mobility::Unmovable };
                    match pmm.alloc_order(order, mobility) {
                        Ok(block) => {
                            let start = address(block);
                            prop_assert_eq!(start % (PAGE_SIZE << order), 0);
                            for frame in 0..1u64 << order {
                                prop_assert!(model.is_free(start + frame * PAGE_SIZE), "{:#x} order {} not free", start, order);
                            }
                            model.owned.insert(start, 1 << order);
                        }
                        Err(error) => {
                            prop_assert_eq!(error, MmError::OutOfFrames);
                            prop_assert!(!model.has_block(order), "order {} refused with a free block", order);
                        }
                    }
                }
                Op::Free(index) if !model.owned.is_empty() => {
                    let (&start, &frames) = model.owned.iter().nth(index.index(model.owned.len())).unwrap();
                    if frames.is_power_of_two() && start % (frames * PAGE_SIZE) == 0 {
                        pmm.free_order(PhysAddr::new(start), frames.trailing_zeros()).unwrap();
                    } else {
                        pmm.free_contiguous(PhysAddr::new(start), frames as usize).unwrap();
                    }
                    model.owned.remove(&start);
                }
                Op::Run(count, align_log) => {
                    if let Ok(first) = pmm.alloc_contiguous(count, 1 << align_log) {
                        let first = address(first);
                        prop_assert_eq!(first % (PAGE_SIZE << align_log), 0);
                        for frame in 0..count as u64 {
                            prop_assert!(model.is_free(first + frame * PAGE_SIZE));
                        }
                        model.owned.insert(first, count as u64);
                    }
                }
                Op::BadFree(address, order) => {
                    let address = address & !0xFFF;
                    if model.owned.get(&address) != Some(&(1 << order)) {
                        let before = (pmm.stats(), pmm.free_runs().collect::<Vec<_>>());
                        prop_assert!(pmm.free_order(PhysAddr::new(address), order).is_err(), "{:#x} order {}", address, order);
                        prop_assert_eq!((pmm.stats(), pmm.free_runs().collect::<Vec<_>>()), before);
                    }
                }
                _ => {}
            }
            let stats = pmm.stats();
            prop_assert_eq!(stats.used, model.owned.values().sum::<u64>());
            prop_assert_eq!(stats.free + stats.used + stats.reserved, stats.total);
        }
        let blocks: Vec<(u64, u64)> = model.owned.iter().map(|(&s, &f)| (s, f)).collect();
        for (start, frames) in blocks {
            pmm.free_contiguous(PhysAddr::new(start), frames as usize).unwrap();
        }
        prop_assert_eq!(pmm.stats(), initial);
        prop_assert_eq!(pmm.free_chunks(), FrameAllocator::new(model.usable.clone(), &model.reservations, &mut storage_for(&model.usable)).unwrap().free_chunks());
    }
}

fn node(node: u8, start: u64, end: u64) -> NodeMemory {
    NodeMemory {
        node,
        range: PhysRange { start, end },
    }
}

/// Distances as QEMU's `-numa dist` gives them for three nodes.
fn three_node_distance(from: usize, to: usize) -> u8 {
    [[10, 21, 31], [21, 10, 41], [31, 41, 10]][from][to]
}

#[test]
fn allocations_come_from_the_asked_node_then_the_nearest() {
    let usable = usable(&[(2 * MIB, 98 * MIB)]);
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    let layout = [
        node(0, 0, 34 * MIB),
        node(1, 34 * MIB, 66 * MIB),
        node(2, 66 * MIB, 98 * MIB),
    ];
    let report = pmm.set_nodes(3, &layout, three_node_distance).unwrap();
    assert_eq!(report.unassigned_chunks, 0);
    assert_eq!(pmm.fallback_order(1), &[1, 0, 2]);
    assert_eq!(pmm.fallback_order(2), &[2, 0, 1]);
    let frames = 32 * MIB / PAGE_SIZE;
    for index in 0..3 {
        let stats = pmm.node_stats(index);
        assert_eq!((stats.total, stats.free), (frames, frames), "node {index}");
        assert_eq!(stats.largest_free_order, Some(12));
    }
    let initial = pmm.stats();
    for wanted in 0..3 {
        for order in [0, 3, 9] {
            let block = address(pmm.alloc_near(wanted, order, Mobility::Movable).unwrap());
            assert_eq!(pmm.node_of(block), Some(wanted));
            pmm.free_order(PhysAddr::new(block), order).unwrap();
        }
    }
    // Exhaust node 2: its allocations go to node 0 (distance 31), not 1.
    let mut held = Vec::new();
    while let Ok(block) = pmm.alloc_on(2, 9, Mobility::Movable) {
        assert_eq!(pmm.node_of(address(block)), Some(2));
        held.push((address(block), 9));
    }
    assert_eq!(held.len(), 16);
    assert_eq!(pmm.node_stats(2).free, 0);
    assert_eq!(pmm.node_stats(2).largest_free_order, None);
    let spill = address(pmm.alloc_near(2, 0, Mobility::Unmovable).unwrap());
    assert_eq!(pmm.node_of(spill), Some(0));
    held.push((spill, 0));
    assert_eq!(
        pmm.alloc_on(2, 0, Mobility::Movable),
        Err(MmError::OutOfFrames)
    );
    assert_eq!(
        pmm.alloc_near(3, 0, Mobility::Movable),
        Err(MmError::InvalidArgument)
    );
    for (block, order) in held {
        pmm.free_order(PhysAddr::new(block), order).unwrap();
    }
    assert_eq!(pmm.stats(), initial);
    assert_eq!(pmm.node_stats(2).free, frames);
}

#[test]
fn bad_node_layouts_are_refused_and_gaps_reported() {
    let usable = usable(&[(2 * MIB, 10 * MIB)]);
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    let distance = |from: usize, to: usize| if from == to { 10 } else { 20 };
    assert_eq!(
        pmm.set_nodes(0, &[], distance).err(),
        Some(NodeError::TooManyNodes)
    );
    assert_eq!(
        pmm.set_nodes(9, &[], distance).err(),
        Some(NodeError::TooManyNodes)
    );
    assert_eq!(
        pmm.set_nodes(2, &[node(2, 0, 4 * MIB)], distance).err(),
        Some(NodeError::NoSuchNode)
    );
    assert_eq!(pmm.nodes(), 1);
    // 2-6 MiB on node 1; 6-10 MiB in no range: node 0, reported.
    let report = pmm.set_nodes(2, &[node(1, 0, 6 * MIB)], distance).unwrap();
    assert_eq!(report.unassigned_chunks, 2);
    assert_eq!(pmm.node_stats(1).total, 4 * MIB / PAGE_SIZE);
    assert_eq!(pmm.node_stats(0).total, 4 * MIB / PAGE_SIZE);
}

proptest! {
    #![proptest_config(crate::testing::cases(64))]

    /// On three nodes, every allocation lands on the asked node unless
    /// that node has no free aligned block of the order, and then on the
    /// nearest node that has one.
    #[test]
    fn node_fallback_matches_a_model(
        ops in proptest::collection::vec((0usize..3, prop_oneof![4 => 0u32..=2, 1 => 9u32..=10], any::<bool>(), any::<prop::sample::Index>()), 1..400),
    ) {
        let usable = usable(&[(2 * MIB, 26 * MIB)]);
        let reservations = vec![reservation(12 * MIB, 12 * MIB + 0x3000)];
        let mut storage = storage_for(&usable);
        let mut pmm = FrameAllocator::new(usable.clone(), &reservations, &mut storage).unwrap();
        let layout = [node(0, 0, 10 * MIB), node(1, 10 * MIB, 18 * MIB), node(2, 18 * MIB, 26 * MIB)];
        pmm.set_nodes(3, &layout, three_node_distance).unwrap();
        let initial = pmm.stats();
        let mut model = Model { usable: usable.clone(), reservations, owned: BTreeMap::new() };
        let node_has_block = |model: &Model, node: usize, order: u32| {
            let range = layout[node].range;
            let size = PAGE_SIZE << order;
            (range.start.max(2 * MIB).next_multiple_of(size)..range.end)
                .step_by(size as usize)
                .filter(|start| start + size <= range.end)
                .any(|start| (0..1u64 << order).all(|f| model.is_free(start + f * PAGE_SIZE)))
        };
        for (wanted, order, free, which) in ops {
            if free && !model.owned.is_empty() {
                let (&start, &frames) = model.owned.iter().nth(which.index(model.owned.len())).unwrap();
                pmm.free_order(PhysAddr::new(start), frames.trailing_zeros()).unwrap();
                model.owned.remove(&start);
                continue;
            }
            let expected = pmm.fallback_order(wanted).iter().map(|&n| n as usize).find(|&n| node_has_block(&model, n, order));
            match pmm.alloc_near(wanted, order, Mobility::Movable) {
                Ok(block) => {
                    let start = address(block);
                    prop_assert_eq!(pmm.node_of(start), expected, "order {} near {}", order, wanted);
                    model.owned.insert(start, 1 << order);
                }
                Err(error) => {
                    prop_assert_eq!(error, MmError::OutOfFrames);
                    prop_assert_eq!(expected, None);
                }
            }
        }
        let free: u64 = (0..3).map(|n| pmm.node_stats(n).free).sum();
        prop_assert_eq!(free, pmm.stats().free);
        let blocks: Vec<(u64, u64)> = model.owned.iter().map(|(&s, &f)| (s, f)).collect();
        for (start, frames) in blocks {
            pmm.free_order(PhysAddr::new(start), frames.trailing_zeros()).unwrap();
        }
        prop_assert_eq!(pmm.stats(), initial);
    }
}

#[test]
fn a_split_run_is_single_frames() {
    let usable = usable(&[(2 * MIB, 10 * MIB)]);
    let mut storage = storage_for(&usable);
    let mut pmm = FrameAllocator::new(usable, &[], &mut storage).unwrap();
    let initial = pmm.stats();
    let first = address(pmm.alloc_split(0, 6, Mobility::Unmovable).unwrap());
    assert_eq!(first % (64 * PAGE_SIZE), 0);
    assert_eq!(pmm.stats().used, 64);
    // Not one block any more: each frame is its own.
    assert_eq!(
        pmm.free_order(PhysAddr::new(first), 6),
        Err(MmError::WrongBlockSize)
    );
    for frame in (0..64).rev() {
        pmm.free_page(PhysAddr::new(first + frame * PAGE_SIZE))
            .unwrap();
    }
    assert_eq!(pmm.stats(), initial);
    assert_eq!(
        pmm.alloc_split(0, 7, Mobility::Unmovable),
        Err(MmError::InvalidArgument)
    );
}
