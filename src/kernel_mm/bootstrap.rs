//! The bootstrap frame pool: usable frames in 0x10000-0x100000, which the
//! boot page tables identity-map. Page tables needed before the direct map
//! exists come from here, as the original design intends; every frame is
//! tracked by the same [`FrameAllocator`] as the main PMM, so none leaks.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use crate::boot::BootInfo;
use crate::sync::IrqMutex;
use mm::layout::{BOOTSTRAP_POOL_END, BOOTSTRAP_POOL_START, DIRECT_MAP_OFFSET, PAGE_SIZE};
use mm::pmm::{
    storage_words_within, usable_ranges, FrameAllocator, InitError, PhysRange, ReservationList,
    Stats,
};
use mm::MmError;

/// Allocator words for the pool, whatever part of the window is usable.
const POOL_WORDS: usize = storage_words_within(BOOTSTRAP_POOL_START, BOOTSTRAP_POOL_END);

static POOL: IrqMutex<Option<FrameAllocator<'static>>> = IrqMutex::new(None);
/// The pool's bitmap; borrowed once, by `init`, for the pool allocator.
static mut STORAGE: [u64; POOL_WORDS] = [0; POOL_WORDS];
static STORAGE_TAKEN: AtomicBool = AtomicBool::new(false);
/// Where pool frames are visible: at their identity address until the
/// direct map exists, then through it (the low identity map is trimmed
/// once the kernel is protected, so the pool must not rely on it).
static VIEW_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Why the pool could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The memory map's usable RAM in 0x10000-0x100000 is split into more
    /// ranges than the pool tracks.
    TooFragmented,
    /// The frame allocator refused what it was given (no usable RAM in
    /// the window at all, for one).
    Allocator(InitError),
    /// `init` ran twice.
    AlreadyInitialised,
}

/// Builds the pool from the usable parts of the window, minus every
/// reservation (GRUB may put its information structure or a module here).
pub fn init(info: &BootInfo<'_>, reservations: &ReservationList) -> Result<Stats, PoolError> {
    let entries = super::map_entries(info, super::is_available);
    let window = PhysRange {
        start: BOOTSTRAP_POOL_START,
        end: BOOTSTRAP_POOL_END,
    };
    let usable = usable_ranges(entries, window).map_err(|_| PoolError::TooFragmented)?;
    if STORAGE_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(PoolError::AlreadyInitialised);
    }
    let storage = &raw mut STORAGE;
    // SAFETY: the swap above lets exactly one caller reach this line, so
    // this is the only reference to STORAGE ever made; it goes to the pool
    // allocator for the rest of the kernel's life.
    let words: &'static mut [u64; POOL_WORDS] = unsafe { &mut *storage };
    let allocator = FrameAllocator::new(usable, reservations.as_slice(), words)
        .map_err(PoolError::Allocator)?;
    let stats = allocator.stats();
    *POOL.lock() = Some(allocator);
    Ok(stats)
}

/// Allocates a frame from the pool (contents undefined).
pub fn alloc() -> Option<PhysFrame<Size4KiB>> {
    POOL.lock().as_mut()?.alloc_page()
}

/// Allocates a zeroed frame from the pool.
pub fn alloc_zeroed() -> Option<PhysFrame<Size4KiB>> {
    let frame = alloc()?;
    let view = frame.start_address().as_u64() + VIEW_OFFSET.load(Ordering::Acquire);
    // SAFETY: pool frames are RAM below 1 MiB, reachable at their identity
    // address while the boot map holds, and through the direct map (which
    // maps all RAM) once `use_direct_map` ran; the frame was just handed to
    // us exclusively.
    unsafe { core::ptr::write_bytes(view as *mut u8, 0, PAGE_SIZE as usize) };
    Some(frame)
}

/// From now on reach pool frames through the direct map. Called once the
/// direct map covers all RAM, before the low identity map is trimmed.
pub fn use_direct_map() {
    VIEW_OFFSET.store(DIRECT_MAP_OFFSET, Ordering::Release);
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
