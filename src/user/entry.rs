//! Entering and leaving ring 3: the `syscall` MSRs, the kernel stack for
//! entries from user mode, and [`enter`], which runs a loaded program
//! until it exits or is ended (asm/user.s does the switching).

use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use crate::arch::x86_64::smp;

/// User code selector (GDT entry 4, RPL 3), as asm/user.s pushes it.
pub const USER_CS: u64 = 0x23;
/// User data selector (GDT entry 3, RPL 3).
pub const USER_DS: u64 = 0x1B;

core::arch::global_asm!(
    include_str!("../../asm/user.s"),
    include_str!("../../asm/user_programs.s"),
    USER_CS = const USER_CS,
    USER_DS = const USER_DS,
);

extern "C" {
    static mut user_entry_clac: u8;
    fn user_enter(entry: u64, user_rsp: u64, arg0: u64, arg1: u64, arg2: u64) -> u64;
    fn user_exit_resume(status: u64) -> !;
    fn syscall_entry();
}

/// How a user program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It called exit with this code.
    Exited(i64),
    /// The kernel ended it.
    Killed(Kill),
}

/// Why the kernel ended a program, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kill {
    /// The exception vector.
    pub vector: u64,
    /// Its error code.
    pub error_code: u64,
    /// The faulting address (CR2) for page faults.
    pub address: u64,
    /// The instruction.
    pub rip: u64,
    /// What the address space said about the address.
    pub reason: KillReason,
}

/// The address space's verdict on a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// Not a page fault (#GP, #UD, ...).
    Exception,
    /// No region holds the address.
    NoRegion,
    /// A region holds it, but not for this access; its rights.
    NotPermitted(mm::aspace::Perms),
    /// A kernel address (outside the user half).
    KernelAddress,
    /// No frame was left to fill the page.
    OutOfMemory,
    /// The space's bookkeeping disagreed with its page tables (a kernel
    /// bug, logged as an error).
    Inconsistent,
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::arch::x86_64::exceptions::{name, vector, PageFaultCode};
        write!(f, "{} at RIP {:#x}", name(self.vector), self.rip)?;
        if self.vector == vector::PAGE_FAULT {
            write!(
                f,
                ": {} at {:#x} ({})",
                PageFaultCode(self.error_code),
                self.address,
                match self.reason {
                    KillReason::Exception => "fault".into(),
                    KillReason::NoRegion => "no region".into(),
                    KillReason::NotPermitted(perms) =>
                        alloc::format!("the region allows {perms} only"),
                    KillReason::KernelAddress => "outside the user half".into(),
                    KillReason::OutOfMemory => "out of memory".into(),
                    KillReason::Inconsistent => "inconsistent address space".into(),
                } as alloc::string::String
            )
        } else {
            write!(f, ", error code {:#x}", self.error_code)
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited with code {code}"),
            Self::Killed(kill) => write!(f, "ended by the kernel: {kill}"),
        }
    }
}

/// Sets up `syscall`/`sysret` on this CPU: EFER.SCE, the selectors
/// (STAR), the entry point (LSTAR) and the flags cleared on entry
/// (interrupts, traps, direction, alignment check: a user's AC=1 must
/// not switch SMAP off in the kernel). Call on every CPU after its GDT.
pub fn init_cpu() {
    let gdt = smp::current().map_or_else(crate::arch::x86_64::gdt::boot, |cpu| cpu.gdt());
    assert_eq!(u64::from(gdt.user_code().0), USER_CS, "GDT layout");
    assert_eq!(u64::from(gdt.user_data().0), USER_DS, "GDT layout");
    Star::write(
        gdt.user_code(),
        gdt.user_data(),
        gdt.kernel_code(),
        gdt.kernel_data(),
    )
    .expect("the GDT has the segment order STAR needs");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK,
    );
    // SAFETY: enabling `syscall` only gives user mode an entry point, which
    // LSTAR now names (asm/user.s).
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
    if crate::arch::x86_64::cpu::protections().smap {
        // SAFETY: a byte the exception entry reads; every CPU stores the
        // same value (all have SMAP or none), before any user program runs.
        unsafe { (&raw mut user_entry_clac).write_volatile(1) };
    }
}

/// Called by `user_enter` with the stack top below its saved registers.
#[no_mangle]
extern "C" fn user_set_kernel_stack(top: u64) {
    if let Some(cpu) = smp::current() {
        cpu.set_kernel_stack(VirtAddr::new(top));
    }
}

/// Where the fault handler leaves a kill report for [`enter`] (this
/// CPU's, set for the duration of the program).
fn exit_slot() -> Option<&'static AtomicPtr<Exit>> {
    smp::current().map(|cpu| &cpu.user_exit)
}

/// Status words `user_exit_resume` passes back.
const STATUS_EXITED: u64 = 0;
const STATUS_KILLED: u64 = 1;

/// Runs user code at `entry` with the stack at `stack_top` and three
/// arguments (RDI, RSI, RDX) until it exits or is ended. The caller has
/// loaded the program's address space on this CPU and keeps it loaded.
pub fn enter(entry: VirtAddr, stack_top: VirtAddr, args: [u64; 3]) -> Exit {
    let cpu = smp::current().expect("per-CPU data exists before user mode");
    assert!(!cpu.in_user_program(), "user programs do not nest");
    let mut exit = Exit::Exited(0);
    cpu.user_exit.store(&raw mut exit, Ordering::SeqCst);
    // SAFETY: user_enter saves the kernel's callee-saved registers and
    // stack pointer in this CPU's record and drops to ring 3 at `entry`
    // (a user address: iretq with the user selectors); it returns only
    // through user_exit_resume, called by the exit system call or the
    // fault handler, which restores them. `exit` stays alive meanwhile.
    let status = unsafe {
        user_enter(
            entry.as_u64(),
            stack_top.as_u64(),
            args[0],
            args[1],
            args[2],
        )
    };
    cpu.user_exit.store(core::ptr::null_mut(), Ordering::SeqCst);
    match status {
        STATUS_EXITED | STATUS_KILLED => exit,
        other => unreachable!("user_exit_resume status {other}"),
    }
}

/// Ends the running program with `exit` and returns from its [`enter`].
/// Abandons every frame between here and there: the caller must own
/// nothing that needs dropping (no lock guards, no boxes).
pub fn leave(exit: Exit) -> ! {
    let status = match exit {
        Exit::Exited(_) => STATUS_EXITED,
        Exit::Killed(_) => STATUS_KILLED,
    };
    if let Some(slot) = exit_slot() {
        let target = slot.load(Ordering::SeqCst);
        if !target.is_null() {
            // SAFETY: `enter` stored a pointer to its own `exit`, alive
            // until user_enter returns, which has not happened yet.
            unsafe { target.write(exit) };
        }
    }
    // SAFETY: called from the kernel side of a user entry (system call or
    // exception from ring 3) on this CPU, so `enter` saved a resume point.
    unsafe { user_exit_resume(status) }
}
