//! The direct map: all physical RAM mapped at `DIRECT_MAP_OFFSET` with the
//! largest pages the CPU has (1 GiB, else 2 MiB), writable, never
//! executable. Built into the boot PML4 with page tables from the
//! bootstrap pool, before the PMM exists; afterwards any frame, page
//! tables included, is reachable at `phys_to_virt(frame)`.

use x86_64::structures::paging::{PageTable, PageTableFlags as Flags, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use super::bootstrap;
use crate::mm::layout::{BOOT_PML4, DIRECT_MAP_OFFSET, GIANT_PAGE_SIZE, HUGE_PAGE_SIZE};
use crate::mm::MmError;

/// What was built.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap {
    /// Bytes of physical address space mapped from 0.
    pub size: u64,
    /// Whether 1 GiB pages were used.
    pub gigabyte_pages: bool,
    /// Page-table frames taken from the bootstrap pool.
    pub table_frames: u64,
}

/// Identity-mapped view of a pool or boot table frame.
fn table(frame: PhysFrame<Size4KiB>) -> &'static mut PageTable {
    // SAFETY: boot tables and pool frames lie below 1 MiB, identity-mapped
    // by the boot page tables; each is a page-aligned 4 KiB page-table
    // frame, and only this module writes the direct map's tables, once,
    // during single-threaded boot.
    unsafe { &mut *(frame.start_address().as_u64() as *mut PageTable) }
}

/// The table the entry points to, allocating and linking a new one if the
/// entry is empty.
fn next_table(
    entry: &mut x86_64::structures::paging::page_table::PageTableEntry,
    frames: &mut u64,
) -> Result<&'static mut PageTable, MmError> {
    if entry.is_unused() {
        let frame = bootstrap::alloc_zeroed().ok_or(MmError::OutOfFrames)?;
        *frames += 1;
        entry.set_frame(frame, Flags::PRESENT | Flags::WRITABLE);
    }
    let frame = entry.frame().map_err(|_| MmError::HugePageConflict)?;
    Ok(table(frame))
}

/// Maps physical `[0, size)` (rounded up to 1 GiB) at `DIRECT_MAP_OFFSET`.
pub fn init(size: u64, gigabyte_pages: bool) -> Result<DirectMap, MmError> {
    let leaf =
        Flags::PRESENT | Flags::WRITABLE | Flags::HUGE_PAGE | Flags::GLOBAL | Flags::NO_EXECUTE;
    let gigabytes = size.div_ceil(GIANT_PAGE_SIZE);
    let pml4 = table(PhysFrame::containing_address(PhysAddr::new(BOOT_PML4)));
    let mut frames = 0;
    for gigabyte in 0..gigabytes {
        let virt = DIRECT_MAP_OFFSET + gigabyte * GIANT_PAGE_SIZE;
        let pml4_index = ((virt >> 39) & 511) as usize;
        let pdpt_index = ((virt >> 30) & 511) as usize;
        let pdpt = next_table(&mut pml4[pml4_index], &mut frames)?;
        let physical = gigabyte * GIANT_PAGE_SIZE;
        if gigabyte_pages {
            pdpt[pdpt_index].set_addr(PhysAddr::new(physical), leaf);
            continue;
        }
        let directory = next_table(&mut pdpt[pdpt_index], &mut frames)?;
        for (index, entry) in directory.iter_mut().enumerate() {
            entry.set_addr(
                PhysAddr::new(physical + index as u64 * HUGE_PAGE_SIZE),
                leaf,
            );
        }
    }
    // Only empty entries were filled: no stale TLB entry can exist.
    Ok(DirectMap {
        size: gigabytes * GIANT_PAGE_SIZE,
        gigabyte_pages,
        table_frames: frames,
    })
}
