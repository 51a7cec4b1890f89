//! Small CPU helpers: halting, QEMU exit, time stamp counter, feature bits.

use core::arch::x86_64::{__cpuid, _rdtsc};
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

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
}

/// Reads the CPUID feature bits.
pub fn features() -> Features {
    // CPUID is an unprivileged, side-effect-free instruction; the boot stub
    // has already checked that the extended leaves exist.
    let basic = __cpuid(1);
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
