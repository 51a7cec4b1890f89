//! In-kernel tests of the physical memory manager on the real memory map.

use core::ptr;

use arrayvec::ArrayVec;
use x86_64::PhysAddr;

use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::{cpu, sections};
use crate::boot::{CommandLine, MemoryKind};
use crate::kernel_mm::{bootstrap, phys_to_virt, pmm};
use crate::{kassert, kassert_eq, kprintln};
use alloc::vec::Vec;
use mm::layout::{HUGE_PAGE_SIZE, PAGE_SIZE, PMM_START};
use mm::pmm::allocator::outward_to_pages;
use mm::pmm::{Mobility, PhysRange};
use mm::MmError;

/// The PMM tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "pmm::total_matches_the_memory_map",
        run: total_matches_the_memory_map,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::exhaust_every_frame_twice",
        run: exhaust_every_frame_twice,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::free_runs_see_every_free_frame_once",
        run: free_runs_see_every_free_frame_once,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::bad_frees_report_and_change_nothing",
        run: bad_frees_report_and_change_nothing,
        expects: Expect::BAD_FREES.logging(&["kernel_mm::pmm"]),
    },
    Test {
        name: "pmm::contiguous_2mib_run_is_aligned",
        run: contiguous_2mib_run_is_aligned,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::every_order_allocates_aligned_and_frees",
        run: every_order_allocates_aligned_and_frees,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::exhaustion_by_order_hands_out_distinct_blocks_and_recovers",
        run: exhaustion_by_order,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::frees_of_the_wrong_order_are_refused",
        run: frees_of_the_wrong_order_are_refused,
        expects: Expect::BAD_FREES.logging(&["kernel_mm::pmm"]),
    },
    Test {
        name: "pmm::alloc_zeroed_clears_old_data",
        run: alloc_zeroed_clears_old_data,
        expects: Expect::NOTHING,
    },
    Test {
        name: "pmm::bootstrap_pool_is_accounted",
        run: bootstrap_pool_is_accounted,
        expects: Expect::NOTHING,
    },
];

fn total_matches_the_memory_map(context: &Context<'_>) -> TestResult {
    let limit = CommandLine::parse(context.boot_info.cmdline).pmm_max;
    let stats = pmm::stats();
    kprintln!("    PMM manages {} frames", stats.total);
    // Without overlapping map entries (true of QEMU's firmware), the PMM
    // total is each available region's whole pages at or above 0x400000;
    // pmm.max=SIZE manages exactly SIZE bytes of that when RAM allows, and
    // all of it when SIZE is larger.
    let all: u64 = context
        .boot_info
        .memory_map()
        .iter()
        .filter(|region| region.kind == MemoryKind::Available)
        .map(|region| {
            let range = region.range();
            let start = range.start.max(PMM_START).next_multiple_of(PAGE_SIZE);
            let end = range.end - range.end % PAGE_SIZE;
            end.saturating_sub(start) / PAGE_SIZE
        })
        .sum();
    let expected = limit.map_or(all, |limit| all.min(limit / PAGE_SIZE));
    kassert_eq!(stats.total, expected);
    kassert_eq!(stats.free + stats.used + stats.reserved, stats.total);
    Ok(())
}

/// Allocates until the PMM is empty, chaining the frames through their own
/// first words, then frees them all; twice. Each frame is stamped with a
/// per-round marker, so a frame handed out twice is caught.
fn exhaust_every_frame_twice(_: &Context<'_>) -> TestResult {
    let initial = pmm::stats();
    for round in 0..2u64 {
        let marker = 0x5EED_0000_0000_0000 ^ (cpu::rdtsc() << 8) ^ round;
        let mut head = 0u64; // physical address of the last frame, 0 = none
        let mut count = 0u64;
        while let Some(frame) = pmm::alloc_page() {
            let address = frame.start_address();
            kassert!(address.as_u64() >= PMM_START, "frame below 0x400000");
            let reserved = pmm::with(|p| p.reservation_at(address.as_u64()).is_some());
            kassert!(reserved == Some(false), "a reserved frame was handed out");
            let words = phys_to_virt(address).as_mut_ptr::<u64>();
            // SAFETY: the frame is RAM we own until freed, direct-mapped.
            let stamp = unsafe { ptr::read_volatile(words.add(1)) };
            kassert!(stamp != marker ^ address.as_u64(), "frame handed out twice");
            // SAFETY: as above.
            unsafe {
                ptr::write_volatile(words, head);
                ptr::write_volatile(words.add(1), marker ^ address.as_u64());
            }
            head = address.as_u64();
            count += 1;
        }
        kassert_eq!(count, initial.free);
        kassert_eq!(pmm::stats().free, 0);
        kassert_eq!(pmm::alloc_contiguous(1, 1), Err(MmError::OutOfFrames));
        while head != 0 {
            let address = PhysAddr::new(head);
            // SAFETY: `head` is a frame this test allocated and chained.
            head = unsafe { ptr::read_volatile(phys_to_virt(address).as_ptr::<u64>()) };
            kassert!(
                pmm::free_page(address).is_ok(),
                "freeing an allocated frame failed"
            );
        }
        kassert_eq!(pmm::stats(), initial);
    }
    Ok(())
}

/// `pmm::free_runs`, the bitmap view behind the shell's `physmap`: its
/// runs are free, managed, unreserved, disjoint, and add up to the free
/// count; a frame held meanwhile is in none of them; the PMM is left as
/// it was.
fn free_runs_see_every_free_frame_once(_: &Context<'_>) -> TestResult {
    let no_frame = super::Failure::here("no frame");
    // Two held frames with a free one between them, as far as the
    // allocator's order allows.
    let first = pmm::alloc_page().ok_or(no_frame)?.start_address();
    let between = pmm::alloc_page().ok_or(no_frame)?.start_address();
    let Some(last) = pmm::alloc_page().map(|frame| frame.start_address()) else {
        let _ = pmm::free_page(first);
        let _ = pmm::free_page(between);
        return Err(no_frame);
    };
    kassert_eq!(pmm::free_page(between), Ok(()));
    // The view drains this CPU's frame cache first: count after that.
    let _ = pmm::free_runs(|_| {});
    let before = pmm::allocator_stats();
    let mut runs: ArrayVec<PhysRange, 256> = ArrayVec::new();
    let mut frames = 0;
    let result = pmm::free_runs(|run| {
        frames += run.pages();
        // Past 256 runs only the count is checked.
        let _ = runs.try_push(run);
    });
    let after = pmm::allocator_stats();
    let _ = pmm::free_page(first);
    let _ = pmm::free_page(last);
    kassert_eq!(result, Some(before.free));
    kassert_eq!(frames, before.free);
    kassert_eq!(after, before);
    runs.sort_unstable_by_key(|run| run.start);
    for pair in runs.windows(2) {
        kassert!(pair[0].end <= pair[1].start, "free runs overlap");
    }
    for run in &runs {
        let held = [first, last].map(|frame| run.contains(frame.as_u64()));
        kassert!(held == [false, false], "a held frame in a free run");
        let inside = pmm::with(|p| {
            let managed = p.manages(run.start) && p.manages(run.end - PAGE_SIZE);
            let reserved = p
                .reservations()
                .any(|r| outward_to_pages(r.range).overlaps(run));
            managed && !reserved
        });
        kassert!(
            inside == Some(true),
            "a free run outside the allocatable frames"
        );
    }
    if runs.len() < runs.capacity() {
        let found = runs.iter().any(|run| run.contains(between.as_u64()));
        kassert!(found, "the frame given back is in no free run");
    }
    Ok(())
}

fn bad_frees_report_and_change_nothing(_: &Context<'_>) -> TestResult {
    let no_frame = super::Failure {
        message: "no frame",
        file: file!(),
        line: line!(),
    };
    let frame = pmm::alloc_page().ok_or(no_frame)?;
    let address = frame.start_address();
    // A frame the allocator manages and knows to be free, whatever the
    // memory layout: one it just handed out and took back.
    let spare = pmm::alloc_page().ok_or(no_frame)?.start_address();
    kassert_eq!(pmm::free_page(spare), Ok(()));
    let before = pmm::stats();
    let bitmap = pmm::with(|p| {
        p.reservations()
            .find(|r| r.kind == mm::pmm::ReservationKind::PmmBitmap)
            .map(|r| r.range)
    })
    .flatten()
    .unwrap_or(PhysRange::default());
    let cases = [
        (address + 8u64, MmError::Misaligned),
        (
            PhysAddr::new(sections::kernel_image().start),
            MmError::OutOfRange,
        ),
        (PhysAddr::new(0x7FFF_F000_0000), MmError::OutOfRange),
        (PhysAddr::new(bitmap.start), MmError::FrameReserved),
        (spare, MmError::FrameAlreadyFree),
    ];
    for (bad, error) in cases {
        kassert_eq!(pmm::free_page(bad), Err(error));
        kassert_eq!(pmm::stats(), before);
    }
    kassert_eq!(pmm::free_page(address), Ok(()));
    // Double free: an error, and the counts stay.
    let after = pmm::stats();
    kassert_eq!(pmm::free_page(address), Err(MmError::FrameAlreadyFree));
    kassert_eq!(pmm::stats(), after);
    Ok(())
}

fn contiguous_2mib_run_is_aligned(_: &Context<'_>) -> TestResult {
    let before = pmm::stats();
    let run = pmm::alloc_contiguous(512, 512);
    kassert!(run.is_ok(), "no 2 MiB-aligned run of 512 frames");
    let first = run.map(|f| f.start_address()).unwrap_or(PhysAddr::zero());
    kassert_eq!(first.as_u64() % HUGE_PAGE_SIZE, 0);
    kassert_eq!(pmm::stats().used, before.used + 512);
    // Write the last byte of the run through the direct map.
    let last = phys_to_virt(first + (HUGE_PAGE_SIZE - 1)).as_mut_ptr::<u8>();
    // SAFETY: inside the run we own, direct-mapped.
    unsafe { ptr::write_volatile(last, 0xA5) };
    kassert_eq!(pmm::free_contiguous(first, 512), Ok(()));
    kassert_eq!(pmm::stats(), before);
    Ok(())
}

fn alloc_zeroed_clears_old_data(_: &Context<'_>) -> TestResult {
    let frame = pmm::alloc_page().map(|f| f.start_address());
    kassert!(frame.is_some(), "no frame");
    let address = frame.unwrap_or(PhysAddr::zero());
    let bytes = phys_to_virt(address).as_mut_ptr::<u8>();
    // SAFETY: the frame is ours until freed below.
    unsafe { ptr::write_bytes(bytes, 0xCC, PAGE_SIZE as usize) };
    kassert_eq!(pmm::free_page(address), Ok(()));
    // Lowest-first allocation hands the same frame back.
    let again = pmm::alloc_zeroed().map(|f| f.start_address());
    kassert_eq!(again, Some(address));
    // SAFETY: the frame is ours again.
    let all_zero =
        (0..PAGE_SIZE as usize).all(|i| unsafe { ptr::read_volatile(bytes.add(i)) } == 0);
    kassert!(all_zero, "alloc_zeroed returned old data");
    kassert_eq!(pmm::free_page(address), Ok(()));
    Ok(())
}

fn bootstrap_pool_is_accounted(_: &Context<'_>) -> TestResult {
    let stats = bootstrap::stats();
    kassert!(stats.is_some(), "pool not initialised");
    let stats = stats.unwrap_or(pmm::stats());
    kassert!(stats.total > 0);
    kassert_eq!(stats.free + stats.used + stats.reserved, stats.total);
    // The direct map's tables are the pool's only users so far.
    kassert!(stats.used >= 1, "direct map tables not counted");
    let frame = bootstrap::alloc_zeroed().map(|f| f.start_address());
    kassert!(frame.is_some_and(|f| f.as_u64() >= 0x1_0000 && f.as_u64() < 0x10_0000));
    let frame = frame.unwrap_or(PhysAddr::zero());
    kassert_eq!(bootstrap::free(frame), Ok(()));
    kassert_eq!(bootstrap::free(frame), Err(MmError::FrameAlreadyFree));
    kassert_eq!(bootstrap::stats(), Some(stats));
    Ok(())
}

/// Orders 0 to 10 of both kinds: aligned to their size, really RAM (the
/// first and last byte written through the direct map), freed back to the
/// same counters.
fn every_order_allocates_aligned_and_frees(_: &Context<'_>) -> TestResult {
    let before = pmm::stats();
    for order in 0..=10u32 {
        for mobility in [Mobility::Unmovable, Mobility::Movable] {
            let block = pmm::alloc_order(order, mobility);
            kassert!(block.is_ok(), "no block of this order");
            let first = block.map(|f| f.start_address()).unwrap_or(PhysAddr::zero());
            let bytes = PAGE_SIZE << order;
            kassert_eq!(first.as_u64() % bytes, 0);
            kassert_eq!(pmm::stats().used, before.used + (1 << order));
            for offset in [0, bytes - 1] {
                let byte = phys_to_virt(first + offset).as_mut_ptr::<u8>();
                // SAFETY: inside the block we own, direct-mapped.
                unsafe { ptr::write_volatile(byte, 0x5A) };
            }
            kassert_eq!(pmm::free_order(first, order), Ok(()));
            kassert_eq!(pmm::stats(), before);
        }
    }
    Ok(())
}

/// Takes every block of an order until none is left: each one aligned and
/// apart from the others, the free count falls by exactly what was handed
/// out, smaller orders still work, and everything comes back (also when a
/// check fails: a test that kept all memory would fail every later one).
fn exhaustion_by_order(_: &Context<'_>) -> TestResult {
    // Room for every block of the smaller order, taken before the counts:
    // the heap must not take frames from the PMM while it is exhausted.
    let capacity = (pmm::stats().free >> 6) as usize + 1;
    let mut held: Vec<PhysAddr> = Vec::new();
    kassert!(
        held.try_reserve_exact(capacity).is_ok(),
        "no room for the list"
    );
    let before = pmm::stats();
    for order in [9u32, 6] {
        held.clear();
        while held.len() < capacity {
            let Ok(block) = pmm::alloc_order(order, Mobility::Movable) else {
                break;
            };
            held.push(block.start_address());
        }
        let checked = check_exhausted(order, &mut held, &before);
        for &block in &held {
            kassert_eq!(pmm::free_order(block, order), Ok(()));
        }
        checked?;
        kprintln!("    order {}: {} blocks", order, held.len());
        kassert_eq!(pmm::stats(), before);
    }
    Ok(())
}

/// The checks of [`exhaustion_by_order`] while `held` holds every block of
/// `order` the PMM gave.
fn check_exhausted(order: u32, held: &mut [PhysAddr], before: &mm::pmm::Stats) -> TestResult {
    kassert!(!held.is_empty(), "no block of this order at all");
    kassert_eq!(
        pmm::stats().free,
        before.free - ((held.len() as u64) << order)
    );
    let largest = pmm::with(|p| {
        (0..p.nodes())
            .filter_map(|n| p.node_stats(n).largest_free_order)
            .max()
    })
    .flatten();
    kassert!(
        largest.is_none_or(|largest| largest < order),
        "a block of the exhausted order is left"
    );
    let single = pmm::alloc_page();
    kassert_eq!(single.is_some(), pmm::stats().free > 0);
    if let Some(frame) = single {
        kassert_eq!(pmm::free_page(frame.start_address()), Ok(()));
    }
    held.sort_unstable();
    let apart = held
        .windows(2)
        .all(|pair| pair[1].as_u64() - pair[0].as_u64() >= PAGE_SIZE << order);
    kassert!(apart, "two blocks overlap");
    let aligned = held.iter().all(|b| b.as_u64() % (PAGE_SIZE << order) == 0);
    kassert!(aligned, "a block is misaligned");
    Ok(())
}

/// A block freed with another order, from inside, or twice: refused with
/// its own error, and nothing changes.
fn frees_of_the_wrong_order_are_refused(_: &Context<'_>) -> TestResult {
    let block = pmm::alloc_order(3, Mobility::Unmovable);
    kassert!(block.is_ok(), "no order-3 block");
    let first = block.map(|f| f.start_address()).unwrap_or(PhysAddr::zero());
    let before = pmm::stats();
    let cases = [
        (first, 2, MmError::WrongBlockSize),
        (first, 0, MmError::WrongBlockSize),
        (first + PAGE_SIZE, 0, MmError::WrongBlockSize),
        (first + 2 * PAGE_SIZE, 1, MmError::WrongBlockSize),
        (first + PAGE_SIZE, 3, MmError::Misaligned),
    ];
    for (address, order, error) in cases {
        kassert_eq!(pmm::free_order(address, order), Err(error));
        kassert_eq!(pmm::stats(), before);
    }
    kassert_eq!(pmm::free_order(first, 3), Ok(()));
    kassert_eq!(pmm::free_order(first, 3), Err(MmError::FrameAlreadyFree));
    Ok(())
}
