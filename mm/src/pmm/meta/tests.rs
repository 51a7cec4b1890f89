//! Host tests of the frame metadata: the copy-on-write counts against a
//! model, and every refusal leaving the table as it was.

use std::collections::BTreeMap;

use proptest::prelude::*;
use x86_64::PhysAddr;

use super::*;

const BASE: u64 = 0x20_0000;

fn frame(index: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(BASE + index * PAGE_SIZE))
}

fn storage(frames: usize) -> Vec<FrameMeta> {
    (0..frames).map(|_| FrameMeta::new()).collect()
}

/// (owner, flags, map count, refs) of every entry.
fn snapshot(table: &FrameTable<'_>) -> Vec<(Owner, u8, u16, u32)> {
    (0..table.len() as u64)
        .filter_map(|index| table.get(frame(index)))
        .map(|meta| {
            (
                meta.owner(),
                meta.flags().bits(),
                meta.map_count(),
                meta.refs(),
            )
        })
        .collect()
}

#[test]
fn lookups_are_by_frame_number_and_refuse_outside() {
    let entries = storage(4);
    let table = FrameTable::new(&entries, frame(0));
    assert_eq!((table.len(), table.is_empty()), (4, false));
    assert_eq!(FrameTable::bytes_per_frame(), 8);
    assert_eq!(FrameTable::storage_bytes_for(1 << 20), 8 << 20);
    assert!(core::ptr::eq(table.get(frame(3)).unwrap(), &entries[3]));
    assert!(table.get(frame(4)).is_none());
    let below = PhysFrame::containing_address(PhysAddr::new(BASE - PAGE_SIZE));
    assert!(table.get(below).is_none());
    assert_eq!(table.claim(frame(4), Owner::User), Err(MmError::OutOfRange));
    assert_eq!(table.share(below), Err(MmError::OutOfRange));
    assert_eq!(table.release(frame(9)), Err(MmError::OutOfRange));
    assert_eq!(table.cow_write(frame(9)), Err(MmError::OutOfRange));
}

#[test]
fn a_shared_frame_is_copied_until_one_reference_is_left() {
    let entries = storage(2);
    let table = FrameTable::new(&entries, frame(0));
    let f = frame(1);
    table.claim(f, Owner::User).unwrap();
    assert_eq!(table.cow_write(f), Ok(CowAction::TakeOver));
    assert_eq!(table.share(f), Ok(2));
    assert_eq!(table.share(f), Ok(3));
    let meta = table.get(f).unwrap();
    assert!(meta.flags().contains(FrameFlags::COW));
    assert_eq!(
        (meta.owner(), meta.map_count(), meta.refs()),
        (Owner::User, 3, 3)
    );
    assert_eq!(table.cow_write(f), Ok(CowAction::Copy));
    assert_eq!(table.release(f), Ok(Release::StillShared));
    assert_eq!(table.release(f), Ok(Release::StillShared));
    assert_eq!(table.cow_write(f), Ok(CowAction::TakeOver));
    assert!(!meta.flags().contains(FrameFlags::COW));
    assert_eq!(table.release(f), Ok(Release::Last));
    assert_eq!(
        (meta.owner(), meta.map_count(), meta.refs()),
        (Owner::Free, 0, 0)
    );
}

#[test]
fn underflow_overflow_and_double_claims_are_refused_unchanged() {
    let entries = storage(2);
    let table = FrameTable::new(&entries, frame(0));
    let before = snapshot(&table);
    assert_eq!(table.release(frame(0)), Err(MmError::CountUnderflow));
    assert_eq!(table.share(frame(0)), Err(MmError::CountUnderflow));
    assert_eq!(table.cow_write(frame(0)), Err(MmError::CountUnderflow));
    assert_eq!(snapshot(&table), before);

    table.claim(frame(1), Owner::User).unwrap();
    let claimed = snapshot(&table);
    assert_eq!(
        table.claim(frame(1), Owner::Heap),
        Err(MmError::FrameNotFree)
    );
    assert_eq!(snapshot(&table), claimed);

    // A full map count refuses another share and leaves refs alone.
    let meta = table.get(frame(1)).unwrap();
    meta.map_count.store(u16::MAX, Ordering::Relaxed);
    let full = snapshot(&table);
    assert_eq!(table.share(frame(1)), Err(MmError::CountOverflow));
    assert_eq!(snapshot(&table), full);
    // A map count at zero with references left refuses a release whole.
    meta.map_count.store(0, Ordering::Relaxed);
    let unmapped = snapshot(&table);
    assert_eq!(table.release(frame(1)), Err(MmError::CountUnderflow));
    assert_eq!(snapshot(&table), unmapped);
}

#[test]
fn owners_round_trip_and_unknown_values_read_as_reserved() {
    for owner in [
        Owner::Free,
        Owner::Kernel,
        Owner::PageTable,
        Owner::User,
        Owner::Heap,
        Owner::Slab,
        Owner::Reserved,
    ] {
        assert_eq!(Owner::from_raw(owner as u8), owner);
    }
    assert_eq!(Owner::from_raw(200), Owner::Reserved);
    let meta = FrameMeta::default();
    meta.set_owner(Owner::Slab);
    meta.insert_flags(FrameFlags::MOVABLE.union(FrameFlags::PINNED));
    meta.remove_flags(FrameFlags::MOVABLE);
    assert_eq!(meta.owner(), Owner::Slab);
    assert_eq!(meta.flags(), FrameFlags::PINNED);
}

#[test]
fn a_slab_tag_is_read_only_from_a_slab_frame() {
    let tag = core::num::NonZeroU32::new(3).unwrap();
    let table = [FrameMeta::new(), FrameMeta::new()];
    table[0].tag_slab(tag);
    assert_eq!(
        (table[0].owner(), table[0].slab_tag()),
        (Owner::Slab, Some(tag))
    );
    table[0].untag_slab();
    assert_eq!((table[0].owner(), table[0].slab_tag()), (Owner::Free, None));
    // A user frame with 3 references carries no tag 3.
    let frames = FrameTable::new(&table, PhysFrame::containing_address(PhysAddr::new(0)));
    let frame = PhysFrame::containing_address(PhysAddr::new(4096));
    frames.claim(frame, Owner::User).unwrap();
    frames.share(frame).unwrap();
    frames.share(frame).unwrap();
    assert_eq!((table[1].refs(), table[1].slab_tag()), (3, None));
}

#[derive(Clone, Debug)]
enum Op {
    Claim(u64),
    Share(u64),
    Release(u64),
    CowWrite(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0..6u64;
    prop_oneof![
        index.clone().prop_map(Op::Claim),
        index.clone().prop_map(Op::Share),
        index.clone().prop_map(Op::Release),
        index.prop_map(Op::CowWrite),
    ]
}

proptest! {
    #![proptest_config(crate::testing::cases(256))]

    /// Random claims, shares, releases and COW writes (some out of the
    /// table) agree with a map of reference counts; refusals change
    /// nothing.
    #[test]
    fn counts_follow_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let entries = storage(5);
        let table = FrameTable::new(&entries, frame(0));
        let mut model: BTreeMap<u64, u32> = BTreeMap::new();
        for op in ops {
            let before = snapshot(&table);
            let (index, outcome) = match op {
                Op::Claim(i) => (i, table.claim(frame(i), Owner::User).map(|()| 0)),
                Op::Share(i) => (i, table.share(frame(i)).map(u64::from)),
                Op::Release(i) => (i, table.release(frame(i)).map(|r| (r == Release::Last) as u64)),
                Op::CowWrite(i) => (i, table.cow_write(frame(i)).map(|a| (a == CowAction::Copy) as u64)),
            };
            let refs = model.get(&index).copied().unwrap_or(0);
            let expected = if index >= 5 {
                Err(MmError::OutOfRange)
            } else {
                match op {
                    Op::Claim(_) if refs == 0 => { model.insert(index, 1); Ok(0) }
                    Op::Claim(_) => Err(MmError::FrameNotFree),
                    Op::Share(_) if refs == 0 => Err(MmError::CountUnderflow),
                    Op::Share(_) => { model.insert(index, refs + 1); Ok(u64::from(refs + 1)) }
                    Op::Release(_) if refs == 0 => Err(MmError::CountUnderflow),
                    Op::Release(_) => { model.insert(index, refs - 1); Ok((refs == 1) as u64) }
                    Op::CowWrite(_) if refs == 0 => Err(MmError::CountUnderflow),
                    Op::CowWrite(_) => Ok((refs > 1) as u64),
                }
            };
            prop_assert_eq!(outcome, expected);
            if outcome.is_err() && !matches!(op, Op::CowWrite(_)) {
                prop_assert_eq!(snapshot(&table), before);
            }
            for i in 0..5u64 {
                let meta = table.get(frame(i)).unwrap();
                let refs = model.get(&i).copied().unwrap_or(0);
                prop_assert_eq!(meta.refs(), refs);
                prop_assert_eq!(u32::from(meta.map_count()), refs);
                prop_assert_eq!(meta.owner() == Owner::Free, refs == 0);
            }
        }
    }
}
