//! In-kernel tests of the heap giving back whole free pages inside it:
//! unmapped (with the shootdown), their frames back in the PMM, and
//! remapped before the heap hands them out again.

use arrayvec::ArrayVec;

use super::{Context, Expect, Test, TestResult};
use crate::kernel_mm::heap::{self, KEEP_MAPPED_FREE, LARGE_FREE};
use crate::kernel_mm::pmm;
use crate::{kassert, kassert_eq, kprintln};

/// The tests of pages given back inside the heap.
pub static TESTS: &[Test] = &[Test {
    name: "heap_release::middle_frees_give_pages_back_and_reuse_remaps",
    run: middle_frees_give_pages_back_and_reuse_remaps,
    expects: Expect::NOTHING,
}];

/// Size and number of the large blocks the test allocates: frees of
/// blocks this large give pages back.
const BLOCK: usize = LARGE_FREE;
const BLOCKS: usize = 8;
/// The freed ones: the middle four.
const MIDDLE: core::ops::Range<usize> = 2..6;

/// `kmalloc` blocks the test holds, freed when it returns (a failed check
/// returns early), so that a failure leaves no heap behind.
struct Held(ArrayVec<*mut u8, BLOCKS>);

impl Drop for Held {
    fn drop(&mut self) {
        for pointer in self.0.drain(..) {
            heap::kfree_or_log(pointer);
        }
    }
}

/// Byte block `index` is filled with.
fn tag(index: usize) -> u8 {
    0x40 + index as u8
}

/// Whether the `BLOCK` bytes at `pointer` all hold `byte`.
fn holds(pointer: *mut u8, byte: u8) -> bool {
    // SAFETY: a live block of BLOCK bytes the test holds.
    let bytes = unsafe { core::slice::from_raw_parts(pointer, BLOCK) };
    bytes.iter().all(|&b| b == byte)
}

/// Allocates a `BLOCK`-byte block filled with `tag(index)` into `held`.
fn allocate(held: &mut Held, index: usize) -> TestResult {
    let pointer = heap::kmalloc(BLOCK);
    kassert!(!pointer.is_null(), "a 1 MiB block does not fit");
    // SAFETY: a fresh block of BLOCK bytes.
    unsafe { pointer.write_bytes(tag(index), BLOCK) };
    held.0.insert(index.min(held.0.len()), pointer);
    Ok(())
}

fn middle_frees_give_pages_back_and_reuse_remaps(_: &Context<'_>) -> TestResult {
    super::need_heap(BLOCKS * BLOCK + 64 * 1024)?;
    let mut held = Held(ArrayVec::new());
    for index in 0..BLOCKS {
        allocate(&mut held, index)?;
    }
    let full = heap::stats();
    let frames_full = pmm::stats().free;
    let released_full = heap::pages_released();
    // Free the middle four: each gives its interior back, or, merged
    // into one free block, the interior of that, all but the free memory
    // the heap keeps mapped.
    let middle: ArrayVec<*mut u8, BLOCKS> = held.0.drain(MIDDLE).collect();
    for pointer in middle {
        kassert_eq!(heap::kfree(pointer), Ok(()));
    }
    let freed = heap::stats();
    let frames_freed = pmm::stats().free;
    let released = heap::pages_released() - released_full;
    kprintln!(
        "    heap mapped {} KiB -> {} KiB, {} pages given back; PMM free frames {} -> {}",
        full.mapped >> 10,
        freed.mapped >> 10,
        released,
        frames_full,
        frames_freed
    );
    let fell = full.mapped - freed.mapped;
    kassert!(
        fell + KEEP_MAPPED_FREE >= MIDDLE.len() * (BLOCK - 3 * 4096),
        "mapped did not fall by the freed blocks' whole pages"
    );
    kassert!(
        released * 4096 >= fell as u64,
        "pages_released disagrees with mapped"
    );
    // Page tables emptied by the unmapping may come back too.
    kassert!(
        frames_freed >= frames_full + (fell / 4096) as u64,
        "the frames are not back in the PMM"
    );
    kassert_eq!(heap::verify(), Ok(()));
    for (index, &pointer) in held.0.iter().enumerate() {
        let index = if index < MIDDLE.start {
            index
        } else {
            index + MIDDLE.len()
        };
        kassert!(holds(pointer, tag(index)), "a kept block changed");
    }
    // Allocate the space again: remapped before use, and it works.
    for index in MIDDLE {
        allocate(&mut held, index)?;
    }
    kassert_eq!(heap::verify(), Ok(()));
    for (index, &pointer) in held.0.iter().enumerate() {
        kassert!(holds(pointer, tag(index)), "a block lost its contents");
    }
    let again = heap::stats();
    kassert_eq!(again.used, full.used);
    kassert_eq!(again.live_allocations, full.live_allocations);
    kassert!(
        again.mapped + 2 * 4096 * MIDDLE.len() >= full.mapped,
        "the reused space is not mapped again"
    );
    drop(held);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}
