//! In-kernel tests of the heap: Rust collections, growth to the cap,
//! reuse, and bad frees.

use alloc::boxed::Box;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::hint::black_box;
use core::ptr;

use crate::arch::x86_64::exceptions::{catch_fault, vector};

use super::{Context, Expect, Test, TestResult};
use crate::kernel_mm::{heap, pmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::layout::{HEAP_INITIAL_SIZE, HEAP_MAX_SIZE, HEAP_START};
use mm::MmError;

/// The heap tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "heap::unmapped_heap_page_faults",
        run: unmapped_heap_page_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::box_vec_string_btreemap",
        run: box_vec_string_btreemap,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::vec_of_several_mib_grows_the_heap",
        run: vec_of_several_mib_grows_the_heap,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::a_large_free_gives_pages_back_to_the_pmm",
        run: a_large_free_gives_pages_back,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::growth_stops_at_16_mib_and_heap_keeps_working",
        run: growth_stops_at_the_cap,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::short_lived_allocations_far_beyond_16_mib_reuse_memory",
        run: short_lived_allocations_reuse_memory,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::double_and_foreign_frees_are_detected",
        run: double_and_foreign_frees_are_detected,
        expects: Expect::BAD_FREES,
    },
    Test {
        name: "heap::red_zone_catches_a_one_byte_overflow",
        run: red_zone_catches_a_one_byte_overflow,
        expects: Expect::RED_ZONE.logging(&["kernel_mm::heap"]),
    },
    Test {
        name: "heap::small_objects_pack_into_slab_pages",
        run: small_objects_pack_into_slab_pages,
        expects: Expect::NOTHING,
    },
];

fn box_vec_string_btreemap(_: &Context<'_>) -> TestResult {
    super::need_heap(256 * 1024)?;
    let before = heap::stats();
    {
        let boxed = Box::new(0x1234_5678u64);
        kassert_eq!(*boxed, 0x1234_5678);
        let address = &*boxed as *const u64 as u64;
        kassert!(
            (HEAP_START..HEAP_START + HEAP_MAX_SIZE).contains(&address),
            "Box not on the heap"
        );
        let squares: Vec<u64> = (0..1000).map(|n| n * n).collect();
        kassert_eq!(squares.iter().sum::<u64>(), 332_833_500);
        let mut text = String::from("Incro");
        text.push_str("OS");
        kassert_eq!(text.as_str(), "IncroOS");
        let mut map = BTreeMap::new();
        for key in 0..500u32 {
            map.insert(key, key * 2);
        }
        kassert_eq!(map.get(&250), Some(&500));
        kassert_eq!(heap::verify(), Ok(()));
    }
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.live_allocations, before.live_allocations);
    Ok(())
}

fn vec_of_several_mib_grows_the_heap(_: &Context<'_>) -> TestResult {
    let before = heap::stats();
    let words = 3 * 1024 * 1024 / 8;
    // Growth by doubling holds the old and the new buffer at once.
    super::need_heap(6 * 1024 * 1024)?;
    let mut big: Vec<u64> = Vec::new();
    for n in 0..words as u64 {
        big.push(n ^ 0xA5A5);
    }
    let grown = heap::stats();
    kprintln!(
        "    heap mapped {} KiB -> {} KiB",
        before.mapped >> 10,
        grown.mapped >> 10
    );
    kassert!(
        grown.mapped > HEAP_INITIAL_SIZE as usize,
        "heap did not grow past 1 MiB"
    );
    kassert!(
        big.iter().enumerate().all(|(n, &v)| v == n as u64 ^ 0xA5A5),
        "contents changed while growing"
    );
    drop(big);
    kassert_eq!(heap::stats().used, before.used);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// A 4 MiB buffer grows the heap; freeing it unmaps the pages past what
/// the heap keeps (256 KiB of slack, plus less than the 256 KiB step) and
/// their frames are back in the PMM.
fn a_large_free_gives_pages_back(_: &Context<'_>) -> TestResult {
    const BIG: usize = 4 * 1024 * 1024;
    super::need_heap(BIG + 64 * 1024)?;
    let before = heap::stats();
    let frames_before = pmm::stats().free;
    let released_before = heap::pages_released();
    let mut big: Vec<u8> = Vec::new();
    kassert!(big.try_reserve_exact(BIG).is_ok(), "no room for 4 MiB");
    big.resize(BIG, 0x5A);
    let grown = heap::stats();
    let frames_grown = pmm::stats().free;
    drop(big);
    let after = heap::stats();
    let frames_after = pmm::stats().free;
    kprintln!(
        "    heap mapped {} KiB -> {} KiB -> {} KiB; PMM free frames {} -> {} -> {}",
        before.mapped >> 10,
        grown.mapped >> 10,
        after.mapped >> 10,
        frames_before,
        frames_grown,
        frames_after
    );
    kassert!(grown.mapped >= BIG, "the heap is smaller than the buffer");
    if grown.mapped == before.mapped {
        // The heap had a hole big enough (a second run of the suite in
        // the shell): nothing grew, so there is nothing to give back.
        kprintln!("    the heap had room: nothing grew, nothing to give back");
        return Ok(());
    }
    kassert!(
        after.mapped <= before.mapped.max(512 * 1024) + 512 * 1024,
        "mapped did not fall"
    );
    kassert!(
        heap::pages_released() > released_before,
        "no page given back"
    );
    // Every frame the growth took is back (page tables included), give or
    // take what the heap keeps mapped now beyond before.
    let kept = (after.mapped.saturating_sub(before.mapped) / 4096) as u64;
    kassert!(
        frames_after + kept + 2 >= frames_before,
        "frames were not given back"
    );
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// `kmalloc` blocks held by a test; whatever is still held when the test
/// returns (a failed check returns early) is freed, so a failure does not
/// leave the heap fuller for the tests after it.
struct HeldBlocks<const N: usize> {
    pointers: ArrayVec<*mut u8, N>,
}

impl<const N: usize> HeldBlocks<N> {
    fn new() -> Self {
        Self {
            pointers: ArrayVec::new(),
        }
    }

    /// Blocks held.
    fn len(&self) -> usize {
        self.pointers.len()
    }

    /// Allocates blocks of `size` until the heap refuses or `N` are held.
    fn fill(&mut self, size: usize, fill: impl Fn(usize) -> u8) {
        while !self.pointers.is_full() {
            let pointer = heap::kmalloc(size);
            if pointer.is_null() {
                break;
            }
            // SAFETY: a fresh block of `size` bytes.
            unsafe { pointer.write_bytes(fill(self.pointers.len()), size) };
            self.pointers.push(pointer);
        }
    }

    fn as_slice(&self) -> &[*mut u8] {
        &self.pointers
    }

    /// Hands the last block back to the caller, who frees it.
    fn pop(&mut self) -> Option<*mut u8> {
        self.pointers.pop()
    }
}

impl<const N: usize> Drop for HeldBlocks<N> {
    fn drop(&mut self) {
        while let Some(pointer) = self.pop() {
            let _ = heap::kfree(pointer);
        }
    }
}

fn growth_stops_at_the_cap(_: &Context<'_>) -> TestResult {
    let before = heap::stats();
    let frames_before = pmm::stats().free;
    const BLOCK: usize = 64 * 1024;
    let mut blocks = HeldBlocks::<300>::new();
    blocks.fill(BLOCK, |index| index as u8);
    let count = blocks.len();
    // Smaller blocks fill what is left, up to the last mappable page.
    let mut small_blocks = HeldBlocks::<128>::new();
    small_blocks.fill(1024, |_| 0);
    let small_count = small_blocks.len();
    let full = heap::stats();
    kprintln!(
        "    {count} blocks of 64 KiB, then {small_count} of 1 KiB before kmalloc returned null; mapped {} KiB",
        full.mapped >> 10
    );
    kassert_eq!(full.mapped, HEAP_MAX_SIZE as usize);
    kassert!(count >= 240, "far fewer 64 KiB blocks than 16 MiB holds");
    kassert!(
        count < 300 && small_count < 128,
        "the cap was never reached"
    );
    kassert!(heap::kmalloc(BLOCK).is_null());
    while let Some(pointer) = small_blocks.pop() {
        kassert_eq!(heap::kfree(pointer), Ok(()));
    }
    // Earlier blocks are intact.
    for (index, &pointer) in blocks.as_slice().iter().enumerate() {
        // SAFETY: live blocks of BLOCK bytes.
        let bytes = unsafe { core::slice::from_raw_parts(pointer, BLOCK) };
        kassert!(
            bytes.iter().all(|&b| b == index as u8),
            "a block changed after the heap filled up"
        );
    }
    // Small allocations still succeed once something is freed.
    let last = blocks.pop().ok_or(super::Failure {
        message: "no 64 KiB block at all",
        file: file!(),
        line: line!(),
    })?;
    kassert_eq!(heap::kfree(last), Ok(()));
    let small = heap::kmalloc(100);
    kassert!(!small.is_null(), "small allocation failed after a free");
    kassert_eq!(heap::kfree(small), Ok(()));
    while let Some(pointer) = blocks.pop() {
        kassert_eq!(heap::kfree(pointer), Ok(()));
    }
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(heap::verify(), Ok(()));
    // What the heap still maps beyond before (it gives most back after
    // the frees) came from the PMM.
    let grown_frames = after.mapped.saturating_sub(before.mapped) as u64 / 4096;
    kassert!(
        frames_before.saturating_sub(pmm::stats().free) >= grown_frames,
        "growth did not take PMM frames"
    );
    Ok(())
}

fn short_lived_allocations_reuse_memory(_: &Context<'_>) -> TestResult {
    let before = heap::stats();
    let mut total = 0usize;
    let mut size = 16usize;
    while total < 64 * 1024 * 1024 {
        let pointer = heap::kmalloc(black_box(size));
        kassert!(!pointer.is_null(), "short-lived allocation failed");
        // SAFETY: a fresh block of `size` bytes; touching it keeps the
        // optimiser from removing the allocation.
        unsafe { pointer.write_volatile(size as u8) };
        kassert_eq!(heap::kfree(black_box(pointer)), Ok(()));
        total += size;
        size = (size * 7 + 13) % 20_000 + 16;
    }
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert!(after.mapped <= HEAP_MAX_SIZE as usize);
    kassert!(after.total_allocations > before.total_allocations + 1000);
    Ok(())
}

fn double_and_foreign_frees_are_detected(_: &Context<'_>) -> TestResult {
    let pointer = heap::kmalloc(256);
    kassert!(!pointer.is_null());
    kassert_eq!(heap::kfree(pointer), Ok(()));
    let before = heap::stats();
    kassert_eq!(heap::kfree(pointer), Err(MmError::DoubleFree));
    let mut local = 0u64;
    kassert_eq!(
        heap::kfree(&mut local as *mut u64 as *mut u8),
        Err(MmError::InvalidFree)
    );
    let live = heap::kmalloc(256);
    // A pointer into a live allocation is refused as never allocated.
    kassert_eq!(
        heap::kfree(live.wrapping_add(32)),
        Err(MmError::InvalidFree)
    );
    kassert_eq!(heap::kfree(core::ptr::null_mut()), Ok(()));
    kassert_eq!(heap::kfree(live), Ok(()));
    kassert_eq!(heap::stats().used, before.used);
    kassert_eq!(heap::stats().live_allocations, before.live_allocations);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

fn red_zone_catches_a_one_byte_overflow(_: &Context<'_>) -> TestResult {
    if !cfg!(debug_assertions) {
        kprintln!("      (release kernel: red zones are off, nothing to check)");
        return Ok(());
    }
    let before = heap::stats();
    let pointer = heap::kmalloc(24);
    kassert!(!pointer.is_null());
    // SAFETY: the 24 bytes are ours; byte 24 is deliberately one past the
    // request, inside the block's red zone (debug kernels reserve it).
    unsafe {
        pointer.write_bytes(0x11, 24);
        pointer.add(24).write(0);
    }
    kassert_eq!(heap::kfree(pointer), Ok(()));
    let after = heap::stats();
    kassert_eq!(after.red_zone_violations, before.red_zone_violations + 1);
    kassert_eq!(after.used, before.used);
    // A well-behaved block does not count.
    let clean = heap::kmalloc(24);
    kassert!(!clean.is_null());
    kassert_eq!(heap::kfree(clean), Ok(()));
    kassert_eq!(heap::stats().red_zone_violations, after.red_zone_violations);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

fn small_objects_pack_into_slab_pages(_: &Context<'_>) -> TestResult {
    super::need_heap(256 * 1024)?;
    let before = heap::stats();
    let boxes: Vec<Box<[u8; 40]>> = (0..2000u32).map(|i| Box::new([i as u8; 40])).collect();
    // Slots of one class follow each other 16-byte-aligned in 4 KiB pages:
    // most consecutive boxes share a page, and no slot has a header.
    let addresses: Vec<usize> = boxes
        .iter()
        .map(|b| &**b as *const [u8; 40] as usize)
        .collect();
    let same_page = addresses
        .windows(2)
        .filter(|pair| pair[0] / 4096 == pair[1] / 4096)
        .count();
    kassert!(
        same_page > 1500,
        "only {same_page} of 1999 neighbours share a page"
    );
    let stride = addresses[1].abs_diff(addresses[0]);
    kassert!(stride <= 80, "slots {stride} bytes apart");
    let during = heap::stats();
    // The boxes, and the two vectors.
    kassert_eq!(during.live_allocations, before.live_allocations + 2002);
    kassert_eq!(heap::verify(), Ok(()));
    for (index, b) in boxes.iter().enumerate() {
        kassert!(
            b.iter().all(|&byte| byte == index as u8),
            "box {index} changed"
        );
    }
    drop(boxes);
    drop(addresses);
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.live_allocations, before.live_allocations);
    kassert!(
        after.used + after.free + after.overhead == after.mapped,
        "counters do not add up"
    );
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

fn unmapped_heap_page_faults(_: &Context<'_>) -> TestResult {
    // The first page past what the heap has mapped: inside its window
    // before the growth tests, the page past its 16 MiB cap once it has
    // grown (a second run from the shell); unmapped either way.
    let mapped = heap::stats().mapped as u64;
    kassert!(mapped <= HEAP_MAX_SIZE, "heap mapped beyond its cap");
    let beyond = HEAP_START + mapped;
    let fault = catch_fault(|| {
        // SAFETY: deliberately reads the first unmapped page after the
        // heap; the fault is caught.
        black_box(unsafe { ptr::read_volatile(black_box(beyond as *const u8)) });
    });
    let fault = fault.ok_or(super::Failure {
        message: "reading past the heap did not fault",
        file: file!(),
        line: line!(),
    })?;
    kassert_eq!((fault.vector, fault.address), (vector::PAGE_FAULT, beyond));
    kassert_eq!(fault.error_code & 1, 0); // not present
    Ok(())
}
