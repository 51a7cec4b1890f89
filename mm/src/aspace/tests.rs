//! Host tests of address spaces over tracked fake RAM: demand paging,
//! refusals, Fixed and Shared regions, protect, populate, kernel entries,
//! create/destroy cycles, and (in `cow_model`) random clone/write/unmap/
//! destroy sequences against a model of shared frames.

mod cow_model;

use std::collections::BTreeSet;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageTable, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::*;
use crate::layout::{HEAP_START, PAGE_SIZE};
use crate::paging::flags::{NX, PRESENT, USER, WRITABLE};
use crate::paging::{Mapper, OffsetMem, PageSize, PhysMem, Tlb};
use crate::pmm::meta::{FrameMeta, FrameTable};
use crate::testing::{FakeRam, TrackedRam, FAKE_BASE};
use crate::MmError;

/// Fake RAM pages per test world.
const RAM_PAGES: usize = 1024;

/// Records flushes.
#[derive(Default)]
pub(super) struct Recorder {
    pub pages: Vec<u64>,
    pub full: usize,
}

impl Tlb for Recorder {
    fn flush_page(&mut self, virt: VirtAddr) {
        self.pages.push(virt.as_u64());
    }
    fn flush_all(&mut self) {
        self.full += 1;
    }
}

/// Fake RAM with a kernel PML4 (its first page) that has tables under
/// entry 0 and under two higher-half entries, and a frame table over it.
pub(super) struct World {
    pub ram: TrackedRam,
    pub meta: Vec<FrameMeta>,
    pub mem: OffsetMem,
    pub kernel: Mapper<OffsetMem>,
    /// Frames out after the kernel's setup.
    pub baseline: BTreeSet<u64>,
    pub tlb: Recorder,
}

/// Kernel pages mapped in every world: the heap (entry 0), the direct map
/// (entry 256) and device memory (entry 384).
const KERNEL_PAGES: [u64; 3] = [HEAP_START, 0xFFFF_8000_0000_0000, 0xFFFF_C000_0000_0000];

impl World {
    pub fn new() -> Self {
        let mut ram = TrackedRam::new(RAM_PAGES);
        // SAFETY: the world owns the RAM and drops the views with it.
        let (mut kernel, mem) = unsafe { (ram.mapper(false), ram.mem()) };
        kernel.keep_top_tables(
            core::iter::once(KERNEL_LOW_ENTRY).chain(FIRST_KERNEL_HIGH_ENTRY..512),
        );
        for virt in KERNEL_PAGES {
            let frame = ram.allocate_frame().unwrap();
            // SAFETY: fake RAM, never loaded.
            let flush = unsafe {
                kernel.map(
                    VirtAddr::new(virt),
                    frame.start_address(),
                    PageSize::Size4KiB,
                    WRITABLE | NX,
                    &mut ram,
                )
            }
            .unwrap();
            // SAFETY: the tree is loaded on no CPU.
            unsafe { flush.ignore() };
        }
        let meta = (0..RAM_PAGES).map(|_| FrameMeta::new()).collect();
        let baseline = ram.outstanding.clone();
        Self {
            ram,
            meta,
            mem,
            kernel,
            baseline,
            tlb: Recorder::default(),
        }
    }

    pub fn space(&mut self) -> AddressSpace<OffsetMem> {
        let pml4 = self.ram.allocate_frame().unwrap();
        // SAFETY: a fresh frame of this RAM, not the kernel's PML4; `mem`
        // reaches all of it; the kernel mapper keeps its top tables.
        unsafe { AddressSpace::new(pml4, FakeRam::first_frame(), self.mem) }
    }

    pub fn destroy(&mut self, space: AddressSpace<OffsetMem>) -> Teardown {
        let table = frames(&self.meta);
        // SAFETY: fake RAM: the space was never loaded on a CPU.
        unsafe { space.destroy(&mut self.ram, &table) }
    }

    pub fn fault(
        &mut self,
        space: &mut AddressSpace<OffsetMem>,
        addr: u64,
        access: Access,
    ) -> Result<FaultFixed, FaultError> {
        let table = frames(&self.meta);
        space.handle_fault(
            VirtAddr::new(addr),
            access,
            &mut self.ram,
            &table,
            &mut self.tlb,
        )
    }

    /// A user read through the "MMU": faults until the page is present.
    pub fn read(
        &mut self,
        space: &mut AddressSpace<OffsetMem>,
        addr: u64,
    ) -> Result<(u8, Option<FaultFixed>), FaultError> {
        let mut fixed = None;
        loop {
            if let Some(t) = space.translate(VirtAddr::new(addr)) {
                let frame = PhysFrame::containing_address(t.phys);
                return Ok((self.ram.bytes(frame)[(addr % PAGE_SIZE) as usize], fixed));
            }
            assert!(fixed.is_none(), "a fault fixed nothing");
            fixed = Some(self.fault(space, addr, Access::Read)?);
        }
    }

    /// A user write of `value` over the whole page of `addr` through the
    /// "MMU": faults until the page is present and writable.
    pub fn write_page(
        &mut self,
        space: &mut AddressSpace<OffsetMem>,
        addr: u64,
        value: u8,
    ) -> Result<Option<FaultFixed>, FaultError> {
        let mut fixed = None;
        loop {
            match space.translate(VirtAddr::new(addr)) {
                Some(t) if t.flags.contains(WRITABLE) => {
                    let frame = PhysFrame::containing_address(t.phys);
                    self.ram.bytes_mut(frame).fill(value);
                    return Ok(fixed);
                }
                _ => {
                    assert!(fixed.is_none(), "a fault fixed nothing");
                    fixed = Some(self.fault(space, addr, Access::Write)?);
                }
            }
        }
    }

    /// Every frame back, every count zero, the kernel's mappings intact.
    pub fn assert_clean(&self) {
        assert_eq!(self.ram.outstanding, self.baseline, "frames leaked");
        for virt in KERNEL_PAGES {
            assert!(self.kernel.translate(va(virt)).is_some());
        }
        assert!(self
            .meta
            .iter()
            .all(|m| m.refs() == 0 && m.map_count() == 0));
    }

    /// Data frames out (neither kernel nor any of `spaces`' tables).
    pub fn data_frames(&self, spaces: &[&AddressSpace<OffsetMem>]) -> u64 {
        let tables: u64 = spaces.iter().map(|s| s.table_frames()).sum();
        (self.ram.outstanding.len() - self.baseline.len()) as u64 - tables
    }
}

/// The frame table over a world's RAM.
pub(super) fn frames(meta: &[FrameMeta]) -> FrameTable<'_> {
    FrameTable::new(meta, frame_at(FAKE_BASE))
}

pub(super) fn frame_at(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

pub(super) fn user(offset: u64) -> u64 {
    USER_START + offset
}

fn va(address: u64) -> VirtAddr {
    VirtAddr::new(address)
}

/// The PML4 of `space` as raw entries.
fn pml4_entries(world: &World, space: &AddressSpace<OffsetMem>) -> Vec<u64> {
    pml4_of(world, space.pml4())
}

fn pml4_of(world: &World, frame: PhysFrame) -> Vec<u64> {
    // SAFETY: a PML4 in fake RAM, only read while nothing changes it.
    let table: &PageTable = unsafe { &*world.mem.table(frame) };
    table
        .iter()
        .map(|e| e.addr().as_u64() | e.flags().bits())
        .collect()
}

#[test]
fn a_new_space_shares_exactly_the_kernel_entries() {
    let mut world = World::new();
    let kernel = pml4_of(&world, FakeRam::first_frame());
    let space = world.space();
    let entries = pml4_entries(&world, &space);
    assert_ne!(kernel[0], 0);
    assert_ne!(kernel[256], 0);
    assert_ne!(kernel[384], 0);
    assert_eq!(entries[0], kernel[0]);
    assert_eq!(entries[256..], kernel[256..]);
    assert!(entries[1..256].iter().all(|&entry| entry == 0));
    assert_eq!((space.table_frames(), space.resident_pages()), (1, 0));
    assert_eq!(
        space.translate(va(HEAP_START)),
        None,
        "kernel addresses are not user ones"
    );
    world.destroy(space);
    world.assert_clean();
}

#[test]
fn demand_paging_takes_one_zeroed_frame_per_touched_page() {
    let mut world = World::new();
    let mut space = world.space();
    let len = 4096 * PAGE_SIZE;
    space.reserve(va(user(0)), len, Perms::READ_WRITE).unwrap();
    assert_eq!(world.data_frames(&[&space]), 0, "reserving maps nothing");
    let touched = [0u64, 1, 7, 511, 512, 2000, 4095];
    for (n, &page) in touched.iter().enumerate() {
        let addr = user(page * PAGE_SIZE + 123);
        let (byte, fixed) = world.read(&mut space, addr).unwrap();
        // TrackedRam fills new frames with junk: zero means zeroed.
        assert_eq!((byte, fixed), (0, Some(FaultFixed::DemandZero)));
        let t = space.translate(va(addr)).unwrap();
        assert!(world
            .ram
            .bytes(frame_at(t.phys.as_u64()))
            .iter()
            .all(|&b| b == 0));
        assert!(t.flags.contains(USER | WRITABLE | NX | PRESENT));
        assert_eq!(world.data_frames(&[&space]), n as u64 + 1);
        // Again: no fault, no frame.
        assert_eq!(world.read(&mut space, addr).unwrap(), (0, None));
    }
    assert_eq!(space.resident_pages(), touched.len() as u64);
    // PML4, one PDPT, one PD, PTs for pages 0..511, 512..1023, 2000 and 4095.
    assert_eq!(space.table_frames(), 1 + 1 + 1 + 4);
    // User leaves have USER on every level.
    for step in space.mapper.walk(va(user(2000 * PAGE_SIZE))).steps() {
        assert!(step.flags.contains(USER | PRESENT));
    }
    let tables = space.table_frames();
    let done = world.destroy(space);
    assert_eq!(
        done,
        Teardown {
            pages_unmapped: touched.len() as u64,
            pages_freed: touched.len() as u64,
            tables_freed: tables,
            inconsistencies: 0,
        }
    );
    world.assert_clean();
    assert!(world.tlb.pages.is_empty() && world.tlb.full == 0);
}

#[test]
fn every_refusal_is_distinct_and_changes_nothing() {
    let mut world = World::new();
    let mut space = world.space();
    space
        .reserve(va(user(0)), 4 * PAGE_SIZE, Perms::READ)
        .unwrap();
    space
        .reserve(va(user(0x10_0000)), 4 * PAGE_SIZE, Perms::READ_WRITE)
        .unwrap();
    world.read(&mut space, user(0)).unwrap();
    world.write_page(&mut space, user(0x10_0000), 7).unwrap();
    let regions = space.regions().as_slice().to_vec();
    let snapshot = world.ram.snapshot();
    let outstanding = world.ram.outstanding.clone();
    let faults = [
        (
            user(0x8000),
            Access::Read,
            FaultError::NoRegion {
                addr: va(user(0x8000)),
            },
        ),
        (
            HEAP_START,
            Access::Read,
            FaultError::NoRegion {
                addr: va(HEAP_START),
            },
        ),
        (
            user(0x10),
            Access::Write,
            FaultError::NotPermitted {
                addr: va(user(0x10)),
                access: Access::Write,
                perms: Perms::READ,
            },
        ),
        (
            user(0x10_1000),
            Access::Execute,
            FaultError::NotPermitted {
                addr: va(user(0x10_1000)),
                access: Access::Execute,
                perms: Perms::READ_WRITE,
            },
        ),
    ];
    for (addr, access, error) in faults {
        assert_eq!(world.fault(&mut space, addr, access), Err(error));
    }
    // Out of memory on a fault: refused, nothing taken.
    world.ram.budget = Some(0);
    assert_eq!(
        world.fault(&mut space, user(0x10_2000), Access::Write),
        Err(FaultError::OutOfMemory)
    );
    world.ram.budget = None;
    let bad_maps = [
        (user(0x3000), 2 * PAGE_SIZE, MmError::RegionOverlap),
        (user(0x5000) + 12, PAGE_SIZE, MmError::Misaligned),
        (user(0x5000), 100, MmError::Misaligned),
        (user(0x5000), 0, MmError::EmptyRange),
        (
            USER_START - PAGE_SIZE,
            2 * PAGE_SIZE,
            MmError::OutsideUserRange,
        ),
        (HEAP_START, PAGE_SIZE, MmError::OutsideUserRange),
        (USER_TOP, PAGE_SIZE, MmError::OutsideUserRange),
    ];
    for (start, len, error) in bad_maps {
        assert_eq!(space.reserve(va(start), len, Perms::READ), Err(error));
        let table = frames(&world.meta);
        // SAFETY: Anonymous: no condition.
        let mapped = unsafe {
            space.map(
                va(start),
                len,
                Perms::READ,
                RegionKind::Shared,
                &mut world.ram,
                &table,
                &mut world.tlb,
            )
        };
        assert_eq!(mapped, Err(error));
    }
    assert_eq!(Perms::new(true, true, true), Err(MmError::WriteAndExecute));
    let table = frames(&world.meta);
    assert_eq!(
        space.unmap(
            va(user(1)),
            PAGE_SIZE,
            &mut world.ram,
            &table,
            &mut world.tlb
        ),
        Err(MmError::Misaligned)
    );
    assert_eq!(
        space.protect(va(user(0x8000)), PAGE_SIZE, Perms::READ, &mut world.tlb),
        Err(MmError::NoRegion)
    );
    assert_eq!(space.regions().as_slice(), &regions[..]);
    assert_eq!(world.ram.snapshot(), snapshot);
    assert_eq!(world.ram.outstanding, outstanding);
    world.destroy(space);
    world.assert_clean();
}

#[test]
fn two_spaces_see_their_own_data_at_the_same_address() {
    let mut world = World::new();
    let (mut a, mut b) = (world.space(), world.space());
    for space in [&mut a, &mut b] {
        space
            .reserve(va(user(0)), PAGE_SIZE, Perms::READ_WRITE)
            .unwrap();
    }
    world.write_page(&mut a, user(0), 0xAA).unwrap();
    world.write_page(&mut b, user(0), 0xBB).unwrap();
    assert_eq!(world.read(&mut a, user(5)).unwrap().0, 0xAA);
    assert_eq!(world.read(&mut b, user(5)).unwrap().0, 0xBB);
    assert_ne!(a.translate(va(user(0))), b.translate(va(user(0))));
    world.destroy(a);
    world.destroy(b);
    world.assert_clean();
}

#[test]
fn a_thousand_create_destroy_cycles_leak_nothing() {
    let mut world = World::new();
    for cycle in 0..1000u64 {
        let mut space = world.space();
        let start = user((cycle % 5) << 39);
        space
            .reserve(va(start), 64 * PAGE_SIZE, Perms::READ_WRITE)
            .unwrap();
        world
            .write_page(&mut space, start + (cycle % 64) * PAGE_SIZE, 1)
            .unwrap();
        world.read(&mut space, start).unwrap();
        if cycle % 3 == 0 {
            let pml4 = world.ram.allocate_frame().unwrap();
            let table = frames(&world.meta);
            // SAFETY: a fresh frame of this RAM.
            let child =
                unsafe { space.clone_cow(pml4, &mut world.ram, &table, &mut world.tlb) }.unwrap();
            world.destroy(child);
        }
        let done = world.destroy(space);
        assert_eq!(done.inconsistencies, 0);
        world.assert_clean();
    }
}

#[test]
fn fixed_regions_map_their_frames_and_never_free_them() {
    let mut world = World::new();
    let mut space = world.space();
    let device: Vec<PhysFrame> = (0..3)
        .map(|_| world.ram.allocate_frame().unwrap())
        .collect();
    // LIFO: the frames come out in descending order; take the lowest three
    // consecutive ones.
    let base = device.iter().map(|f| f.start_address()).min().unwrap();
    world.ram.bytes_mut(frame_at(base.as_u64())).fill(0x5A);
    let table = frames(&world.meta);
    // SAFETY: the test owns the three frames and reads them only through
    // the mapping.
    unsafe {
        space.map(
            va(user(0x20_0000)),
            3 * PAGE_SIZE,
            Perms::READ_WRITE,
            RegionKind::Fixed { phys: base },
            &mut world.ram,
            &table,
            &mut world.tlb,
        )
    }
    .unwrap();
    assert_eq!(space.resident_pages(), 3);
    for page in 0..3u64 {
        let t = space
            .translate(va(user(0x20_0000 + page * PAGE_SIZE)))
            .unwrap();
        assert_eq!(t.phys, base + page * PAGE_SIZE);
        assert!(t.flags.contains(USER | WRITABLE | NX));
    }
    assert_eq!(
        world.read(&mut space, user(0x20_0000)).unwrap(),
        (0x5A, None)
    );
    let pml4 = world.ram.allocate_frame().unwrap();
    let table = frames(&world.meta);
    // SAFETY: a fresh frame of this RAM.
    let child = unsafe { space.clone_cow(pml4, &mut world.ram, &table, &mut world.tlb) }.unwrap();
    assert_eq!(
        child.translate(va(user(0x20_1000))),
        space.translate(va(user(0x20_1000))),
        "Fixed pages are the same frames, writable, in the clone"
    );
    let done = space
        .unmap(
            va(user(0x20_1000)),
            PAGE_SIZE,
            &mut world.ram,
            &table,
            &mut world.tlb,
        )
        .unwrap();
    assert_eq!((done.pages_unmapped, done.pages_freed), (1, 0));
    assert_eq!(world.tlb.pages, [user(0x20_1000)]);
    assert_eq!(space.regions().len(), 2);
    world.destroy(child);
    world.destroy(space);
    for frame in device {
        assert!(world
            .ram
            .outstanding
            .contains(&frame.start_address().as_u64()));
        // SAFETY: the test's own frames, mapped nowhere any more.
        unsafe { world.ram.deallocate_frame(frame) };
    }
    world.assert_clean();
}

#[test]
fn shared_regions_are_eager_and_stay_shared_across_a_clone() {
    let mut world = World::new();
    let mut space = world.space();
    let table = frames(&world.meta);
    // SAFETY: Shared: no condition.
    unsafe {
        space.map(
            va(user(0)),
            2 * PAGE_SIZE,
            Perms::READ_WRITE,
            RegionKind::Shared,
            &mut world.ram,
            &table,
            &mut world.tlb,
        )
    }
    .unwrap();
    assert_eq!(space.resident_pages(), 2);
    assert_eq!(world.read(&mut space, user(PAGE_SIZE)).unwrap(), (0, None));
    let pml4 = world.ram.allocate_frame().unwrap();
    let table = frames(&world.meta);
    // SAFETY: a fresh frame of this RAM.
    let mut child =
        unsafe { space.clone_cow(pml4, &mut world.ram, &table, &mut world.tlb) }.unwrap();
    assert_eq!(world.write_page(&mut child, user(0), 9).unwrap(), None);
    assert_eq!(world.read(&mut space, user(0)).unwrap(), (9, None));
    world.destroy(space);
    assert_eq!(world.read(&mut child, user(0)).unwrap(), (9, None));
    let done = world.destroy(child);
    assert_eq!(done.pages_freed, 2);
    world.assert_clean();

    // Out of frames half-way: nothing stays.
    let mut space = world.space();
    world.ram.budget = Some(5);
    let table = frames(&world.meta);
    // SAFETY: Shared: no condition.
    let result = unsafe {
        space.map(
            va(user(0)),
            8 * PAGE_SIZE,
            Perms::READ,
            RegionKind::Shared,
            &mut world.ram,
            &table,
            &mut world.tlb,
        )
    };
    world.ram.budget = None;
    assert_eq!(result, Err(MmError::OutOfFrames));
    assert!(space.regions().is_empty());
    assert_eq!((space.resident_pages(), space.table_frames()), (0, 1));
    world.destroy(space);
    world.assert_clean();
}

#[test]
fn protect_changes_present_pages_and_cow_pages_wait_for_their_fault() {
    let mut world = World::new();
    let mut space = world.space();
    space
        .reserve(va(user(0)), 4 * PAGE_SIZE, Perms::READ_WRITE)
        .unwrap();
    world.write_page(&mut space, user(0), 1).unwrap();
    world.write_page(&mut space, user(PAGE_SIZE), 2).unwrap();
    space
        .protect(va(user(0)), 2 * PAGE_SIZE, Perms::READ, &mut world.tlb)
        .unwrap();
    assert_eq!(world.tlb.pages, [user(0), user(PAGE_SIZE)]);
    assert!(matches!(
        world.write_page(&mut space, user(0), 3),
        Err(FaultError::NotPermitted { .. })
    ));
    assert_eq!(space.regions().len(), 2);
    space
        .protect(va(user(0)), PAGE_SIZE, Perms::READ_EXEC, &mut world.tlb)
        .unwrap();
    let t = space.translate(va(user(0))).unwrap();
    assert!(!t.flags.contains(NX) && !t.flags.contains(WRITABLE));
    // Back to writable: the page stays read-only until it is written,
    // then is taken over in place (its frame is not shared).
    space
        .protect(va(user(0)), PAGE_SIZE, Perms::READ_WRITE, &mut world.tlb)
        .unwrap();
    let before = space.translate(va(user(0))).unwrap();
    assert!(!before.flags.contains(WRITABLE));
    assert_eq!(
        world.write_page(&mut space, user(0), 4),
        Ok(Some(FaultFixed::CowTakenOver))
    );
    assert_eq!(space.translate(va(user(0))).unwrap().phys, before.phys);
    world.destroy(space);
    world.assert_clean();
}

#[test]
fn populate_fills_pages_now_with_the_rest_zeroed() {
    let mut world = World::new();
    let mut space = world.space();
    space
        .reserve(va(user(0)), 4 * PAGE_SIZE, Perms::READ_EXEC)
        .unwrap();
    space
        .reserve(va(user(0x10_0000)), PAGE_SIZE, Perms::READ)
        .unwrap();
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
    let start = user(0x0FF0);
    let table = frames(&world.meta);
    space
        .populate(va(start), &bytes, &mut world.ram, &table)
        .unwrap();
    // Pages 0, 1 and 2 hold the bytes; page 3 is untouched.
    assert_eq!(space.resident_pages(), 3);
    assert!(space.translate(va(user(3 * PAGE_SIZE))).is_none());
    for (offset, &byte) in bytes.iter().enumerate() {
        assert_eq!(
            world.read(&mut space, start + offset as u64).unwrap(),
            (byte, None)
        );
    }
    assert_eq!(world.read(&mut space, user(0)).unwrap(), (0, None));
    assert_eq!(world.read(&mut space, start + 5000).unwrap(), (0, None));
    let t = space.translate(va(user(0))).unwrap();
    assert!(!t.flags.contains(WRITABLE) && !t.flags.contains(NX));
    // Present private pages are written in place.
    let table = frames(&world.meta);
    space
        .populate(va(user(8)), &[0xEE], &mut world.ram, &table)
        .unwrap();
    assert_eq!(world.read(&mut space, user(8)).unwrap(), (0xEE, None));
    // Refused: in no region, across a hole.
    let before = world.ram.snapshot();
    let table = frames(&world.meta);
    assert_eq!(
        space.populate(va(user(0x8000)), &[1], &mut world.ram, &table),
        Err(MmError::NoRegion)
    );
    assert_eq!(
        space.populate(va(user(0x3FFF)), &[1, 2], &mut world.ram, &table),
        Err(MmError::NoRegion)
    );
    assert_eq!(world.ram.snapshot(), before);
    world.destroy(space);
    world.assert_clean();
}

#[test]
fn errors_and_outcomes_read_well() {
    let not_permitted = FaultError::NotPermitted {
        addr: va(user(0x1000)),
        access: Access::Write,
        perms: Perms::READ,
    };
    assert_eq!(
        not_permitted.to_string(),
        "write at 0x8000001000 not permitted (region is r--)"
    );
    assert_eq!(
        FaultError::NoRegion { addr: va(user(0)) }.to_string(),
        "no region at 0x8000000000"
    );
    assert_eq!(FaultError::OutOfMemory.to_string(), "out of memory");
    assert_eq!(
        FaultFixed::CowCopied.to_string(),
        "copy-on-write page copied"
    );
    assert_eq!(Access::from_error_code(0b10), Access::Write);
    assert_eq!(Access::from_error_code(0b1_0000), Access::Execute);
    assert_eq!(Access::from_error_code(0b101), Access::Read);
}
