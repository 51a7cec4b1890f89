//! The direct map: every byte of RAM the firmware reports (available and
//! ACPI memory) mapped at `DIRECT_MAP_OFFSET + physical`, writable, never
//! executable, with the largest pages each range allows (1 GiB if the CPU
//! has them, else 2 MiB; 4 KiB at unaligned edges). Holes between RAM
//! (device memory: the framebuffer, the I/O APIC, the local APIC, ROMs)
//! stay unmapped, so no device is ever reached through a write-back
//! cacheable alias; devices are mapped through `vmm::map_device`.
//!
//! Built through the core mapper into the boot PML4 before the PMM exists,
//! with page tables from the bootstrap pool, which the boot tables
//! identity-map; afterwards any frame of RAM, page tables included, is
//! reachable at `phys_to_virt(frame)`.

use core::fmt;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use super::{bootstrap, vmm::CpuTlb};
use crate::boot::info::MAX_REGIONS;
use crate::boot::{BootInfo, MemoryKind};
use mm::layout::{BOOT_PML4, DIRECT_MAP_OFFSET, MMIO_START};
use mm::paging::{Mapper, OffsetMem, GLOBAL, NX, WRITABLE};
use mm::pmm::{usable_ranges, PhysRange, RangeSet};
use mm::MmError;

/// What was built.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap {
    /// Bytes of RAM mapped.
    pub ram: u64,
    /// Separate RAM ranges mapped (the holes between them are not).
    pub ranges: usize,
    /// One past the highest physical address mapped.
    pub end: u64,
    /// Whether 1 GiB pages were allowed.
    pub gigabyte_pages: bool,
    /// Page-table frames taken from the bootstrap pool.
    pub table_frames: u64,
}

/// Why the direct map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectMapError {
    /// The RAM ranges do not fit the normalisation's capacity.
    TooFragmented,
    /// Mapping a range failed (out of pool frames, most likely).
    Map(PhysRange, MmError),
}

impl fmt::Display for DirectMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectMapError::TooFragmented => {
                write!(f, "more than {MAX_REGIONS} separate RAM ranges")
            }
            DirectMapError::Map(range, error) => write!(f, "mapping RAM {range}: {error}"),
        }
    }
}

/// Whether a memory-map entry of this kind is RAM (to be mapped
/// write-back); everything else may be a device.
pub fn is_ram(kind: MemoryKind) -> bool {
    matches!(
        kind,
        MemoryKind::Available | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
    )
}

/// The RAM the direct map covers: whole pages of RAM, where an entry of
/// another kind overlapping RAM wins, below the direct map window's end.
pub fn ram_ranges(info: &BootInfo<'_>) -> Option<RangeSet<MAX_REGIONS>> {
    let entries = super::map_entries(info, is_ram);
    let window = PhysRange {
        start: 0,
        end: MMIO_START - DIRECT_MAP_OFFSET,
    };
    usable_ranges::<MAX_REGIONS>(entries, window).ok()
}

/// Table frames from the bootstrap pool, counted.
struct PoolFrames {
    taken: u64,
}

// SAFETY: the pool hands each frame out once and never one that is reserved.
unsafe impl FrameAllocator<Size4KiB> for PoolFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = bootstrap::alloc()?;
        self.taken += 1;
        Some(frame)
    }
}

impl FrameDeallocator<Size4KiB> for PoolFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // The mapper gives back only frames it took from us in this call.
        if bootstrap::free(frame.start_address()).is_ok() {
            self.taken -= 1;
        }
    }
}

/// Maps every RAM range of the memory map at `DIRECT_MAP_OFFSET`.
pub fn init(info: &BootInfo<'_>, gigabyte_pages: bool) -> Result<DirectMap, DirectMapError> {
    let ram = ram_ranges(info).ok_or(DirectMapError::TooFragmented)?;
    // SAFETY: CR3 holds the boot PML4; it and every table below it (boot
    // tables at 0x1000-0x4FFF, pool frames below 1 MiB) are identity-mapped
    // by the boot tables, so offset 0 reaches them; boot is single-threaded
    // and nothing else changes the tree while this mapper lives.
    let mut mapper = unsafe {
        Mapper::new(
            PhysFrame::containing_address(PhysAddr::new(BOOT_PML4)),
            OffsetMem::new(0),
            gigabyte_pages,
        )
    };
    let mut frames = PoolFrames { taken: 0 };
    for range in ram.as_slice() {
        let phys = PhysAddr::new(range.start);
        // SAFETY: the direct map's window is mapped by nothing else, and it
        // gives the kernel its one general view of RAM, through which
        // every owner of a frame reaches it.
        unsafe {
            mapper.map_range(
                super::phys_to_virt(phys),
                phys,
                range.len(),
                WRITABLE | NX | GLOBAL,
                false,
                &mut frames,
            )
        }
        .map_err(|error| DirectMapError::Map(*range, error))?
        .flush(&mut CpuTlb);
    }
    bootstrap::use_direct_map();
    Ok(DirectMap {
        ram: ram.total(),
        ranges: ram.as_slice().len(),
        end: ram.as_slice().last().map_or(0, |range| range.end),
        gigabyte_pages,
        table_frames: frames.taken,
    })
}
