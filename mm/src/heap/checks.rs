//! Debug checks: a red zone after every allocation (checked on free and
//! realloc) and freed memory poisoned, to catch overflows and
//! use-after-free.
//!
//! With checks on, an allocation of `size` bytes is laid out as
//! `size` bytes | [`RED_ZONE`] bytes of [`RED`] | ... | size record (the
//! last word of the slot or block's payload).

use core::ptr;

use super::tlsf::WORD;
use super::{Grow, Heap};

/// Byte poisoned into freed memory.
const POISON: u8 = 0xDD;
/// Bytes after each allocation that hold [`RED`].
const RED_ZONE: usize = 16;
/// The red zone's byte.
const RED: u8 = 0xFB;
/// Bytes of the size record at the end of each allocation.
const SIZE_RECORD: usize = WORD;
/// Extra bytes each allocation costs with debug checks on.
pub const DEBUG_OVERHEAD: usize = RED_ZONE + SIZE_RECORD;

/// Whether the heap checks its users: red zones after every block
/// (checked on free and realloc) and freed memory poisoned with 0xDD. The
/// kernel turns them on in debug builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugChecks {
    /// The release paths: no red zones, no poisoning.
    Off,
    /// Red zones and poisoning.
    On,
}

impl DebugChecks {
    /// `On` in builds with debug assertions, else `Off`.
    pub const fn for_this_build() -> Self {
        if cfg!(debug_assertions) {
            DebugChecks::On
        } else {
            DebugChecks::Off
        }
    }

    #[inline]
    pub(super) const fn on(self) -> bool {
        matches!(self, DebugChecks::On)
    }
}

/// Fills the red zone after `size` bytes at `payload` and records `size`
/// in the last word of its `capacity` bytes.
///
/// # Safety
/// `payload` must point at `capacity` writable bytes the caller owns,
/// 8-aligned at their end, with `size + DEBUG_OVERHEAD <= capacity`.
pub(super) unsafe fn arm_at(payload: *mut u8, size: usize, capacity: usize) {
    // SAFETY: the record and the zone lie inside the caller's bytes
    // (contract above); the record's end is 8-aligned.
    unsafe {
        ptr::write(payload.add(capacity - SIZE_RECORD).cast::<usize>(), size);
        ptr::write_bytes(payload.add(size), RED, RED_ZONE);
    }
}

/// Whether the red zone of the allocation at `payload` (of `capacity`
/// bytes, armed by [`arm_at`]) is untouched.
///
/// # Safety
/// `payload` must point at `capacity` readable bytes, 8-aligned at their
/// end, with `DEBUG_OVERHEAD <= capacity`.
pub(super) unsafe fn intact_at(payload: *const u8, capacity: usize) -> bool {
    // SAFETY: the record lies inside the caller's bytes (contract above).
    let recorded = unsafe { ptr::read(payload.add(capacity - SIZE_RECORD).cast::<usize>()) };
    if recorded.saturating_add(DEBUG_OVERHEAD) > capacity {
        return false; // the size record itself was overwritten
    }
    // SAFETY: the red zone lies inside the caller's bytes (checked above).
    let zone = unsafe { core::slice::from_raw_parts(payload.add(recorded), RED_ZONE) };
    zone.iter().all(|&byte| byte == RED)
}

/// Poisons `capacity` bytes at `payload`, about to be freed.
///
/// # Safety
/// `payload` must point at `capacity` writable bytes the caller owns.
pub(super) unsafe fn poison_at(payload: *mut u8, capacity: usize) {
    // SAFETY: the caller's bytes (contract above).
    unsafe { ptr::write_bytes(payload, POISON, capacity) };
}

impl<G: Grow> Heap<'_, G> {
    /// Where the size record of the live allocation at `payload`, which
    /// can hold `capacity` bytes, is kept.
    fn size_record(payload: usize, capacity: usize) -> usize {
        payload + capacity - SIZE_RECORD
    }

    /// The size the live allocation at `payload` (holding `capacity`
    /// bytes) was asked for, as recorded.
    pub(super) fn recorded_size(&self, payload: usize, capacity: usize) -> usize {
        self.tlsf.read(Self::size_record(payload, capacity))
    }

    /// Fills the red zone after `size` bytes at the live allocation
    /// `payload` and records `size`.
    pub(super) fn arm_red_zone(&mut self, payload: usize, size: usize) {
        let capacity = self.capacity(payload, self.slabs.class_at(payload));
        // SAFETY: the allocation holds size + DEBUG_OVERHEAD bytes (see
        // `request_bytes`), all owned by the heap's live block or slot,
        // whose end is 8-aligned.
        unsafe { arm_at(self.tlsf.at(payload), size, capacity) };
    }

    /// Whether the red zone of the live allocation at `payload`, which can
    /// hold `capacity` bytes, is untouched.
    pub(super) fn red_zone_intact(&self, payload: usize, capacity: usize) -> bool {
        // SAFETY: the live allocation's bytes, readable, of at least
        // DEBUG_OVERHEAD bytes (debug checks were on when it was made).
        unsafe { intact_at(self.tlsf.at(payload), capacity) }
    }

    /// Poisons the `capacity` bytes of the live allocation at `payload`,
    /// about to be freed.
    pub(super) fn poison(&mut self, payload: usize, capacity: usize) {
        // SAFETY: the allocation is live and ours until it is freed.
        unsafe { poison_at(self.tlsf.at(payload), capacity) };
    }
}
