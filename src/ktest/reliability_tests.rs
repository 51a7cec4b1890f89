//! Reliability tests: faults in the heap, edge requests, a randomised
//! stress run over all three allocators, and allocation from an interrupt
//! handler while the main loop allocates.

use core::alloc::Layout;
use core::hint::black_box;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::PhysAddr;

use super::raw_vmm;
use super::{Context, Expect, Failure, Test, TestResult};
use crate::arch::x86_64::exceptions::{catch_fault, vector};
use crate::arch::x86_64::timer;
use crate::kernel_mm::{heap, phys_to_virt, pmm, vmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::layout::{HEAP_MAX_SIZE, HUGE_PAGE_SIZE, PAGE_SIZE};
use mm::paging::{PageSize, NX, WRITABLE};
use mm::rng::XorShift;
use mm::MmError;

/// The reliability tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "fault::executing_heap_memory_faults",
        run: executing_heap_memory_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "bad_input::heap_edge_requests_change_nothing",
        run: heap_edge_requests_change_nothing,
        expects: Expect::NOTHING,
    },
    Test {
        name: "stress::random_frames_pages_and_heap_blocks",
        run: stress,
        expects: Expect::NOTHING,
    },
    Test {
        name: "irq::timer_handler_allocates_during_allocation_loop",
        run: timer_handler_allocates,
        expects: Expect::NOTHING,
    },
];

fn executing_heap_memory_faults(_: &Context<'_>) -> TestResult {
    let code = heap::kmalloc(64);
    kassert!(!code.is_null());
    // SAFETY: a fresh 64-byte heap block.
    unsafe { code.write_bytes(0xC3, 64) }; // `ret`
    let fault = catch_fault(|| {
        // SAFETY: not safe, on purpose: the heap is NX, so the call faults
        // on the instruction fetch and the fault is caught.
        let function: extern "C" fn() = unsafe { core::mem::transmute(black_box(code)) };
        function();
    });
    kassert_eq!(heap::kfree(code), Ok(()));
    let fault = fault.ok_or(Failure::here("executing heap memory did not fault"))?;
    kassert_eq!(fault.vector, vector::PAGE_FAULT);
    kassert_eq!(fault.address, code as u64);
    kassert_eq!(fault.error_code & 0b1_0001, 0b1_0001); // present + instruction fetch
    Ok(())
}

fn heap_edge_requests_change_nothing(_: &Context<'_>) -> TestResult {
    let before = heap::stats();
    kassert!(heap::kmalloc(usize::MAX).is_null());
    kassert!(heap::kmalloc(usize::MAX - 15).is_null());
    kassert!(heap::kmalloc(HEAP_MAX_SIZE as usize).is_null());
    let too_aligned = Layout::from_size_align(64, 8192).map_err(|_| Failure::here("layout"))?;
    kassert_eq!(
        heap::alloc(too_aligned).err(),
        Some(MmError::InvalidArgument)
    );
    let too_big = Layout::from_size_align(HEAP_MAX_SIZE as usize, 4096)
        .map_err(|_| Failure::here("layout"))?;
    kassert_eq!(heap::alloc(too_big).err(), Some(MmError::HeapExhausted));
    let after = heap::stats();
    kassert_eq!(
        (after.used, after.live_allocations),
        (before.used, before.live_allocations)
    );
    kassert_eq!(after.failed_allocations, before.failed_allocations + 5);
    // kmalloc(0) returns a real, freeable block.
    let zero = heap::kmalloc(0);
    kassert!(!zero.is_null());
    kassert_eq!(heap::kfree(zero), Ok(()));
    kassert_eq!(heap::stats().used, before.used);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

const SLOTS: usize = 64;
const STRESS_AREA: u64 = 0x0000_7000_0000_0000;

/// What one stress slot holds.
#[derive(Clone, Copy)]
enum Item {
    Empty,
    Frame(u64),
    Page(u64, u64),      // virtual, physical
    Huge(u64, u64),      // virtual, physical of a 2 MiB run
    Block(usize, usize), // pointer, size
}

fn pattern(address: u64) -> u64 {
    address.rotate_left(17) ^ 0x5EED_5EED_5EED_5EED
}

/// Writes the pattern into the first and the last 8 bytes of `len` bytes
/// at `virt` (they overlap when `len` < 16: nothing is written outside).
fn stamp(virt: u64, len: u64) {
    assert!(len >= 8, "stamp needs 8 bytes");
    // SAFETY: callers pass memory they own, mapped, `len` >= 8 bytes long;
    // both words lie inside it.
    unsafe {
        ptr::write_unaligned(virt as *mut u64, pattern(virt));
        ptr::write_unaligned((virt + len - 8) as *mut u64, pattern(virt + len));
    }
}

fn stamped(virt: u64, len: u64) -> bool {
    // SAFETY: as in `stamp`.
    let (first, last) = unsafe {
        (
            ptr::read_unaligned(virt as *const u64),
            ptr::read_unaligned((virt + len - 8) as *const u64),
        )
    };
    // With `len` < 16 the last word overwrote part of the first.
    last == pattern(virt + len) && (len < 16 || first == pattern(virt))
}

/// Releases a slot, checking the pattern survived.
fn release(item: Item) -> TestResult {
    match item {
        Item::Empty => {}
        Item::Frame(phys) => {
            let virt = phys_to_virt(PhysAddr::new(phys)).as_u64();
            kassert!(stamped(virt, PAGE_SIZE), "frame contents changed");
            kassert_eq!(pmm::free_page(PhysAddr::new(phys)), Ok(()));
        }
        Item::Page(virt, phys) => {
            kassert!(stamped(virt, PAGE_SIZE), "page contents changed");
            kassert_eq!(
                raw_vmm::unmap(virt),
                Ok((PhysAddr::new(phys), PageSize::Size4KiB))
            );
            kassert_eq!(pmm::free_page(PhysAddr::new(phys)), Ok(()));
        }
        Item::Huge(virt, phys) => {
            kassert!(stamped(virt, HUGE_PAGE_SIZE), "huge page contents changed");
            kassert_eq!(
                raw_vmm::unmap(virt),
                Ok((PhysAddr::new(phys), PageSize::Size2MiB))
            );
            kassert_eq!(pmm::free_contiguous(PhysAddr::new(phys), 512), Ok(()));
        }
        Item::Block(pointer, size) => {
            kassert!(
                stamped(pointer as u64, size as u64),
                "heap block contents changed"
            );
            kassert_eq!(heap::kfree(pointer as *mut u8), Ok(()));
        }
    }
    Ok(())
}

fn stress(_: &Context<'_>) -> TestResult {
    let frames_before = pmm::stats();
    let heap_before = heap::stats();
    let tables_before = vmm::table_count();
    let mut rng = XorShift::new(0x00C0_FFEE_1234_5678);
    let mut slots = [Item::Empty; SLOTS];
    let mut counts = [0u64; 5];
    for _ in 0..6000 {
        let slot = rng.below(SLOTS as u64) as usize;
        release(slots[slot])?;
        slots[slot] = Item::Empty;
        let virt = STRESS_AREA + slot as u64 * HUGE_PAGE_SIZE;
        slots[slot] = match rng.below(10) {
            0..=2 => match pmm::alloc_page() {
                Some(frame) => {
                    let phys = frame.start_address().as_u64();
                    stamp(phys_to_virt(frame.start_address()).as_u64(), PAGE_SIZE);
                    counts[0] += 1;
                    Item::Frame(phys)
                }
                None => Item::Empty,
            },
            3..=4 => match pmm::alloc_page() {
                Some(frame) => {
                    let phys = frame.start_address().as_u64();
                    kassert_eq!(
                        raw_vmm::map(virt, phys, PageSize::Size4KiB, WRITABLE | NX),
                        Ok(())
                    );
                    stamp(virt, PAGE_SIZE);
                    counts[1] += 1;
                    Item::Page(virt, phys)
                }
                None => Item::Empty,
            },
            5 if rng.below(4) == 0 => match pmm::alloc_contiguous(512, 512) {
                Ok(run) => {
                    let phys = run.start_address().as_u64();
                    kassert_eq!(
                        raw_vmm::map(virt, phys, PageSize::Size2MiB, WRITABLE | NX),
                        Ok(())
                    );
                    stamp(virt, HUGE_PAGE_SIZE);
                    counts[2] += 1;
                    Item::Huge(virt, phys)
                }
                Err(_) => Item::Empty,
            },
            _ => {
                // Heap blocks of 8 B to 64 KiB, skewed small.
                let scale = 4 + rng.below(13);
                let size = 8 + rng.below(1 << scale) as usize;
                let pointer = heap::kmalloc(size);
                if pointer.is_null() {
                    counts[4] += 1;
                    Item::Empty
                } else {
                    stamp(pointer as u64, size as u64);
                    counts[3] += 1;
                    Item::Block(pointer as usize, size)
                }
            }
        };
    }
    // Drive the heap to its cap while the random load is still live.
    let mut big = [0usize; 80];
    let mut held = 0;
    while held < big.len() {
        let pointer = heap::kmalloc(256 * 1024);
        if pointer.is_null() {
            break;
        }
        stamp(pointer as u64, 256 * 1024);
        big[held] = pointer as usize;
        held += 1;
    }
    let at_cap = heap::stats().mapped;
    for &pointer in &big[..held] {
        release(Item::Block(pointer, 256 * 1024))?;
    }
    for item in slots {
        release(item)?;
    }
    kprintln!(
        "    {} frames, {} pages, {} huge pages, {} heap blocks ({} refused); heap mapped {} KiB at the cap",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        at_cap / 1024
    );
    // The heap stops growing once the next 256 KiB block no longer fits
    // (it gives pages back after frees, so its end is not always on a
    // growth step): within one block of the cap.
    kassert!(
        HEAP_MAX_SIZE as usize - at_cap < 256 * 1024 + PAGE_SIZE as usize,
        "the heap stopped growing short of its cap"
    );
    kassert!(held < big.len(), "the heap never reached its cap");
    kassert_eq!(heap::verify(), Ok(()));
    let heap_after = heap::stats();
    kassert_eq!(
        (heap_after.used, heap_after.live_allocations),
        (heap_before.used, heap_before.live_allocations)
    );
    kassert_eq!(vmm::table_count(), tables_before);
    // Heap growth keeps its pages (and gives some back after large
    // frees): only the difference may be missing (or extra).
    let grown = (heap_after.mapped as i64 - heap_before.mapped as i64) / PAGE_SIZE as i64;
    let frames_after = pmm::stats();
    kassert_eq!(frames_after.free as i64 + grown, frames_before.free as i64);
    kassert_eq!(frames_after.total, frames_before.total);
    Ok(())
}

static HANDLER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Runs in the timer interrupt: allocates and frees from the heap and the
/// PMM, which take the same locks the main loop is using.
fn allocating_handler() {
    let pointer = heap::kmalloc(48);
    if !pointer.is_null() {
        // SAFETY: a fresh 48-byte block.
        unsafe { pointer.write_volatile(7) };
        let _ = heap::kfree(pointer);
        HANDLER_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(frame) = pmm::alloc_page() {
        let _ = pmm::free_page(frame.start_address());
    }
}

fn timer_handler_allocates(_: &Context<'_>) -> TestResult {
    let heap_before = heap::stats();
    let frames_before = pmm::stats();
    HANDLER_ALLOCATIONS.store(0, Ordering::SeqCst);
    let ticks_before = timer::ticks();
    timer::start(1000, Some(allocating_handler));
    x86_64::instructions::interrupts::enable();
    let mut iterations = 0u64;
    while (timer::ticks() - ticks_before < 50 || HANDLER_ALLOCATIONS.load(Ordering::SeqCst) < 20)
        && iterations < 5_000_000
    {
        let size = 16 + (iterations % 512) as usize;
        let pointer = heap::kmalloc(size);
        if !pointer.is_null() {
            // SAFETY: a fresh block of `size` bytes.
            unsafe { pointer.write_bytes(0xAB, size) };
            let _ = heap::kfree(pointer);
        }
        iterations += 1;
    }
    x86_64::instructions::interrupts::disable();
    timer::stop();
    let ticks = timer::ticks() - ticks_before;
    let allocations = HANDLER_ALLOCATIONS.load(Ordering::SeqCst);
    kprintln!("    {iterations} main-loop allocations, {ticks} timer interrupts, {allocations} of them allocated");
    kassert!(ticks >= 50, "the timer did not fire");
    kassert!(allocations >= 20, "the handler could not allocate");
    kassert_eq!(heap::verify(), Ok(()));
    kassert_eq!(heap::stats().used, heap_before.used);
    kassert_eq!(pmm::stats(), frames_before);
    Ok(())
}
