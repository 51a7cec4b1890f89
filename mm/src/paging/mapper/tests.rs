//! Host tests of the mapper over a buffer standing in for physical memory.

use std::collections::BTreeMap;

use proptest::prelude::*;

use x86_64::structures::paging::PageTableFlags;

use super::*;
use crate::fail::FailPlan;
use crate::paging::flags::{HUGE, NX, PRESENT, WRITABLE};
use crate::paging::Tlb;
use crate::testing::TrackedRam;

/// Pages of fake RAM each test gets.
const TABLE_PAGES: usize = 256;

/// Fake RAM for one test, with a mapper over it.
fn fake_ram() -> TrackedRam {
    TrackedRam::new(TABLE_PAGES)
}

/// The mapper over `ram`'s tree.
fn mapper_over(ram: &mut TrackedRam, gigabyte_pages: bool) -> Mapper<OffsetMem> {
    // SAFETY: every test keeps its `ram` alive for as long as it uses the
    // mapper made from it.
    unsafe { ram.mapper(gigabyte_pages) }
}

/// Records flushes.
#[derive(Default)]
struct Recorder {
    pages: Vec<u64>,
    full: usize,
}

impl Tlb for Recorder {
    fn flush_page(&mut self, virt: VirtAddr) {
        self.pages.push(virt.as_u64());
    }
    fn flush_all(&mut self) {
        self.full += 1;
    }
}

const RW: PageTableFlags = WRITABLE.union(NX);

fn v(address: u64) -> VirtAddr {
    VirtAddr::new(address)
}

fn p(address: u64) -> PhysAddr {
    PhysAddr::new(address)
}

/// Maps in fake RAM, where no Rust reference can alias a mapped frame.
fn map_at(
    mapper: &mut Mapper<OffsetMem>,
    virt: u64,
    phys: u64,
    size: PageSize,
    flags: PageTableFlags,
    ram: &mut TrackedRam,
) -> Result<Flush, MmError> {
    // SAFETY: the tree lives in fake RAM and is never loaded: nothing ever
    // reads through its mappings.
    unsafe { mapper.map(v(virt), p(phys), size, flags, ram) }
}

/// As [`map_at`], for a range.
fn map_range_at(
    mapper: &mut Mapper<OffsetMem>,
    virt: u64,
    phys: u64,
    len: u64,
    flags: PageTableFlags,
    small_only: bool,
    ram: &mut TrackedRam,
) -> Result<FlushRange, MmError> {
    // SAFETY: as in `map_at`.
    unsafe { mapper.map_range(v(virt), p(phys), len, flags, small_only, ram) }
}

/// Drops a flush token: the fake tree is in no TLB.
trait NoTlb {
    fn no_tlb(self);
}

impl NoTlb for Flush {
    fn no_tlb(self) {
        // SAFETY: the tree is loaded on no CPU.
        unsafe { self.ignore() }
    }
}

impl NoTlb for FlushRange {
    fn no_tlb(self) {
        // SAFETY: the tree is loaded on no CPU.
        unsafe { self.ignore() }
    }
}
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A snapshot of every page of fake RAM, to prove errors change nothing.
fn snapshot(ram: &TrackedRam) -> Vec<u64> {
    ram.snapshot()
}

#[test]
fn map_translate_unmap_every_size() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, true);
    let mut tlb = Recorder::default();
    let cases = [
        (0x4000_0000_1000u64, 0x5000_3000u64, PageSize::Size4KiB),
        (
            0x4000_0020_0000,
            0x7_0000_0000 + 2 * MIB,
            PageSize::Size2MiB,
        ),
        (0xFFFF_9000_4000_0000, 3 * GIB, PageSize::Size1GiB),
    ];
    for (virt, phys, size) in cases {
        map_at(&mut mapper, virt, phys, size, RW, &mut ram)
            .unwrap()
            .flush(&mut tlb);
        for offset in [0, 8, size.bytes() / 2, size.bytes() - 1] {
            let t = mapper.translate(v(virt + offset)).unwrap();
            assert_eq!(t.phys.as_u64(), phys + offset);
            assert_eq!(t.size, size);
            assert!(t.flags.contains(WRITABLE | NX | PRESENT));
        }
        assert_eq!(mapper.translate(v(virt + size.bytes())), None);
    }
    assert_eq!(tlb.pages, cases.map(|c| c.0).to_vec());
    for (virt, phys, size) in cases {
        let (frame, unmapped, flush) = mapper.unmap(v(virt), &mut ram).unwrap();
        flush.flush(&mut tlb);
        assert_eq!((frame.as_u64(), unmapped), (phys, size));
        assert_eq!(mapper.translate(v(virt)), None);
    }
    // Every intermediate table went back.
    assert!(ram.outstanding.is_empty(), "{:?}", ram.outstanding);
}

#[test]
fn each_error_is_distinct_and_changes_nothing() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    map_at(
        &mut mapper,
        0x20_0000,
        0x40_0000,
        PageSize::Size2MiB,
        RW,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    map_at(
        &mut mapper,
        0x60_0000,
        0x1000,
        PageSize::Size4KiB,
        RW,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    let before = snapshot(&ram);
    let outstanding = ram.outstanding.clone();
    let cases: [(Result<Flush, MmError>, MmError); 6] = [
        (
            map_at(
                &mut mapper,
                0x60_0000,
                0x2000,
                PageSize::Size4KiB,
                RW,
                &mut ram,
            ),
            MmError::AlreadyMapped,
        ),
        (
            map_at(
                &mut mapper,
                0x20_1000,
                0x2000,
                PageSize::Size4KiB,
                RW,
                &mut ram,
            ),
            MmError::HugePageConflict,
        ),
        (
            map_at(
                &mut mapper,
                0x60_0000,
                0x0,
                PageSize::Size2MiB,
                RW,
                &mut ram,
            ),
            MmError::HugePageConflict,
        ),
        (
            map_at(
                &mut mapper,
                0x60_0800,
                0x2000,
                PageSize::Size4KiB,
                RW,
                &mut ram,
            ),
            MmError::Misaligned,
        ),
        (
            map_at(
                &mut mapper,
                0x70_0000,
                0x2800,
                PageSize::Size4KiB,
                RW,
                &mut ram,
            ),
            MmError::Misaligned,
        ),
        (
            map_at(
                &mut mapper,
                0x4000_0000,
                0,
                PageSize::Size1GiB,
                RW,
                &mut ram,
            ),
            MmError::PageSizeUnsupported,
        ),
    ];
    for (result, error) in cases {
        assert_eq!(result, Err(error));
    }
    assert_eq!(
        mapper.unmap(v(0x80_0000), &mut ram).map(|_| ()),
        Err(MmError::NotMapped)
    );
    assert_eq!(
        mapper.unmap(v(0x20_1000), &mut ram).map(|_| ()),
        Err(MmError::HugePageConflict)
    );
    assert_eq!(
        mapper.unmap(v(0x60_0004), &mut ram).map(|_| ()),
        Err(MmError::Misaligned)
    );
    assert_eq!(
        mapper.update_flags(v(0x80_0000), RW).map(|_| ()),
        Err(MmError::NotMapped)
    );
    assert_eq!(snapshot(&ram), before);
    assert_eq!(ram.outstanding, outstanding);
}

#[test]
fn out_of_frames_mid_walk_frees_what_it_took() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    let before = snapshot(&ram);
    // A 4 KiB page in an empty tree needs PDPT, PD and PT: allow only two.
    ram.budget = Some(2);
    let result = map_at(
        &mut mapper,
        0x1234_5000,
        0x1000,
        PageSize::Size4KiB,
        RW,
        &mut ram,
    );
    assert_eq!(result, Err(MmError::OutOfFrames));
    assert!(ram.outstanding.is_empty());
    // The PML4 entry it had linked is gone again.
    ram.budget = None;
    let now = snapshot(&ram);
    assert_eq!(now[..512], before[..512]);
}

#[test]
fn map_range_uses_large_pages_and_rolls_back() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, true);
    // 4 KiB head, 2 MiB pages, a 1 GiB page, 4 KiB tail.
    let virt = GIB - 2 * MIB - 4096;
    let len = 4096 + 2 * MIB + GIB + 8192;
    let flush = map_range_at(&mut mapper, virt, virt, len, RW, false, &mut ram).unwrap();
    let mut tlb = Recorder::default();
    flush.flush(&mut tlb);
    let mut runs = Vec::new();
    mapper.mappings(v(0), v(u64::MAX), |run| runs.push(run));
    let sizes: Vec<_> = runs.iter().map(|r| (r.size, r.len)).collect();
    assert_eq!(
        sizes,
        vec![
            (PageSize::Size4KiB, 4096),
            (PageSize::Size2MiB, 2 * MIB),
            (PageSize::Size1GiB, GIB),
            (PageSize::Size4KiB, 8192)
        ]
    );
    assert_eq!(tlb.pages.len(), 5, "few pages: flushed one by one");
    let (pages, flush) = mapper.unmap_range(v(virt), len, &mut ram).unwrap();
    flush.no_tlb();
    assert_eq!(pages, 5);
    assert!(ram.outstanding.is_empty());

    // Rollback: 64 pages of 4 KiB need a PDPT, PD, PT; fail on the 2nd PT.
    let before = snapshot(&ram);
    ram.budget = Some(3);
    let result = map_range_at(&mut mapper, 0x1F_F000, 0x1000, 8192, RW, true, &mut ram);
    assert_eq!(result, Err(MmError::OutOfFrames));
    assert!(ram.outstanding.is_empty());
    assert_eq!(snapshot(&ram)[..512], before[..512]);
}

#[test]
fn ranges_across_the_canonical_hole_are_refused_untouched() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    let before = snapshot(&ram);
    // The last page of the lower half, then the hole.
    assert_eq!(
        map_range_at(
            &mut mapper,
            0x7FFF_FFFF_F000,
            0x1000,
            8192,
            RW,
            true,
            &mut ram
        ),
        Err(MmError::NonCanonical)
    );
    assert_eq!(
        mapper
            .unmap_range(v(0x7FFF_FFFF_F000), 8192, &mut ram)
            .map(|_| ()),
        Err(MmError::NonCanonical)
    );
    // Physical ranges past 52 bits.
    assert_eq!(
        map_range_at(
            &mut mapper,
            0x1000,
            (1 << 52) - 4096,
            8192,
            RW,
            true,
            &mut ram
        ),
        Err(MmError::InvalidArgument)
    );
    assert_eq!(snapshot(&ram), before);
    assert!(ram.outstanding.is_empty());
}

/// The fault-injection sweep over the mapper: range maps over mixed page
/// sizes (a 4 KiB head, 2 MiB pages, a 1 GiB page, a 4 KiB tail) and over
/// 4 KiB pages across several page tables, next to mappings that already
/// share their upper tables, each run with its Nth table allocation
/// refused for N = 1, 2, ... until it completes. Every refused run must
/// report `OutOfFrames` and leave all of fake RAM byte for byte as before
/// and no table frame outstanding beyond those of the earlier mappings.
#[test]
fn every_refused_table_is_reported_and_leaves_nothing_behind() {
    let mut points = 0;
    let ranges = [
        (GIB - 2 * MIB - 4096, 4096 + 2 * MIB + GIB + 8192, false),
        (0x7F00_001F_F000, 6 * MIB, true),
        (0xFFFF_8000_0000_0000 + 511 * GIB, 3 * GIB, false),
    ];
    for (virt, len, small_only) in ranges {
        let mut ram = fake_ram();
        let mut mapper = mapper_over(&mut ram, true);
        // A neighbour: upper tables exist already for some of the ranges.
        map_at(
            &mut mapper,
            0x7F00_0000_0000,
            0x1000,
            PageSize::Size4KiB,
            RW,
            &mut ram,
        )
        .unwrap()
        .no_tlb();
        let before = snapshot(&ram);
        let outstanding = ram.outstanding.clone();
        for nth in 1.. {
            ram.fail.arm(FailPlan::Nth(nth));
            let result = map_range_at(
                &mut mapper,
                virt,
                virt & 0x000F_FFFF_FFFF_F000,
                len,
                RW,
                small_only,
                &mut ram,
            );
            if ram.fail.injected() == 0 {
                // Fewer table allocations than `nth`: the sweep is complete.
                let (pages, flush) = mapper.unmap_range(v(virt), len, &mut ram).unwrap();
                flush.no_tlb();
                assert!(result.is_ok() && pages > 0);
                break;
            }
            assert_eq!(result.map(NoTlb::no_tlb), Err(MmError::OutOfFrames));
            assert_eq!(snapshot(&ram), before, "range {virt:#x}, failure {nth}");
            assert_eq!(
                ram.outstanding, outstanding,
                "range {virt:#x}, failure {nth}"
            );
            points += 1;
        }
        ram.fail.arm(FailPlan::Off);
        assert_eq!(snapshot(&ram), before);
    }
    assert!(points >= 6, "only {points} failure points");
    println!("mapper sweep: {points} table-allocation failures injected, each recovered");
}

#[test]
fn big_ranges_flush_everything_at_once() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    let mut tlb = Recorder::default();
    map_range_at(&mut mapper, 0x40_0000, 0, 64 * 4096, RW, true, &mut ram)
        .unwrap()
        .flush(&mut tlb);
    assert_eq!((tlb.pages.len(), tlb.full), (0, 1));
}

#[test]
fn ten_thousand_cycles_leak_no_table() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    for cycle in 0..10_000u64 {
        let virt = 0x7F00_0000_0000 + (cycle % 7) * GIB;
        map_at(&mut mapper, virt, 0x1000, PageSize::Size4KiB, RW, &mut ram)
            .unwrap()
            .no_tlb();
        mapper.unmap(v(virt), &mut ram).unwrap().2.no_tlb();
        assert!(ram.outstanding.is_empty());
    }
}

#[test]
fn user_leaves_get_user_parents_even_under_kernel_tables() {
    use crate::paging::flags::USER;
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    // A kernel page first: its parents are not USER.
    map_at(
        &mut mapper,
        0x80_0000_0000,
        0x1000,
        PageSize::Size4KiB,
        RW,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    let kernel_steps: Vec<_> = mapper.walk(v(0x80_0000_0000)).steps().copied().collect();
    assert!(kernel_steps.iter().all(|step| !step.flags.contains(USER)));
    // A user page under the same tables, and one under new tables.
    for virt in [0x80_0000_1000u64, 0x1234_5678_9000] {
        map_at(
            &mut mapper,
            virt,
            0x2000,
            PageSize::Size4KiB,
            RW | USER,
            &mut ram,
        )
        .unwrap()
        .no_tlb();
        let walk = mapper.walk(v(virt));
        assert_eq!(walk.steps().count(), 4);
        for step in walk.steps() {
            assert!(step.flags.contains(USER | PRESENT), "{walk}");
        }
    }
    // The kernel leaf itself stays supervisor-only.
    let kernel = mapper.translate(v(0x80_0000_0000)).unwrap();
    assert!(!kernel.flags.contains(USER));
}

#[test]
fn keeping_top_tables_leaves_pdpts_linked_and_nothing_else() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    let virt = 0xFFFF_9000_0000_0000u64;
    let entry = index(v(virt), PageTableLevel::Four);
    assert!(!mapper.keeps_top_table(entry));
    let cycle = |mapper: &mut Mapper<OffsetMem>, ram: &mut TrackedRam| {
        map_at(mapper, virt, 0x5000, PageSize::Size4KiB, RW, ram)
            .unwrap()
            .no_tlb();
        mapper.unmap(v(virt), ram).unwrap().2.no_tlb();
    };
    // Off (default): every table goes, the PML4 entry is cleared.
    cycle(&mut mapper, &mut ram);
    assert!(ram.outstanding.is_empty());
    // Keeping another entry's table changes nothing here.
    mapper.keep_top_tables([entry + 1]);
    cycle(&mut mapper, &mut ram);
    assert!(ram.outstanding.is_empty());
    mapper.keep_top_tables([entry]);
    assert!(mapper.keeps_top_table(entry));
    cycle(&mut mapper, &mut ram);
    // On: only the PDPT stays, still linked from the PML4.
    let walk = mapper.walk(v(virt));
    let steps: Vec<_> = walk.steps().collect();
    assert_eq!(steps.len(), 2, "{walk}");
    assert!(steps[0].flags.contains(PRESENT) && !steps[1].flags.contains(PRESENT));
    assert_eq!(ram.outstanding.len(), 1);
    let mut tables = Vec::new();
    mapper.for_each_table(|level, _| tables.push(level));
    assert_eq!(tables, [PageTableLevel::Three]);
    // Cycles under it reuse the PDPT and leak nothing more.
    for _ in 0..100 {
        cycle(&mut mapper, &mut ram);
    }
    assert_eq!(ram.outstanding.len(), 1);
}

#[test]
fn replace_swaps_the_frame_in_place_and_refuses_the_rest() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    map_at(
        &mut mapper,
        0x40_1000,
        0x7000,
        PageSize::Size4KiB,
        NX,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    map_at(
        &mut mapper,
        0x80_0000,
        0x20_0000,
        PageSize::Size2MiB,
        RW,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    let tables = ram.outstanding.clone();
    let before = snapshot(&ram);
    let refused = [
        (0x40_1800u64, 0x9000u64, MmError::Misaligned),
        (0x40_1000, 0x9008, MmError::Misaligned),
        (0x40_2000, 0x9000, MmError::NotMapped),
        (0x80_0000, 0x9000, MmError::HugePageConflict),
    ];
    for (virt, phys, error) in refused {
        // SAFETY: fake RAM, never loaded; nothing reads through it.
        let result = unsafe { mapper.replace(v(virt), p(phys), RW) };
        assert_eq!(result.map(|(old, f)| (old, f.no_tlb())), Err(error));
        assert_eq!(snapshot(&ram), before);
    }
    // SAFETY: as above.
    let (old, flush) = unsafe { mapper.replace(v(0x40_1000), p(0x9000), RW) }.unwrap();
    assert_eq!((old.as_u64(), flush.address()), (0x7000, v(0x40_1000)));
    flush.no_tlb();
    let t = mapper.translate(v(0x40_1abc)).unwrap();
    assert_eq!(t.phys.as_u64(), 0x9abc);
    assert!(t.flags.contains(WRITABLE | NX | PRESENT));
    assert_eq!(ram.outstanding, tables, "no table allocated or freed");
}

#[test]
fn update_flags_keeps_the_frame_and_size() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    map_at(
        &mut mapper,
        0x20_0000,
        0x60_0000,
        PageSize::Size2MiB,
        RW,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    mapper.update_flags(v(0x20_0000), NX).unwrap().no_tlb();
    let t = mapper.translate(v(0x20_0010)).unwrap();
    assert_eq!((t.phys.as_u64(), t.size), (0x60_0010, PageSize::Size2MiB));
    assert!(!t.flags.contains(WRITABLE));
    assert!(t.flags.contains(NX | HUGE));
}

#[test]
fn walk_and_runs_describe_the_tree() {
    let mut ram = fake_ram();
    let mut mapper = mapper_over(&mut ram, false);
    map_range_at(
        &mut mapper,
        0xFFFF_8000_0000_0000,
        0,
        4 * MIB,
        RW,
        false,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    map_at(
        &mut mapper,
        0x1000,
        0x1000,
        PageSize::Size4KiB,
        WRITABLE,
        &mut ram,
    )
    .unwrap()
    .no_tlb();
    let walk = mapper.walk(v(0xFFFF_8000_0020_0123));
    assert_eq!(walk.phys, Some(p(0x20_0123)));
    assert_eq!(walk.size, Some(PageSize::Size2MiB));
    let levels: Vec<_> = walk.steps().map(|s| (s.level, s.index)).collect();
    use x86_64::structures::paging::page_table::PageTableLevel::{Four, Three, Two};
    assert_eq!(levels, vec![(Four, 256), (Three, 0), (Two, 1)]);
    let text = walk.to_string();
    assert!(text.contains("PML4[256]"), "{text}");
    assert!(text.contains("-> 2 MiB page"), "{text}");
    assert!(mapper.walk(v(0x5000)).to_string().contains("not mapped"));
    let mut runs = Vec::new();
    mapper.mappings(v(0), v(u64::MAX), |run| runs.push(run));
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].virt, runs[0].len), (v(0x1000), 4096));
    assert_eq!(
        (runs[1].virt, runs[1].len, runs[1].size),
        (v(0xFFFF_8000_0000_0000), 4 * MIB, PageSize::Size2MiB)
    );
    let mut upper = Vec::new();
    mapper.mappings(v(0xFFFF_8000_0020_0000), v(u64::MAX), |run| upper.push(run));
    assert_eq!(upper.len(), 1);
    assert_eq!(upper[0].virt, v(0xFFFF_8000_0020_0000));
}

proptest! {
    #![proptest_config(crate::testing::cases(64))]

    /// Random maps and unmaps against a model of page -> frame.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..4, 0u64..1024), 1..200)) {
        let mut ram = fake_ram();
        let mut mapper = mapper_over(&mut ram, false);
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        for (map, page, region, frame) in ops {
            // Pages spread over a few distant regions to exercise table freeing.
            let virt = region * 0x80_0000_0000 + page * 4096;
            let phys = frame * 4096;
            if map {
                let result = map_at(&mut mapper, virt, phys, PageSize::Size4KiB, RW, &mut ram).map(Flush::no_tlb);
                if let std::collections::btree_map::Entry::Vacant(e) = model.entry(virt) {
                    prop_assert_eq!(result, Ok(()));
                    e.insert(phys);
                } else {
                    prop_assert_eq!(result, Err(MmError::AlreadyMapped));
                }
            } else {
                let result = mapper.unmap(v(virt), &mut ram).map(|(p, _, f)| { f.no_tlb(); p.as_u64() });
                match model.remove(&virt) {
                    Some(phys) => prop_assert_eq!(result, Ok(phys)),
                    None => prop_assert_eq!(result, Err(MmError::NotMapped)),
                }
            }
            for (&virt, &phys) in &model {
                prop_assert_eq!(mapper.translate(v(virt)).map(|t| t.phys.as_u64()), Some(phys));
            }
            let mut tables = 0;
            mapper.for_each_table(|_, _| tables += 1);
            prop_assert_eq!(tables, ram.outstanding.len(), "tables in the tree == frames out");
        }
        for virt in model.keys().copied().collect::<Vec<_>>() {
            mapper.unmap(v(virt), &mut ram).unwrap().2.no_tlb();
        }
        prop_assert!(ram.outstanding.is_empty());
    }
}
