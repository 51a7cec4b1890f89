//! Per-frame metadata (`mm::pmm::meta`): an entry for every frame the
//! PMM spans, reached in O(1) from the frame number. Copy-on-write keeps
//! its reference counts here; page migration will keep its state here.
//! The table lives in one contiguous run from the PMM, through the direct
//! map, allocated at boot and never freed.

use spin::Once;

use super::{phys_to_virt, pmm};
use mm::layout::PAGE_SIZE;
use mm::pmm::meta::{FrameMeta, FrameTable};
use mm::MmError;
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

static TABLE: Once<FrameTable<'static>> = Once::new();

/// What the table covers and costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaStats {
    /// Frames with an entry.
    pub frames: u64,
    /// Bytes per entry.
    pub entry_bytes: u64,
    /// Bytes the table takes (whole pages).
    pub bytes: u64,
}

/// Allocates and zeroes the table for the PMM's span. Call once, after
/// the PMM and the direct map.
pub fn init() -> Result<MetaStats, MmError> {
    let (base, frames) = pmm::with(|pmm| {
        let span = pmm.span();
        (span.start, span.pages())
    })
    .ok_or(MmError::OutOfRange)?;
    let bytes = FrameTable::storage_bytes_for(frames);
    let pages = bytes.div_ceil(PAGE_SIZE) as usize;
    let run = pmm::alloc_contiguous(pages, 1)?;
    let pointer = phys_to_virt(run.start_address()).as_mut_ptr::<FrameMeta>();
    // SAFETY: the run was just allocated for this table alone, is mapped
    // by the direct map, is never freed, and is large enough for `frames`
    // entries; zero bytes are a valid `FrameMeta` (all counts 0, owner
    // free), written before the slice is made.
    let entries = unsafe {
        core::ptr::write_bytes(pointer.cast::<u8>(), 0, pages * PAGE_SIZE as usize);
        core::slice::from_raw_parts(pointer, frames as usize)
    };
    let base = PhysFrame::containing_address(PhysAddr::new(base));
    TABLE.call_once(|| FrameTable::new(entries, base));
    Ok(stats().unwrap_or(MetaStats {
        frames,
        entry_bytes: FrameTable::bytes_per_frame() as u64,
        bytes: pages as u64 * PAGE_SIZE,
    }))
}

/// The table (`None` before [`init`]).
pub fn table() -> Option<&'static FrameTable<'static>> {
    TABLE.get()
}

/// Its size.
pub fn stats() -> Option<MetaStats> {
    let table = TABLE.get()?;
    let entry_bytes = FrameTable::bytes_per_frame() as u64;
    let frames = table.len() as u64;
    Some(MetaStats {
        frames,
        entry_bytes,
        bytes: (frames * entry_bytes).div_ceil(PAGE_SIZE) * PAGE_SIZE,
    })
}
