//! In-kernel tests of the VMM: mappings on the live page tables, W^X,
//! huge pages, table freeing, and error paths.

use core::hint::black_box;
use core::ptr;

use x86_64::registers::control::Cr3;
use x86_64::{PhysAddr, VirtAddr};

use super::raw_vmm;
use super::{Context, Expect, Failure, Test, TestResult};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::exceptions::{catch_fault, vector, CaughtFault};
use crate::arch::x86_64::sections;
use crate::kernel_mm::{direct_map, heap, phys_to_virt, pmm, vmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::fail::FailPlan;
use mm::layout::{
    BOOTSTRAP_POOL_START, BOOT_PD, BOOT_PDPT, BOOT_PML4, BOOT_PT, BOOT_PT2, GIANT_PAGE_SIZE,
    HEAP_MAX_SIZE, HUGE_PAGE_SIZE, PAGE_SIZE, PMM_START,
};
use mm::paging::{PageSize, NOCACHE, NX, PRESENT, USER, WRITABLE};
use mm::MmError;

/// A lower-half region nothing else uses, for test mappings.
const TEST_AREA: u64 = 0x0000_6000_0000_0000;

/// The VMM tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "vmm::map_write_read_back_unmap_faults",
        run: map_write_read_back_unmap_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::kernel_text_is_not_writable",
        run: kernel_text_is_not_writable,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::rodata_is_not_writable",
        run: rodata_is_not_writable,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::data_stack_and_nx_pages_do_not_execute",
        run: data_stack_and_nx_pages_do_not_execute,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::huge_2mib_page_translates_every_offset",
        run: huge_2mib_page_translates_every_offset,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::gigabyte_page_where_supported",
        run: gigabyte_page_where_supported,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::ten_thousand_map_unmap_cycles_leak_nothing",
        run: ten_thousand_cycles_leak_nothing,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::errors_are_distinct_and_change_nothing",
        run: errors_are_distinct_and_change_nothing,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::cr3_holds_the_managed_pml4",
        run: cr3_holds_the_managed_pml4,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::identity_map_is_trimmed",
        run: identity_map_is_trimmed,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::boot_page_tables_not_writable_through_low_memory",
        run: boot_page_tables_not_writable_through_low_memory,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::direct_map_covers_ram_and_no_device",
        run: direct_map_covers_ram_and_no_device,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::cr4_protections_on_where_offered",
        run: cr4_protections_on_where_offered,
        expects: Expect::NOTHING,
    },
    Test {
        name: "vmm::a_dropped_mapping_gives_everything_back",
        run: a_dropped_mapping_gives_everything_back,
        expects: Expect::NOTHING,
    },
    Test {
        name: "fault::every_frame_failure_is_reported_and_undone",
        run: every_frame_failure_is_reported_and_undone,
        expects: Expect::NOTHING,
    },
];

/// Checks a caught page fault: address and error-code bits that must be set.
fn expect_page_fault(fault: Option<CaughtFault>, address: u64, bits: u64) -> TestResult {
    let fault = fault.ok_or(Failure::here("the access did not fault"))?;
    kassert_eq!(fault.vector, vector::PAGE_FAULT);
    kassert_eq!(fault.address, address);
    kassert_eq!(fault.error_code & bits, bits);
    Ok(())
}

const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

fn map_write_read_back_unmap_faults(_: &Context<'_>) -> TestResult {
    let before = pmm::stats();
    let frame = pmm::alloc_page()
        .ok_or(Failure::here("no frame"))?
        .start_address();
    let virt = TEST_AREA;
    kassert_eq!(
        raw_vmm::map(virt, frame.as_u64(), PageSize::Size4KiB, WRITABLE | NX),
        Ok(())
    );
    kassert_eq!(
        raw_vmm::translate(virt + 0x123).map(|t| t.phys.as_u64()),
        Some(frame.as_u64() + 0x123)
    );
    // SAFETY: the page was just mapped to a frame we own.
    unsafe { ptr::write_volatile(virt as *mut u64, 0x1DEA_5EED) };
    // SAFETY: the same frame through the direct map.
    let seen = unsafe { ptr::read_volatile(phys_to_virt(frame).as_ptr::<u64>()) };
    kassert_eq!(seen, 0x1DEA_5EED);
    kassert_eq!(raw_vmm::unmap(virt), Ok((frame, PageSize::Size4KiB)));
    let fault = catch_fault(|| {
        // SAFETY: deliberately reads the page just unmapped; the fault is caught.
        black_box(unsafe { ptr::read_volatile(virt as *const u64) });
    });
    expect_page_fault(fault, virt, 0)?;
    kassert_eq!(fault.map(|f| f.error_code & PF_PRESENT), Some(0));
    kassert_eq!(pmm::free_page(frame), Ok(()));
    // The tables built for the test area were freed by the unmap.
    kassert_eq!(pmm::stats(), before);
    Ok(())
}

fn kernel_text_is_not_writable(_: &Context<'_>) -> TestResult {
    let target = kernel_text_is_not_writable as *const () as u64;
    let fault = catch_fault(|| {
        // SAFETY: deliberately writes to kernel text; W^X makes it fault.
        unsafe { ptr::write_volatile(black_box(target as *mut u8), 0x90) };
    });
    expect_page_fault(fault, target, PF_PRESENT | PF_WRITE)
}

static READ_ONLY: [u8; 16] = *b"read-only data!!";

fn rodata_is_not_writable(_: &Context<'_>) -> TestResult {
    let target = READ_ONLY.as_ptr() as u64;
    let rodata = sections::kernel_sections()[1].span;
    kassert!(rodata.contains(target), "test data is not in .rodata");
    let fault = catch_fault(|| {
        // SAFETY: deliberately writes to .rodata; the fault is caught.
        unsafe { ptr::write_volatile(black_box(target as *mut u8), 0) };
    });
    expect_page_fault(fault, target, PF_PRESENT | PF_WRITE)?;
    kassert_eq!(READ_ONLY[0], b'r');
    Ok(())
}

/// Calls `address` as a function; the page must not be executable.
fn call_at(address: u64) -> Option<CaughtFault> {
    catch_fault(|| {
        // SAFETY: not safe, on purpose: jumps to data, which W^X/NX turns
        // into a page fault before any byte executes; the fault is caught.
        let function: extern "C" fn() =
            unsafe { core::mem::transmute(black_box(address) as usize) };
        function();
    })
}

static mut DATA_CODE: [u8; 16] = [0xC3; 16]; // `ret`

fn data_stack_and_nx_pages_do_not_execute(_: &Context<'_>) -> TestResult {
    let data = (&raw const DATA_CODE) as u64;
    expect_page_fault(call_at(data), data, PF_PRESENT | PF_FETCH)?;

    let stack_code = black_box([0xC3u8; 16]);
    let stack = stack_code.as_ptr() as u64;
    expect_page_fault(call_at(stack), stack, PF_PRESENT | PF_FETCH)?;

    // A writable, no-execute page such as the heap's.
    let frame = pmm::alloc_page()
        .ok_or(Failure::here("no frame"))?
        .start_address();
    let virt = TEST_AREA + 0x10_0000;
    kassert_eq!(
        raw_vmm::map(virt, frame.as_u64(), PageSize::Size4KiB, WRITABLE | NX),
        Ok(())
    );
    // SAFETY: the page is mapped to our frame.
    unsafe { ptr::write_bytes(virt as *mut u8, 0xC3, 16) };
    let fault = call_at(virt);
    kassert_eq!(raw_vmm::unmap(virt).map(|(p, _)| p), Ok(frame));
    kassert_eq!(pmm::free_page(frame), Ok(()));
    expect_page_fault(fault, virt, PF_PRESENT | PF_FETCH)
}

fn huge_2mib_page_translates_every_offset(_: &Context<'_>) -> TestResult {
    let before = pmm::stats();
    let run = pmm::alloc_contiguous(512, 512).map_err(|_| Failure::here("no 2 MiB run"))?;
    let phys = run.start_address().as_u64();
    let virt = TEST_AREA + 0x4000_0000;
    kassert_eq!(
        raw_vmm::map(virt, phys, PageSize::Size2MiB, WRITABLE | NX),
        Ok(())
    );
    for page in 0..512u64 {
        let offset = page * PAGE_SIZE + (page * 8) % PAGE_SIZE;
        let t = raw_vmm::translate(virt + offset);
        kassert_eq!(
            t.map(|t| (t.phys.as_u64(), t.size)),
            Some((phys + offset, PageSize::Size2MiB))
        );
    }
    // Writes through the huge page land in the right frames.
    // SAFETY: inside the 2 MiB page we own.
    unsafe { ptr::write_volatile((virt + HUGE_PAGE_SIZE - 8) as *mut u64, 0xB16_F00D) };
    // SAFETY: the same byte through the direct map.
    let seen = unsafe {
        ptr::read_volatile(phys_to_virt(PhysAddr::new(phys + HUGE_PAGE_SIZE - 8)).as_ptr::<u64>())
    };
    kassert_eq!(seen, 0xB16_F00D);
    // A 4 KiB page inside the huge one is refused.
    kassert_eq!(
        raw_vmm::map(virt + PAGE_SIZE, phys, PageSize::Size4KiB, WRITABLE | NX),
        Err(MmError::HugePageConflict)
    );
    kassert_eq!(
        raw_vmm::unmap(virt + PAGE_SIZE),
        Err(MmError::HugePageConflict)
    );
    kassert_eq!(
        raw_vmm::unmap(virt),
        Ok((PhysAddr::new(phys), PageSize::Size2MiB))
    );
    kassert_eq!(pmm::free_contiguous(PhysAddr::new(phys), 512), Ok(()));
    kassert_eq!(pmm::stats(), before);
    Ok(())
}

fn gigabyte_page_where_supported(_: &Context<'_>) -> TestResult {
    let virt = TEST_AREA + 0x80_0000_0000;
    // Map the first GiB of physical memory (the kernel lives in it) again.
    let result = raw_vmm::map(virt, 0, PageSize::Size1GiB, NX);
    if !cpu::features().gigabyte_pages {
        kassert_eq!(result, Err(MmError::PageSizeUnsupported));
        return Ok(());
    }
    kassert_eq!(result, Ok(()));
    let kernel = sections::kernel_image().start;
    let t = raw_vmm::translate(virt + kernel);
    kassert_eq!(
        t.map(|t| (t.phys.as_u64(), t.size)),
        Some((kernel, PageSize::Size1GiB))
    );
    kassert_eq!(
        raw_vmm::translate(virt + GIANT_PAGE_SIZE - 1).map(|t| t.phys.as_u64()),
        Some(GIANT_PAGE_SIZE - 1)
    );
    // Reading the kernel through the new mapping sees the kernel's bytes.
    // SAFETY: both addresses map the same physical byte of the image.
    let (through, direct) = unsafe {
        (
            ptr::read_volatile((virt + kernel) as *const u32),
            ptr::read_volatile(kernel as *const u32),
        )
    };
    kassert_eq!(through, direct);
    kassert_eq!(
        raw_vmm::unmap(virt).map(|(_, size)| size),
        Ok(PageSize::Size1GiB)
    );
    Ok(())
}

fn ten_thousand_cycles_leak_nothing(_: &Context<'_>) -> TestResult {
    let frame = pmm::alloc_page()
        .ok_or(Failure::here("no frame"))?
        .start_address();
    let before = pmm::stats();
    let tables = vmm::table_count();
    for cycle in 0..10_000u64 {
        // Spread over regions so each map needs new tables and each unmap frees them.
        let virt = TEST_AREA + (cycle % 8) * GIANT_PAGE_SIZE * 512;
        if raw_vmm::map(virt, frame.as_u64(), PageSize::Size4KiB, WRITABLE | NX).is_err() {
            return Err(Failure::here("map failed"));
        }
        if raw_vmm::unmap(virt).is_err() {
            return Err(Failure::here("unmap failed"));
        }
    }
    kassert_eq!(pmm::stats(), before);
    kassert_eq!(vmm::table_count(), tables);
    kassert_eq!(pmm::free_page(frame), Ok(()));
    Ok(())
}

fn errors_are_distinct_and_change_nothing(_: &Context<'_>) -> TestResult {
    let frame = pmm::alloc_page()
        .ok_or(Failure::here("no frame"))?
        .start_address()
        .as_u64();
    let virt = TEST_AREA + 0x20_0000;
    kassert_eq!(
        raw_vmm::map(virt, frame, PageSize::Size4KiB, WRITABLE | NX),
        Ok(())
    );
    let before = (pmm::stats(), vmm::table_count());
    kassert_eq!(
        raw_vmm::map(virt, frame, PageSize::Size4KiB, NX),
        Err(MmError::AlreadyMapped)
    );
    kassert_eq!(
        raw_vmm::map(virt + 0x800, frame, PageSize::Size4KiB, NX),
        Err(MmError::Misaligned)
    );
    kassert_eq!(
        raw_vmm::map(virt + PAGE_SIZE, frame + 1, PageSize::Size4KiB, NX),
        Err(MmError::Misaligned)
    );
    kassert_eq!(
        raw_vmm::map(0x8000_0000_0000, frame, PageSize::Size4KiB, NX),
        Err(MmError::NonCanonical)
    );
    kassert_eq!(raw_vmm::unmap(virt + PAGE_SIZE), Err(MmError::NotMapped));
    kassert_eq!(
        raw_vmm::unmap(0xFFFF_0000_0000_0000),
        Err(MmError::NonCanonical)
    );
    kassert_eq!(
        raw_vmm::update_flags(virt + PAGE_SIZE, NX),
        Err(MmError::NotMapped)
    );
    kassert_eq!((pmm::stats(), vmm::table_count()), before);
    kassert_eq!(
        raw_vmm::translate(virt).map(|t| t.flags.contains(PRESENT | WRITABLE | NX)),
        Some(true)
    );
    kassert_eq!(raw_vmm::unmap(virt).map(|(p, _)| p.as_u64()), Ok(frame));
    kassert_eq!(raw_vmm::unmap(virt), Err(MmError::NotMapped));
    kassert_eq!(pmm::free_page(PhysAddr::new(frame)), Ok(()));
    Ok(())
}

fn cr3_holds_the_managed_pml4(_: &Context<'_>) -> TestResult {
    kassert_eq!(Some(Cr3::read().0), vmm::pml4());
    kassert_eq!(vmm::current_cr3(), Cr3::read().0);
    // The PML4 maps itself through the direct map.
    let pml4 = vmm::current_cr3().start_address();
    kassert_eq!(
        raw_vmm::translate(phys_to_virt(pml4).as_u64()).map(|t| t.phys),
        Some(pml4)
    );
    Ok(())
}

fn identity_map_is_trimmed(_: &Context<'_>) -> TestResult {
    let image = sections::kernel_image();
    kassert!(raw_vmm::translate(0).is_none(), "page 0 is mapped");
    kassert!(
        raw_vmm::translate(image.end).is_none(),
        "memory after the kernel is still identity-mapped"
    );
    kassert!(
        raw_vmm::translate(PMM_START - PAGE_SIZE).is_none(),
        "the top of the boot identity map is still mapped"
    );
    kassert!(
        raw_vmm::translate(sections::boot_stack_guard().start).is_none(),
        "stack guard page mapped"
    );
    kassert!(
        raw_vmm::translate(sections::double_fault_stack_guard().start).is_none(),
        "IST guard mapped"
    );
    kassert!(
        raw_vmm::translate(sections::nmi_stack_guard().start).is_none(),
        "NMI stack guard mapped"
    );
    Ok(())
}

fn boot_page_tables_not_writable_through_low_memory(_: &Context<'_>) -> TestResult {
    let pml4 = vmm::current_cr3().start_address();
    for address in [
        BOOT_PML4,
        BOOT_PDPT,
        BOOT_PD,
        BOOT_PT,
        BOOT_PT2,
        BOOTSTRAP_POOL_START,
    ] {
        kassert!(
            raw_vmm::translate(address).is_none(),
            "a boot page table or the bootstrap pool is identity-mapped"
        );
    }
    // Write back the value already there, read through the direct map, so
    // that even if the write went through nothing would change.
    // SAFETY: the live PML4 is RAM, reachable through the direct map.
    let entry = unsafe { ptr::read_volatile(phys_to_virt(pml4).as_ptr::<u64>()) };
    let fault = catch_fault(|| {
        // SAFETY: deliberately writes through the (unmapped) identity
        // address of the live PML4, with the value it already holds; the
        // page fault is caught.
        unsafe { ptr::write_volatile(black_box(pml4.as_u64() as *mut u64), entry) };
    });
    expect_page_fault(fault, pml4.as_u64(), PF_WRITE)?;
    kassert_eq!(fault.map(|fault| fault.error_code & PF_PRESENT), Some(0));
    // The VGA text window, when kept, is device memory: uncached, no-execute.
    if let Some(vga) = raw_vmm::translate(vmm::VGA_TEXT_WINDOW.start) {
        kassert!(
            vga.flags.contains(NOCACHE | NX | WRITABLE),
            "VGA text window mapped cacheable or executable"
        );
    }
    Ok(())
}

/// Every page of RAM the memory map reports is in the direct map,
/// writable, no-execute and kernel-only; the holes between RAM ranges
/// (device memory) and the local and I/O APICs are not mapped at all.
fn direct_map_covers_ram_and_no_device(context: &Context<'_>) -> TestResult {
    let ram =
        direct_map::ram_ranges(context.boot_info).ok_or(Failure::here("RAM ranges do not fit"))?;
    let direct = |phys: u64| raw_vmm::translate(phys_to_virt(PhysAddr::new(phys)).as_u64());
    let mut previous_end = 0;
    for range in ram.as_slice() {
        for page in [range.start, range.end - PAGE_SIZE] {
            let translation =
                direct(page).ok_or(Failure::here("a page of RAM is not direct-mapped"))?;
            kassert_eq!(translation.phys.as_u64(), page);
            kassert!(
                translation.flags.contains(WRITABLE | NX) && !translation.flags.contains(USER),
                "direct map page not writable, executable or user-accessible"
            );
        }
        if range.start > previous_end {
            for page in [previous_end, range.start - PAGE_SIZE] {
                kassert!(
                    direct(page).is_none(),
                    "a hole between RAM ranges is mapped"
                );
            }
        }
        previous_end = range.end;
    }
    kassert!(
        direct(previous_end).is_none(),
        "the page after RAM is mapped"
    );
    for device in [LOCAL_APIC, IO_APIC] {
        kassert!(
            ram.contains(device) || direct(device).is_none(),
            "an APIC is reachable through the direct map"
        );
    }
    Ok(())
}

/// The default local APIC and I/O APIC register pages.
const LOCAL_APIC: u64 = 0xFEE0_0000;
const IO_APIC: u64 = 0xFEC0_0000;

/// PGE, SMEP, SMAP and UMIP are on exactly where CPUID offers them; where
/// SMEP and SMAP are on, the kernel really faults on executing and on
/// reading a user page.
fn cr4_protections_on_where_offered(_: &Context<'_>) -> TestResult {
    let features = cpu::features();
    let on = cpu::protections();
    kprintln!(
        "    offered/on: PGE {}/{}, SMEP {}/{}, SMAP {}/{}, UMIP {}/{}",
        features.global_pages,
        on.global_pages,
        features.smep,
        on.smep,
        features.smap,
        on.smap,
        features.umip,
        on.umip
    );
    kassert_eq!(
        (on.global_pages, on.smep, on.smap, on.umip),
        (
            features.global_pages,
            features.smep,
            features.smap,
            features.umip
        )
    );
    if !on.smep && !on.smap {
        return Ok(());
    }
    let before = (pmm::stats(), vmm::table_count());
    let frame = pmm::alloc_zeroed()
        .ok_or(Failure::here("no frame"))?
        .start_address();
    // SAFETY: the frame is ours and direct-mapped; a `ret` to call.
    unsafe { ptr::write_volatile(phys_to_virt(frame).as_mut_ptr::<u8>(), 0xC3) };
    let virt = TEST_AREA + 0x4000_0000;
    kassert_eq!(
        raw_vmm::map(virt, frame.as_u64(), PageSize::Size4KiB, USER | WRITABLE),
        Ok(())
    );
    let mut result = Ok(());
    if on.smap {
        let fault = catch_fault(|| {
            // SAFETY: deliberately reads a user page from kernel mode; SMAP
            // turns it into a caught page fault.
            black_box(unsafe { ptr::read_volatile(black_box(virt as *const u8)) });
        });
        result = result.and(expect_page_fault(fault, virt, PF_PRESENT));
    }
    if on.smep {
        result = result.and(expect_page_fault(
            call_at(virt),
            virt,
            PF_PRESENT | PF_FETCH,
        ));
    }
    kassert_eq!(raw_vmm::unmap(virt).map(|(phys, _)| phys), Ok(frame));
    kassert_eq!(pmm::free_page(frame), Ok(()));
    kassert_eq!((pmm::stats(), vmm::table_count()), before);
    result
}

/// A `Mapping` from `map_fresh` is zeroed and writable; dropping it unmaps
/// every page and returns every frame and table; a range that overlaps a
/// mapping is refused and changes nothing.
fn a_dropped_mapping_gives_everything_back(_: &Context<'_>) -> TestResult {
    let before = (pmm::stats(), vmm::table_count());
    let start = VirtAddr::new(TEST_AREA + 0x80_0000_0000);
    let len = 3 * PAGE_SIZE;
    {
        let mapping = vmm::map_fresh(start, len, WRITABLE | NX)
            .map_err(|_| Failure::here("map_fresh failed"))?;
        kassert_eq!((mapping.start(), mapping.len()), (start, len));
        let last = start + (len - 8);
        // SAFETY: the mapping is ours, writable, `len` bytes long.
        let zero = unsafe { ptr::read_volatile(last.as_ptr::<u64>()) };
        kassert_eq!(zero, 0);
        // SAFETY: as above.
        unsafe { ptr::write_volatile(last.as_mut_ptr::<u64>(), 0xF00D) };
        kassert_eq!(
            pmm::stats().used,
            before.0.used + 3 + (vmm::table_count() - before.1) as u64
        );
        let during = (pmm::stats(), vmm::table_count());
        // Overlapping the last page: refused, and nothing changes.
        kassert_eq!(
            vmm::map_fresh(start + 2 * PAGE_SIZE, 2 * PAGE_SIZE, WRITABLE | NX).map(|m| m.len()),
            Err(MmError::AlreadyMapped)
        );
        kassert_eq!((pmm::stats(), vmm::table_count()), during);
    }
    kassert!(
        vmm::translate(start).is_none(),
        "the dropped mapping is still there"
    );
    kassert_eq!((pmm::stats(), vmm::table_count()), before);
    Ok(())
}

/// Runs `operation` with the PMM's Nth frame allocation failing, for
/// N = 1, 2, ... until it succeeds without reaching the failure; after
/// each failed attempt, `state()` must be as before. Returns how many
/// failure points were tried, or the first mismatch.
fn sweep<T: PartialEq + core::fmt::Debug, R>(
    state: impl Fn() -> T,
    mut operation: impl FnMut() -> Result<R, MmError>,
    mut undo: impl FnMut(R),
) -> Result<u64, Failure> {
    let before = state();
    // Each failed attempt logs its warning ("heap: cannot grow ..."):
    // expected here, so only errors are shown while the sweep runs.
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Error);
    let result = sweep_quietly(before, state, &mut operation, &mut undo);
    log::set_max_level(level);
    result
}

fn sweep_quietly<T: PartialEq + core::fmt::Debug, R>(
    before: T,
    state: impl Fn() -> T,
    operation: &mut impl FnMut() -> Result<R, MmError>,
    undo: &mut impl FnMut(R),
) -> Result<u64, Failure> {
    for nth in 1..10_000 {
        pmm::arm_failures(FailPlan::Nth(nth));
        let result = operation();
        let injected = pmm::failures().2;
        pmm::arm_failures(FailPlan::Off);
        match result {
            Ok(done) if injected == 0 => {
                undo(done);
                return Ok(nth - 1);
            }
            Ok(_) => {
                return Err(Failure::here(
                    "succeeded although a frame allocation failed",
                ))
            }
            Err(error) => {
                kassert_eq!(error, MmError::OutOfFrames);
                kassert_eq!(state(), before);
            }
        }
    }
    Err(Failure::here("the operation never completed"))
}

/// The in-kernel fault-injection sweep (`make test`; `mm`'s host tests run
/// the larger ones): frame allocations fail one at a time under
/// `map_fresh` (page tables and frames), a 2 MiB run, and heap growth
/// (while the heap has room to grow); each failed attempt reports
/// out-of-memory and leaves the PMM's counters, the page-table count and
/// the heap's counters exactly as before.
fn every_frame_failure_is_reported_and_undone(_: &Context<'_>) -> TestResult {
    if pmm::failures().0 != FailPlan::Off {
        kprintln!("    (a whole-suite failure plan is armed: this sweep stays out of its way)");
        return Ok(());
    }
    let machine = || (pmm::stats(), vmm::table_count());
    // 12 pages where no table exists yet: PDPT, PD and PT, then frames.
    let start = VirtAddr::new(TEST_AREA + 0x100_0000_0000 + 0x1F_E000);
    let mapped = sweep(
        machine,
        || vmm::map_fresh(start, 12 * PAGE_SIZE, WRITABLE | NX),
        drop,
    )?;
    let run = sweep(
        machine,
        || pmm::alloc_contiguous(512, 512),
        |frame| {
            let _ = pmm::free_contiguous(frame.start_address(), 512);
        },
    )?;
    let heap_state = || {
        let stats = heap::stats();
        (machine(), stats.used, stats.mapped, stats.live_allocations)
    };
    // A block just larger than any free one makes the heap grow (by some
    // 128 KiB: each attempt maps up to that many pages, so the sweep
    // stays small).
    let request = heap::largest_free_block() + 128 * 1024;
    let room = HEAP_MAX_SIZE as usize - heap::stats().mapped;
    let grown = if room >= request + HUGE_PAGE_SIZE as usize {
        sweep(
            heap_state,
            || {
                let pointer = heap::kmalloc(request);
                if pointer.is_null() {
                    Err(MmError::OutOfFrames)
                } else {
                    Ok(pointer)
                }
            },
            |pointer| {
                let _ = heap::kfree(pointer);
            },
        )?
    } else {
        0
    };
    kprintln!(
        "    failure points tried, each reported and undone: map_fresh {mapped}, 2 MiB run {run}, heap growth {grown}"
    );
    kassert!(
        mapped >= 15,
        "map_fresh of 12 new pages allocated fewer than 15 frames"
    );
    kassert_eq!(run, 1);
    Ok(())
}
