//! The bootstrap frame pool: usable frames in 0x10000-0x100000, which the
//! boot page tables identity-map. Page tables needed before the direct map
//! exists come from here, as the original design intends; every frame is
//! tracked by the same [`FrameAllocator`] as the main PMM, so none leaks.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use crate::boot::BootInfo;
use crate::mm::layout::{BOOTSTRAP_POOL_END, BOOTSTRAP_POOL_START};
use crate::mm::pmm::{bitmap::storage_words, usable_ranges, FrameAllocator, PhysRange, Stats};
use crate::mm::MmError;
use crate::sync::IrqMutex;

/// Frames in the pool window.
const POOL_FRAMES: usize = ((BOOTSTRAP_POOL_END - BOOTSTRAP_POOL_START) / 4096) as usize;
/// Bitmap words for the pool, whatever part of the window is usable.
const POOL_WORDS: usize = storage_words(POOL_FRAMES);

static POOL: IrqMutex<Option<FrameAllocator<'static>>> = IrqMutex::new(None);
/// The pool's bitmap; borrowed once, by `init`, for the pool allocator.
static mut STORAGE: [u64; POOL_WORDS] = [0; POOL_WORDS];
static STORAGE_TAKEN: AtomicBool = AtomicBool::new(false);

/// Why the pool could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The memory map has no usable RAM in 0x10000-0x100000.
    NoUsableMemory,
    /// `init` ran twice.
    AlreadyInitialised,
}

/// Builds the pool from the usable parts of the window.
pub fn init(info: &BootInfo<'_>) -> Result<Stats, PoolError> {
    let entries = super::map_entries(info);
    let window = PhysRange {
        start: BOOTSTRAP_POOL_START,
        end: BOOTSTRAP_POOL_END,
    };
    // The window holds at most 240 frames, far below the set's capacity.
    let usable = usable_ranges(entries, window).map_err(|_| PoolError::NoUsableMemory)?;
    if STORAGE_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(PoolError::AlreadyInitialised);
    }
    let storage = &raw mut STORAGE;
    // SAFETY: the swap above lets exactly one caller reach this line, so
    // this is the only reference to STORAGE ever made; it goes to the pool
    // allocator for the rest of the kernel's life.
    let words: &'static mut [u64; POOL_WORDS] = unsafe { &mut *storage };
    let allocator =
        FrameAllocator::new(usable, &[], words).map_err(|_| PoolError::NoUsableMemory)?;
    let stats = allocator.stats();
    *POOL.lock() = Some(allocator);
    Ok(stats)
}

/// Allocates a zeroed frame from the pool.
pub fn alloc_zeroed() -> Option<PhysFrame<Size4KiB>> {
    let frame = POOL.lock().as_mut()?.alloc_page()?;
    // SAFETY: pool frames lie below 1 MiB, identity-mapped by the boot
    // tables, and the frame was just handed to us exclusively.
    unsafe { core::ptr::write_bytes(frame.start_address().as_u64() as *mut u8, 0, 4096) };
    Some(frame)
}

/// Returns a frame to the pool.
pub fn free(frame: PhysAddr) -> Result<(), MmError> {
    POOL.lock()
        .as_mut()
        .ok_or(MmError::OutOfRange)?
        .free_page(frame)
}

/// Counters of the pool.
pub fn stats() -> Option<Stats> {
    POOL.lock().as_ref().map(FrameAllocator::stats)
}
