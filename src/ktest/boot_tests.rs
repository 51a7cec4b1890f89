//! In-kernel tests of the boot foundation: exceptions, guard pages, the
//! boot information.

use core::hint::black_box;
use core::ptr;

use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::exceptions::{breakpoint_count, catch_fault, vector};
use crate::arch::x86_64::{cmos, cpu, nmi};
use crate::boot::MemoryKind;
use crate::{kassert, kassert_eq, kprintln};

/// The boot tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "boot::null_read_page_faults_with_cr2_0",
        run: null_read_page_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::breakpoint_returns",
        run: breakpoint_returns,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::invalid_opcode_is_reported",
        run: invalid_opcode_is_reported,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::non_canonical_access_general_protection",
        run: non_canonical_access_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::stack_overflow_hits_guard_then_double_fault",
        run: stack_overflow_double_faults,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::command_line_reaches_the_kernel",
        run: command_line_reaches_the_kernel,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::memory_map_matches_qemu_ram",
        run: memory_map_matches_qemu_ram,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::nmi_is_counted_and_survived",
        run: nmi_is_counted_and_survived,
        expects: Expect::NOTHING,
    },
    Test {
        name: "boot::unknown_crash_kind_keeps_exit_on_fatal",
        run: unknown_crash_kind_keeps_exit_on_fatal,
        expects: Expect::NOTHING.logging(&["ktest::selftest"]),
    },
];

/// Vector 2 raised by software goes through the NMI gate and handler (on
/// the NMI stack): counted, reported later, and the kernel goes on, even
/// with a recovery point armed. (A real NMI from QEMU's monitor is the
/// `nmi` boot test.)
fn nmi_is_counted_and_survived(_: &Context<'_>) -> TestResult {
    let before = nmi::count();
    // SAFETY: `int 2` runs the NMI handler, which counts and returns.
    unsafe { core::arch::asm!("int 2") };
    kassert_eq!(nmi::count(), before + 1);
    let fault = catch_fault(|| {
        // SAFETY: as above, now with a recovery point armed.
        unsafe { core::arch::asm!("int 2") }
    });
    kassert!(fault.is_none(), "an NMI was taken for the test's own fault");
    kassert_eq!(nmi::count(), before + 2);
    let mut reported = false;
    nmi::report_pending(|line| {
        kprintln!("    {line}");
        reported = true;
    });
    kassert!(reported, "no NMI report");
    Ok(())
}

/// `crash=` with a kind it does not know changes nothing, in particular
/// not whether a later fatal fault ends QEMU (a test boot would hang).
fn unknown_crash_kind_keeps_exit_on_fatal(_: &Context<'_>) -> TestResult {
    for setting in [true, false] {
        let saved = cpu::set_exit_on_fatal(setting);
        super::crash("no-such-kind");
        let after = cpu::set_exit_on_fatal(saved);
        kassert_eq!(after, setting);
    }
    Ok(())
}

fn null_read_page_faults(_: &Context<'_>) -> TestResult {
    let fault = catch_fault(|| {
        // SAFETY: deliberately reads address 0, which is unmapped; the
        // resulting page fault is caught.
        black_box(unsafe { ptr::read_volatile(black_box(ptr::null::<u64>())) });
    });
    let fault = fault.ok_or(super::Failure {
        message: "reading address 0 did not fault",
        file: file!(),
        line: line!(),
    })?;
    kassert_eq!(fault.vector, vector::PAGE_FAULT);
    kassert_eq!(fault.address, 0);
    // Error code: not present (bit 0 clear), read (bit 1 clear), kernel (bit 2 clear).
    kassert_eq!(fault.error_code & 0b111, 0);
    Ok(())
}

fn breakpoint_returns(_: &Context<'_>) -> TestResult {
    let before = breakpoint_count();
    // SAFETY: int3 traps into the breakpoint handler, which logs and returns.
    unsafe { core::arch::asm!("int3") };
    kassert_eq!(breakpoint_count(), before + 1);
    Ok(())
}

fn invalid_opcode_is_reported(_: &Context<'_>) -> TestResult {
    // SAFETY: ud2 raises #UD, which catch_fault catches.
    let fault = catch_fault(|| unsafe { core::arch::asm!("ud2") });
    kassert_eq!(
        fault.map(|fault| fault.vector),
        Some(vector::INVALID_OPCODE)
    );
    Ok(())
}

fn non_canonical_access_faults(_: &Context<'_>) -> TestResult {
    let fault = catch_fault(|| {
        // SAFETY: deliberately reads a non-canonical address; the general
        // protection fault is caught.
        black_box(unsafe { ptr::read_volatile(black_box(0x8000_0000_0000_0000 as *const u64)) });
    });
    kassert_eq!(
        fault.map(|fault| fault.vector),
        Some(vector::GENERAL_PROTECTION)
    );
    Ok(())
}

/// Recurses with a 1 KiB frame until the stack runs into its guard page.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 128];
    black_box(&mut frame);
    recurse(depth + 1) + black_box(frame[7])
}

fn stack_overflow_double_faults(_: &Context<'_>) -> TestResult {
    let fault = catch_fault(|| {
        black_box(recurse(0));
    });
    // The push of the page-fault frame hits the same unmapped guard page,
    // so the CPU escalates to a double fault, handled on the IST stack.
    kassert_eq!(fault.map(|fault| fault.vector), Some(vector::DOUBLE_FAULT));
    let address = fault.map_or(0, |fault| fault.address);
    kassert!(
        crate::arch::x86_64::smp::kernel_stack_guard().contains(address),
        "CR2 is not in this CPU's stack guard page"
    );
    Ok(())
}

fn command_line_reaches_the_kernel(context: &Context<'_>) -> TestResult {
    kassert!(!context.boot_info.bootloader.is_empty());
    // The test ISOs pass `test ...` or `report`; a default boot (the
    // shell's `test` on `make run`) passes nothing to look for.
    let words = || context.boot_info.cmdline.split_ascii_whitespace();
    if !words().any(|word| !word.starts_with('/')) {
        return super::skip("the kernel was booted without a command line to check");
    }
    kassert!(words().any(|word| word == "test" || word == "report"));
    Ok(())
}

fn memory_map_matches_qemu_ram(context: &Context<'_>) -> TestResult {
    let map = context.boot_info.memory_map();
    kassert!(map
        .iter()
        .any(|region| region.kind == MemoryKind::Available && region.len > 0));
    let available = context.boot_info.available_bytes();
    let Some(ram) = cmos::qemu_ram_size() else {
        kassert!(false, "CMOS holds no RAM size (not QEMU?)");
        return Ok(());
    };
    kprintln!(
        "    QEMU RAM {} KiB, memory map available {} KiB",
        ram >> 10,
        available >> 10
    );
    // Firmware keeps some RAM for itself (BIOS data, ACPI tables, UEFI
    // runtime services): allow 1/8 of RAM plus 16 MiB, never more than RAM.
    kassert!(available <= ram, "map reports more RAM than QEMU has");
    kassert!(
        available >= ram.saturating_sub(ram / 8 + (16 << 20)),
        "map reports far less RAM than QEMU has"
    );
    Ok(())
}
