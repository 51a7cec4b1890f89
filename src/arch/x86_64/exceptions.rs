//! CPU exception handling: the Rust side of asm/exceptions.s.
//!
//! Every exception reaches `exception_dispatch` with a [`TrapFrame`].
//! Breakpoints are logged and resumed. While a test has armed a recovery
//! point ([`catch_fault`]), any other exception is recorded and the test
//! resumes after it. Everything else is fatal: a report with the vector,
//! decoded error code, CR2, registers and a backtrace goes to serial and
//! screen, then the kernel stops.

use core::ffi::c_void;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::control::Cr2;

use super::{cpu, sections};
use crate::console;

/// Registers saved by the stubs, in stack order (lowest address first).
#[derive(Debug)]
#[repr(C)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector pushed by the stub.
    pub vector: u64,
    /// Error code pushed by the CPU (0 for vectors without one).
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Vector numbers used by name.
pub mod vector {
    /// The non-maskable interrupt.
    pub const NMI: u64 = 2;
    /// #BP, `int3`.
    pub const BREAKPOINT: u64 = 3;
    /// #UD.
    pub const INVALID_OPCODE: u64 = 6;
    /// #DF.
    pub const DOUBLE_FAULT: u64 = 8;
    /// #GP.
    pub const GENERAL_PROTECTION: u64 = 13;
    /// #PF.
    pub const PAGE_FAULT: u64 = 14;
    /// IRQ 0, the PIT, after the PIC remap.
    pub const TIMER: u64 = 32;
    /// The IPI that wakes a parked CPU for work.
    pub const WORK_IPI: u64 = 240;
    /// The IPI that asks for a TLB shootdown.
    pub const SHOOTDOWN_IPI: u64 = 241;
    /// The local APIC's spurious-interrupt vector.
    pub const SPURIOUS: u64 = 255;
}

/// The name of an exception vector.
pub fn name(vector: u64) -> &'static str {
    const NAMES: [&str; 33] = [
        "divide error (#DE)",
        "debug (#DB)",
        "non-maskable interrupt (NMI)",
        "breakpoint (#BP)",
        "overflow (#OF)",
        "bound range exceeded (#BR)",
        "invalid opcode (#UD)",
        "device not available (#NM)",
        "double fault (#DF)",
        "coprocessor segment overrun",
        "invalid TSS (#TS)",
        "segment not present (#NP)",
        "stack-segment fault (#SS)",
        "general protection fault (#GP)",
        "page fault (#PF)",
        "reserved (15)",
        "x87 floating-point error (#MF)",
        "alignment check (#AC)",
        "machine check (#MC)",
        "SIMD floating-point error (#XM)",
        "virtualization exception (#VE)",
        "control protection (#CP)",
        "reserved (22)",
        "reserved (23)",
        "reserved (24)",
        "reserved (25)",
        "reserved (26)",
        "reserved (27)",
        "hypervisor injection (#HV)",
        "VMM communication (#VC)",
        "security exception (#SX)",
        "reserved (31)",
        "timer interrupt (IRQ 0)",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("unknown")
}

/// A page-fault error code, decoded for people.
pub struct PageFaultCode(pub u64);

impl fmt::Display for PageFaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        let access = if code & (1 << 4) != 0 {
            "instruction fetch"
        } else if code & (1 << 1) != 0 {
            "write"
        } else {
            "read"
        };
        let cause = if code & 1 != 0 {
            "protection violation"
        } else {
            "page not present"
        };
        let mode = if code & (1 << 2) != 0 {
            "user mode"
        } else {
            "kernel mode"
        };
        write!(f, "{access}, {cause}, {mode}")?;
        if code & (1 << 3) != 0 {
            f.write_str(", reserved bit set in a page-table entry")?;
        }
        if code & (1 << 5) != 0 {
            f.write_str(", protection key")?;
        }
        Ok(())
    }
}

/// What a caught exception looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtFault {
    /// Exception vector.
    pub vector: u64,
    /// Error code (0 if the vector has none).
    pub error_code: u64,
    /// CR2 for page and double faults, 0 otherwise.
    pub address: u64,
    /// Where the faulting instruction is.
    pub rip: u64,
}

extern "C" {
    fn fault_catch_call(func: extern "C" fn(*mut c_void), arg: *mut c_void) -> u64;
    fn fault_catch_resume();
}

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// How many breakpoint exceptions have been handled (and resumed).
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::SeqCst)
}

/// Runs `func` with a recovery point armed. Returns `None` if it finished,
/// or the exception that interrupted it.
///
/// The frames of `func` are abandoned when it faults: whatever it owns is
/// not dropped, so it should own nothing that needs dropping.
pub fn catch_fault<F: FnOnce()>(func: F) -> Option<CaughtFault> {
    extern "C" fn trampoline<F: FnOnce()>(arg: *mut c_void) {
        // SAFETY: `arg` is the `&mut Option<F>` passed below, alive for the
        // whole call.
        let slot = unsafe { &mut *arg.cast::<Option<F>>() };
        if let Some(func) = slot.take() {
            func();
        }
    }
    let mut slot = Some(func);
    // SAFETY: fault_catch_call saves the callee-saved registers, calls the
    // trampoline with our pointer, and returns 1 only after the dispatcher
    // redirected a fault to fault_catch_resume, which restores them.
    let faulted = unsafe { fault_catch_call(trampoline::<F>, (&raw mut slot).cast::<c_void>()) };
    (faulted != 0).then(|| {
        // What the dispatcher recorded in this CPU's record.
        let caught = super::smp::current()
            .map(|cpu| {
                cpu.caught
                    .each_ref()
                    .map(|field| field.load(Ordering::SeqCst))
            })
            .unwrap_or_default();
        CaughtFault {
            vector: caught[0],
            error_code: caught[1],
            address: caught[2],
            rip: caught[3],
        }
    })
}

/// Entry from asm/exceptions.s, interrupts off.
#[no_mangle]
extern "C" fn exception_dispatch(frame: &mut TrapFrame) {
    let address = match frame.vector {
        vector::PAGE_FAULT | vector::DOUBLE_FAULT => Cr2::read_raw(),
        _ => 0,
    };

    // Before the recovery point: an NMI during a test is not the test's
    // fault, and it must not end the test.
    if frame.vector == vector::NMI {
        if super::smp::stopping() {
            // Another CPU is stopping the machine on a fatal error.
            super::cpu::halt_forever();
        }
        match super::nmi::record(frame.rip) {
            Ok(()) => return,
            Err(error) => console::fatal(|out| {
                report(out, frame, address);
                out.print(format_args!("    NMI source: {error}\n"));
            }),
        }
    }

    if frame.vector == vector::TIMER {
        super::timer::interrupt();
        return;
    }
    if frame.vector == vector::WORK_IPI {
        super::smp::work_interrupt();
        return;
    }
    if frame.vector == vector::SHOOTDOWN_IPI {
        super::smp::shootdown_interrupt();
        return;
    }
    if frame.vector == vector::SPURIOUS {
        return; // no EOI for a spurious interrupt
    }

    if frame.vector == vector::BREAKPOINT {
        // int3 is a trap: RIP already points past it.
        BREAKPOINTS.fetch_add(1, Ordering::SeqCst);
        log::info!("breakpoint at {:#x}, resuming", frame.rip - 1);
        return;
    }

    if frame.cs & 3 == 3 {
        // A user program faulted: resolved (demand paging, copy-on-write)
        // or ended; the kernel goes on either way.
        crate::user::fault::from_user(frame, address);
        return;
    }

    // A kernel-mode #PF or #GP, perhaps in copy_from_user/copy_to_user on
    // a user address.
    if matches!(
        frame.vector,
        vector::PAGE_FAULT | vector::GENERAL_PROTECTION
    ) && super::usercopy::in_copy(frame.rip)
    {
        // A user page that is only not populated yet (or copy-on-write) is
        // filled and the copy instruction restarted; only a fault that
        // cannot be resolved is fixed up (the copy then returns an error).
        if frame.vector == vector::PAGE_FAULT
            && crate::user::fault::resolve(address, frame.error_code).is_ok()
        {
            return;
        }
        if super::usercopy::fixup(frame, address) {
            return;
        }
    }

    // The recovery point is this CPU's (its PerCpu record, written only by
    // fault_catch_call on this CPU).
    let this_cpu = super::smp::current();
    if let Some(cpu) = this_cpu.filter(|cpu| cpu.fault_catch_armed()) {
        let fields = [frame.vector, frame.error_code, address, frame.rip];
        for (slot, value) in cpu.caught.iter().zip(fields) {
            slot.store(value, Ordering::SeqCst);
        }
        // Resume in fault_catch_resume, which switches back to the stack
        // saved when the recovery point was armed.
        frame.rip = fault_catch_resume as *const () as u64;
        return;
    }

    console::fatal(|out| report(out, frame, address))
}

fn report(console: &console::Emergency, frame: &TrapFrame, address: u64) {
    let out = |args: fmt::Arguments<'_>| console.print(args);
    out(format_args!(
        "\n!!! CPU EXCEPTION: {} (vector {}) at RIP {:#x}\n",
        name(frame.vector),
        frame.vector,
        frame.rip
    ));
    match frame.vector {
        vector::PAGE_FAULT => {
            out(format_args!(
                "    faulting address (CR2): {address:#018x}\n"
            ));
            out(format_args!(
                "    error code {:#x}: {}\n",
                frame.error_code,
                PageFaultCode(frame.error_code)
            ));
        }
        vector::DOUBLE_FAULT => {
            out(format_args!(
                "    CR2 (last page-fault address): {address:#018x}\n"
            ));
        }
        _ => out(format_args!("    error code: {:#x}\n", frame.error_code)),
    }
    for guard in [
        sections::boot_stack_guard(),
        sections::double_fault_stack_guard(),
        sections::nmi_stack_guard(),
    ] {
        if guard.contains(address) || guard.contains(frame.rsp) {
            out(format_args!(
                "    the address is in a stack guard page: kernel stack overflow\n"
            ));
        }
    }
    if address < mm::layout::PAGE_SIZE && frame.vector == vector::PAGE_FAULT {
        out(format_args!(
            "    the address is in page 0: null pointer dereference\n"
        ));
    }
    let kernel_mode = frame.error_code & (1 << 2) == 0;
    if frame.vector == vector::PAGE_FAULT && kernel_mode && mm::layout::is_user(address) {
        out(format_args!(
            "    kernel touched a user address outside copy_from_user/copy_to_user\n"
        ));
    }
    out(format_args!(
        "    RSP {:#018x}  RFLAGS {:#018x}  CS {:#x}  SS {:#x}\n",
        frame.rsp, frame.rflags, frame.cs, frame.ss
    ));
    out(format_args!(
        "    RAX {:#018x}  RBX {:#018x}  RCX {:#018x}  RDX {:#018x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx
    ));
    out(format_args!(
        "    RSI {:#018x}  RDI {:#018x}  RBP {:#018x}  R8  {:#018x}\n",
        frame.rsi, frame.rdi, frame.rbp, frame.r8
    ));
    out(format_args!(
        "    R9  {:#018x}  R10 {:#018x}  R11 {:#018x}  R12 {:#018x}\n",
        frame.r9, frame.r10, frame.r11, frame.r12
    ));
    out(format_args!(
        "    R13 {:#018x}  R14 {:#018x}  R15 {:#018x}\n",
        frame.r13, frame.r14, frame.r15
    ));
    out(format_args!("    #0  {:#x}\n", frame.rip));
    cpu::print_backtrace(frame.rbp, out);
}
