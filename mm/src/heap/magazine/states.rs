//! One state byte per 16-byte granule of the heap, shared by every CPU:
//! whether the slot starting there was handed out by a magazine, or sits
//! in one, and its size class. It is what lets a free that reaches a
//! magazine be checked without the heap's lock.
//!
//! ```text
//! bits 0-1: OTHER (no magazine knows the granule), HANDED (a magazine
//!           handed the slot out; not freed since), CACHED (in a magazine)
//! bits 2-7: the slot's size class (HANDED and CACHED only)
//! ```
//!
//! Transitions, each by one party at a time:
//!
//! | from | to | who | how |
//! |---|---|---|---|
//! | OTHER | CACHED | a refill, under the heap lock | store |
//! | CACHED | HANDED | the magazine's owner (pop) | store |
//! | HANDED | CACHED | any CPU freeing the slot | compare-exchange: one winner |
//! | HANDED | OTHER | the heap-lock free path, `realloc` | compare-exchange |
//! | CACHED | OTHER | the magazine's owner (flush, drain), under the heap lock | store |
//!
//! A CACHED byte changes only at the hands of the one magazine holding
//! the slot, so its owner may use plain stores; the HANDED byte is the one
//! every CPU may race for, so leaving HANDED is always a compare-exchange.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU8, Ordering};

use super::super::tlsf::GRANULE;

const OTHER: u8 = 0;
const HANDED: u8 = 1;
const CACHED: u8 = 2;
const STATE: u8 = 0b11;
const CLASS_SHIFT: u32 = 2;
/// Classes a state byte can name.
pub(super) const CLASS_LIMIT: usize = 1 << (u8::BITS - CLASS_SHIFT);

/// State bytes a heap of at most `max` bytes needs.
pub const fn state_bytes(max: usize) -> usize {
    max / GRANULE
}

/// What a free found in a pointer's state byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// It was HANDED and is now CACHED, claimed by this caller: a slot of
    /// this class.
    Ours(usize),
    /// It is in a magazine already: a double free.
    Cached,
    /// No magazine handed it out: the heap decides (under its lock).
    Heap,
}

/// The state bytes of one heap (see the module doc).
pub struct SlotStates<'a> {
    bytes: &'a [AtomicU8],
    /// The heap's start: granule 0.
    base: usize,
}

impl<'a> SlotStates<'a> {
    /// States for the heap starting at `base`, one per byte of `bytes`
    /// ([`state_bytes`] of the heap's maximum size), all set to OTHER.
    pub fn new(bytes: &'a [AtomicU8], base: usize) -> Self {
        for byte in bytes {
            byte.store(OTHER, Ordering::Relaxed);
        }
        Self { bytes, base }
    }

    /// The byte of the granule starting at `address`, if it is one.
    #[inline(always)]
    fn at(&self, address: usize) -> Option<&AtomicU8> {
        let offset = address.wrapping_sub(self.base);
        if !offset.is_multiple_of(GRANULE) {
            return None;
        }
        self.bytes.get(offset / GRANULE)
    }

    /// The byte of a slot the heap handed to a magazine (inside the heap).
    #[inline(always)]
    fn slot(&self, address: usize) -> &AtomicU8 {
        &self.bytes[(address - self.base) / GRANULE]
    }

    /// A slot of `class` a refill put into a magazine (OTHER -> CACHED).
    /// Release: a CPU that later sees the byte sees the class too.
    #[inline(always)]
    pub(super) fn cache(&self, address: usize, class: usize) {
        let byte = self.slot(address);
        debug_assert_eq!(byte.load(Ordering::Relaxed) & STATE, OTHER);
        byte.store(CACHED | (class as u8) << CLASS_SHIFT, Ordering::Release);
    }

    /// A slot of `class` its magazine hands out (CACHED -> HANDED).
    /// Relaxed: whoever frees it got the pointer from the caller, through
    /// whatever synchronisation passed the pointer on.
    #[inline(always)]
    pub(super) fn hand_out(&self, address: usize, class: usize) {
        let byte = self.slot(address);
        debug_assert_eq!(byte.load(Ordering::Relaxed) & STATE, CACHED);
        byte.store(HANDED | (class as u8) << CLASS_SHIFT, Ordering::Relaxed);
    }

    /// A slot leaving its magazine for the heap (CACHED -> OTHER), under
    /// the heap lock.
    #[inline(always)]
    pub(super) fn release(&self, address: usize) {
        let byte = self.slot(address);
        debug_assert_eq!(byte.load(Ordering::Relaxed) & STATE, CACHED);
        byte.store(OTHER, Ordering::Release);
    }

    /// A free's check: claims a HANDED slot for a magazine (one caller
    /// wins even if several free it at once), or says why not.
    #[inline(always)]
    pub(super) fn claim(&self, address: usize) -> Claim {
        let Some(byte) = self.at(address) else {
            return Claim::Heap;
        };
        let seen = byte.load(Ordering::Relaxed);
        match seen & STATE {
            HANDED => match byte.compare_exchange(
                seen,
                seen & !STATE | CACHED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => Claim::Ours((seen >> CLASS_SHIFT) as usize),
                // The byte changed under us: another free of the same
                // pointer won (or the slot went back and was reused
                // since): this free is the second.
                Err(_) => Claim::Cached,
            },
            CACHED => Claim::Cached,
            _ => Claim::Heap,
        }
    }

    /// For the heap-lock paths (free, realloc): makes the slot at
    /// `address` OTHER if a magazine handed it out (HANDED), so the heap
    /// may take it; `Err(())` if it sits in a magazine (a double free).
    /// Anything else is left for the heap to judge.
    pub(super) fn claim_for_heap(&self, address: usize) -> Result<(), ()> {
        let Some(byte) = self.at(address) else {
            return Ok(());
        };
        loop {
            let seen = byte.load(Ordering::Acquire);
            match seen & STATE {
                CACHED => return Err(()),
                HANDED => {
                    if byte
                        .compare_exchange(seen, OTHER, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(());
                    }
                    // A magazine free won the race: look again.
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether the slot at `address` sits in a magazine, with `class`
    /// (for checks).
    pub(super) fn is_cached(&self, address: usize, class: usize) -> bool {
        self.at(address).is_some_and(|byte| {
            byte.load(Ordering::Acquire) == CACHED | (class as u8) << CLASS_SHIFT
        })
    }
}
