//! Random clone/read/write/unmap/reserve/destroy sequences over up to four
//! spaces against a model of logical frames with reference counts: after
//! each step every space reads what the model says, a frame is copied
//! only when a shared page is written, the frame table agrees, and at the
//! end every frame and table is back.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// Live spaces at most.
const SPACES: usize = 4;

/// The pages the sequences touch: twelve across a page-table boundary,
/// four under another PML4 entry.
fn page_address(index: usize) -> u64 {
    if index < 12 {
        user(0x20_0000 - 6 * PAGE_SIZE + index as u64 * PAGE_SIZE)
    } else {
        user((3 << 39) + (index as u64 - 12) * PAGE_SIZE)
    }
}

const PAGES: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Op {
    Read {
        space: usize,
        page: usize,
    },
    Write {
        space: usize,
        page: usize,
        value: u8,
    },
    Clone {
        space: usize,
        budget: Option<usize>,
    },
    Unmap {
        space: usize,
        page: usize,
    },
    Reserve {
        space: usize,
        page: usize,
    },
    Destroy {
        space: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let space = 0..SPACES;
    let page = 0..PAGES;
    prop_oneof![
        3 => (space.clone(), page.clone()).prop_map(|(space, page)| Op::Read { space, page }),
        6 => (space.clone(), page.clone(), 1..=255u8)
            .prop_map(|(space, page, value)| Op::Write { space, page, value }),
        2 => (space.clone(), proptest::option::weighted(0.3, 0..12usize))
            .prop_map(|(space, budget)| Op::Clone { space, budget }),
        1 => (space.clone(), page.clone()).prop_map(|(space, page)| Op::Unmap { space, page }),
        1 => (space.clone(), page).prop_map(|(space, page)| Op::Reserve { space, page }),
        1 => space.prop_map(|space| Op::Destroy { space }),
    ]
}

/// A present page in the model: its logical frame and whether the page
/// table lets it be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: u32,
    writable: bool,
}

#[derive(Clone, Debug, Default)]
struct SpaceModel {
    reserved: BTreeSet<usize>,
    present: BTreeMap<usize, Entry>,
}

#[derive(Default)]
struct Model {
    refs: BTreeMap<u32, u32>,
    values: BTreeMap<u32, u8>,
    next: u32,
}

impl Model {
    fn fresh(&mut self, value: u8) -> u32 {
        self.next += 1;
        self.refs.insert(self.next, 1);
        self.values.insert(self.next, value);
        self.next
    }

    fn drop_ref(&mut self, id: u32) {
        let refs = self.refs.get_mut(&id).unwrap();
        *refs -= 1;
        if *refs == 0 {
            self.refs.remove(&id);
            self.values.remove(&id);
        }
    }
}

struct Run {
    world: World,
    spaces: Vec<Option<(AddressSpace<OffsetMem>, SpaceModel)>>,
    model: Model,
}

impl Run {
    fn new() -> Self {
        let mut world = World::new();
        let mut space = world.space();
        space
            .reserve(va(page_address(0)), 12 * PAGE_SIZE, Perms::READ_WRITE)
            .unwrap();
        space
            .reserve(va(page_address(12)), 4 * PAGE_SIZE, Perms::READ_WRITE)
            .unwrap();
        let model = SpaceModel {
            reserved: (0..PAGES).collect(),
            present: BTreeMap::new(),
        };
        let mut spaces: Vec<_> = (0..SPACES).map(|_| None).collect();
        spaces[0] = Some((space, model));
        Self {
            world,
            spaces,
            model: Model::default(),
        }
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let Run {
            world,
            spaces,
            model,
        } = self;
        match op {
            Op::Read { space, page } | Op::Write { space, page, .. } => {
                let Some((space, expected)) = spaces[space].as_mut() else {
                    return Ok(());
                };
                let addr = page_address(page);
                let write = match op {
                    Op::Write { value, .. } => Some(value),
                    _ => None,
                };
                if !expected.reserved.contains(&page) {
                    let outcome = match write {
                        Some(value) => world.write_page(space, addr, value).map(|_| ()),
                        None => world.read(space, addr).map(|_| ()),
                    };
                    prop_assert_eq!(outcome, Err(FaultError::NoRegion { addr: va(addr) }));
                    return Ok(());
                }
                let entry = expected.present.get(&page).copied();
                let fault = match (entry, write) {
                    (None, value) => {
                        let id = model.fresh(value.unwrap_or(0));
                        expected.present.insert(page, Entry { id, writable: true });
                        Some(FaultFixed::DemandZero)
                    }
                    (Some(_), None) => None,
                    (Some(Entry { writable: true, id }), Some(value)) => {
                        model.values.insert(id, value);
                        None
                    }
                    (
                        Some(Entry {
                            writable: false,
                            id,
                        }),
                        Some(value),
                    ) => {
                        let fixed = if model.refs[&id] > 1 {
                            model.drop_ref(id);
                            let copy = model.fresh(value);
                            expected.present.insert(
                                page,
                                Entry {
                                    id: copy,
                                    writable: true,
                                },
                            );
                            FaultFixed::CowCopied
                        } else {
                            model.values.insert(id, value);
                            expected.present.insert(page, Entry { id, writable: true });
                            FaultFixed::CowTakenOver
                        };
                        Some(fixed)
                    }
                };
                match write {
                    Some(value) => {
                        prop_assert_eq!(world.write_page(space, addr, value), Ok(fault));
                    }
                    None => {
                        let id = expected.present[&page].id;
                        let value = model.values[&id];
                        prop_assert_eq!(world.read(space, addr + 77), Ok((value, fault)));
                    }
                }
            }
            Op::Clone { space, budget } => {
                let Some(slot) = spaces.iter().position(Option::is_none) else {
                    return Ok(());
                };
                let Some((parent, expected)) = spaces[space].as_mut() else {
                    return Ok(());
                };
                let before = world.ram.outstanding.clone();
                let pml4 = world.ram.allocate_frame().unwrap();
                world.ram.budget = budget;
                let table = frames(&world.meta);
                // SAFETY: a fresh frame of this RAM.
                let result =
                    unsafe { parent.clone_cow(pml4, &mut world.ram, &table, &mut world.tlb) };
                world.ram.budget = None;
                match result {
                    Ok(child) => {
                        for entry in expected.present.values_mut() {
                            entry.writable = false;
                            *model.refs.get_mut(&entry.id).unwrap() += 1;
                        }
                        let copy = expected.clone();
                        spaces[slot] = Some((child, copy));
                    }
                    Err(error) => {
                        prop_assert!(budget.is_some());
                        prop_assert_eq!(error, MmError::OutOfFrames);
                        prop_assert_eq!(&world.ram.outstanding, &before, "a failed clone leaked");
                    }
                }
            }
            Op::Unmap { space, page } => {
                let Some((space, expected)) = spaces[space].as_mut() else {
                    return Ok(());
                };
                let table = frames(&world.meta);
                let done = space
                    .unmap(
                        va(page_address(page)),
                        PAGE_SIZE,
                        &mut world.ram,
                        &table,
                        &mut world.tlb,
                    )
                    .unwrap();
                expected.reserved.remove(&page);
                let (mut unmapped, mut freed) = (0, 0);
                if let Some(entry) = expected.present.remove(&page) {
                    unmapped = 1;
                    freed = u64::from(model.refs[&entry.id] == 1);
                    model.drop_ref(entry.id);
                }
                prop_assert_eq!((done.pages_unmapped, done.pages_freed), (unmapped, freed));
                prop_assert_eq!(done.inconsistencies, 0);
            }
            Op::Reserve { space, page } => {
                let Some((space, expected)) = spaces[space].as_mut() else {
                    return Ok(());
                };
                let result = space.reserve(va(page_address(page)), PAGE_SIZE, Perms::READ_WRITE);
                if expected.reserved.insert(page) {
                    prop_assert_eq!(result, Ok(()));
                } else {
                    prop_assert_eq!(result, Err(MmError::RegionOverlap));
                }
            }
            Op::Destroy { space } => {
                let Some((space, expected)) = spaces[space].take() else {
                    return Ok(());
                };
                let done = world.destroy(space);
                let mut freed = 0;
                for entry in expected.present.values() {
                    freed += u64::from(model.refs[&entry.id] == 1);
                    model.drop_ref(entry.id);
                }
                prop_assert_eq!(done.pages_unmapped, expected.present.len() as u64);
                prop_assert_eq!(done.pages_freed, freed);
                prop_assert_eq!(done.inconsistencies, 0);
            }
        }
        self.check()
    }

    /// Every space against the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let table = frames(&self.world.meta);
        let mut phys_of: BTreeMap<u32, u64> = BTreeMap::new();
        let mut live: Vec<&AddressSpace<OffsetMem>> = Vec::new();
        for (space, expected) in self.spaces.iter().flatten() {
            live.push(space);
            for page in 0..PAGES {
                let t = space.translate(va(page_address(page)));
                let Some(entry) = expected.present.get(&page) else {
                    prop_assert_eq!(t, None);
                    continue;
                };
                let t = t.ok_or_else(|| TestCaseError::fail("page missing"))?;
                prop_assert_eq!(t.flags.contains(WRITABLE), entry.writable, "page {}", page);
                let frame = frame_at(t.phys.as_u64());
                let bytes = self.world.ram.bytes(frame);
                let value = self.model.values[&entry.id];
                prop_assert!([0, 2048, 4095].iter().all(|&i| bytes[i] == value));
                let known = *phys_of.entry(entry.id).or_insert(t.phys.as_u64());
                prop_assert_eq!(known, t.phys.as_u64(), "one logical frame, one frame");
                let meta = table.get(frame).unwrap();
                prop_assert_eq!(meta.refs(), self.model.refs[&entry.id]);
                prop_assert_eq!(u32::from(meta.map_count()), self.model.refs[&entry.id]);
            }
        }
        let distinct: BTreeSet<u64> = phys_of.values().copied().collect();
        prop_assert_eq!(
            distinct.len(),
            phys_of.len(),
            "two logical frames share a frame"
        );
        prop_assert_eq!(phys_of.len(), self.model.refs.len());
        prop_assert_eq!(
            self.world.data_frames(&live),
            self.model.refs.len() as u64,
            "data frames out == live logical frames (copies only on write)"
        );
        Ok(())
    }

    fn finish(mut self) {
        for (space, _) in self.spaces.iter_mut().filter_map(Option::take) {
            let done = self.world.destroy(space);
            assert_eq!(done.inconsistencies, 0);
        }
        self.world.assert_clean();
    }
}

proptest! {
    #![proptest_config(crate::testing::cases(128))]

    #[test]
    fn cow_spaces_follow_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in ops {
            run.step(op)?;
        }
        run.finish();
    }
}
