//! Small CPU helpers: halting, QEMU exit, time stamp counter, feature bits.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr4, Cr4Flags};

/// I/O port of QEMU's `isa-debug-exit` device (see the Makefile).
const QEMU_EXIT_PORT: u16 = 0xF4;

/// Status written to `isa-debug-exit`; QEMU exits with `(value << 1) | 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QemuExitCode {
    /// QEMU exits with status 33.
    Success = 0x10,
    /// QEMU exits with status 35.
    Failure = 0x11,
}

static EXIT_ON_FATAL: AtomicBool = AtomicBool::new(false);

/// In test mode a panic or fatal fault ends QEMU with a failure status
/// instead of halting, so the test runner sees it at once. Returns the
/// previous setting.
pub fn set_exit_on_fatal(exit: bool) -> bool {
    EXIT_ON_FATAL.swap(exit, Ordering::SeqCst)
}

/// Halts the CPU forever, interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Leaves QEMU with `code`. On real hardware the port write does nothing
/// and the CPU halts.
pub fn qemu_exit(code: QemuExitCode) -> ! {
    let mut port = Port::<u32>::new(QEMU_EXIT_PORT);
    // SAFETY: writing to the isa-debug-exit port has no effect on memory;
    // without the device (real hardware) the write is ignored.
    unsafe { port.write(code as u32) };
    halt_forever()
}

/// The end of every fatal path: exit QEMU in test mode, halt otherwise.
pub fn fatal_stop() -> ! {
    if EXIT_ON_FATAL.load(Ordering::SeqCst) {
        qemu_exit(QemuExitCode::Failure)
    }
    halt_forever()
}

/// Reads the time stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads a counter.
    unsafe { _rdtsc() }
}

/// CPU features the memory manager cares about.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// 1 GiB pages (CPUID 0x8000_0001 EDX bit 26).
    pub gigabyte_pages: bool,
    /// Global pages (CPUID 1 EDX bit 13).
    pub global_pages: bool,
    /// Invariant TSC (CPUID 0x8000_0007 EDX bit 8).
    pub invariant_tsc: bool,
    /// Supervisor-mode execution prevention (CPUID 7.0 EBX bit 7).
    pub smep: bool,
    /// Supervisor-mode access prevention (CPUID 7.0 EBX bit 20).
    pub smap: bool,
    /// User-mode instruction prevention (CPUID 7.0 ECX bit 2).
    pub umip: bool,
    /// Running under a hypervisor (CPUID 1 ECX bit 31), QEMU's TCG
    /// included.
    pub hypervisor: bool,
}

/// Reads the CPUID feature bits.
pub fn features() -> Features {
    // CPUID is an unprivileged, side-effect-free instruction; the boot stub
    // has already checked that the extended leaves exist.
    let basic = __cpuid(1);
    let has_structured = __cpuid(0).eax >= 7;
    let structured = if has_structured {
        __cpuid_count(7, 0)
    } else {
        __cpuid(0)
    };
    let extended = __cpuid(0x8000_0001);
    let max_extended = __cpuid(0x8000_0000).eax;
    let power = if max_extended >= 0x8000_0007 {
        __cpuid(0x8000_0007).edx
    } else {
        0
    };
    Features {
        gigabyte_pages: extended.edx & (1 << 26) != 0,
        global_pages: basic.edx & (1 << 13) != 0,
        invariant_tsc: power & (1 << 8) != 0,
        smep: has_structured && structured.ebx & (1 << 7) != 0,
        smap: has_structured && structured.ebx & (1 << 20) != 0,
        umip: has_structured && structured.ecx & (1 << 2) != 0,
        hypervisor: basic.ecx & (1 << 31) != 0,
    }
}

/// The CR4 protections [`harden`] turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// CR4.PGE: global pages (the direct map) survive CR3 reloads.
    pub global_pages: bool,
    /// CR4.SMEP: the kernel faults on executing a user page.
    pub smep: bool,
    /// CR4.SMAP: the kernel faults on touching a user page (outside an
    /// explicit `stac`/`clac` window).
    pub smap: bool,
    /// CR4.UMIP: user mode cannot read descriptor-table registers.
    pub umip: bool,
}

/// The CR4 bits of each protection, read from the register.
pub fn protections() -> Protections {
    let cr4 = Cr4::read();
    Protections {
        global_pages: cr4.contains(Cr4Flags::PAGE_GLOBAL),
        smep: cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        smap: cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
        umip: cr4.contains(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
    }
}

/// Turns on every CR4 protection the CPU offers (PGE, SMEP, SMAP, UMIP);
/// returns what is on afterwards.
pub fn harden(features: &Features) -> Protections {
    let mut cr4 = Cr4::read();
    cr4.set(Cr4Flags::PAGE_GLOBAL, features.global_pages);
    cr4.set(
        Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION,
        features.smep,
    );
    cr4.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, features.smap);
    cr4.set(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION, features.umip);
    // SAFETY: each bit is set only where CPUID offers the feature. SMEP and
    // SMAP restrict the kernel from user pages, which it neither executes
    // nor touches (no user mappings exist yet); UMIP restricts user mode
    // only; PGE keeps global entries across CR3 loads, and the VMM's full
    // flush toggles PGE so that even those are dropped.
    unsafe { Cr4::write(cr4) };
    protections()
}

/// Drops every TLB entry, global ones included (toggling CR4.PGE when it
/// is on; a CR3 reload keeps global entries).
pub fn flush_tlb_everything() {
    let cr4 = Cr4::read();
    if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
        // SAFETY: clearing and restoring PGE changes no translation; it only
        // makes the CPU drop all TLB entries (SDM vol. 3, 4.10.4.1).
        unsafe {
            Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
            Cr4::write(cr4);
        }
    } else {
        x86_64::instructions::tlb::flush_all();
    }
}

/// The current frame pointer (RBP), for backtraces.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}

/// Prints up to 16 return addresses by following the frame-pointer chain
/// (the kernel is built with frame pointers). Symbolise them with
/// `addr2line -e build/kernel.elf ADDRESS`.
pub fn print_backtrace(mut rbp: u64, print: impl Fn(core::fmt::Arguments<'_>)) {
    let image = super::sections::kernel_image();
    print(format_args!(
        "backtrace (addr2line -e build/kernel.elf ...):\n"
    ));
    for depth in 0..16 {
        // A frame is [saved rbp, return address]; both must be inside the image.
        if !rbp.is_multiple_of(8) || rbp < image.start || rbp + 16 > image.end {
            break;
        }
        // SAFETY: rbp is 8-aligned and the 16 bytes it points to are inside
        // the kernel image, which is mapped and readable.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        print(format_args!("  #{depth:<2} {ret:#x}\n"));
        rbp = next;
    }
}
