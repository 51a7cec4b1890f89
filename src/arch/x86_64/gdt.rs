//! The kernel GDT: kernel and user code and data segments plus a TSS
//! whose IST entry 1 is the double-fault stack (so a kernel stack overflow
//! still gets a report), entry 2 the NMI stack, and whose RSP0 is the
//! stack the CPU switches to when user mode is interrupted.
//!
//! The segment order is the one `syscall`/`sysret` dictate (STAR):
//! kernel code 0x08, kernel data 0x10, user data 0x18, user code 0x20,
//! then the TSS.

use alloc::boxed::Box;
use core::cell::UnsafeCell;

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the IDT, 0-based in the TSS array) of the
/// double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 1;
/// IST slot of the NMI stack: an NMI can arrive at any instruction, on
/// any stack, even one that is nearly full.
pub const NMI_IST: u16 = 2;

/// A CPU's GDT and the selectors in it (the same layout on every CPU, so
/// the shared IDT's code selector is right everywhere).
pub struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    user_data: SegmentSelector,
    user_code: SegmentSelector,
    tss: SegmentSelector,
    /// The TSS the descriptor points to, for [`Gdt::set_kernel_stack`].
    state: &'static CpuTss,
}

/// A CPU's task-state segment. The CPU reads it on every entry from user
/// mode (RSP0) and every IST interrupt; the kernel writes RSP0 before it
/// enters user mode, only on the CPU that owns the TSS.
pub struct CpuTss(UnsafeCell<TaskStateSegment>);

// SAFETY: a TSS is written only by its own CPU (`Gdt::set_kernel_stack`,
// reached through that CPU's `PerCpu` record) with interrupts off, and
// otherwise read only by the CPU itself.
unsafe impl Sync for CpuTss {}

static TSS: Once<CpuTss> = Once::new();
static GDT: Once<Gdt> = Once::new();

/// A TSS whose IST entries are the given double-fault and NMI stacks.
fn tss_with(double_fault_top: VirtAddr, nmi_top: VirtAddr) -> CpuTss {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = double_fault_top;
    tss.interrupt_stack_table[usize::from(NMI_IST - 1)] = nmi_top;
    CpuTss(UnsafeCell::new(tss))
}

/// A GDT with the kernel's and user mode's code and data segments and
/// `tss`, in the order STAR needs.
fn gdt_with(tss: &'static CpuTss) -> Gdt {
    let mut table = GlobalDescriptorTable::new();
    let code = table.append(Descriptor::kernel_code_segment());
    let data = table.append(Descriptor::kernel_data_segment());
    let user_data = table.append(Descriptor::user_data_segment());
    let user_code = table.append(Descriptor::user_code_segment());
    // SAFETY: the TSS is 'static and stays valid for as long as the GDT
    // is loaded (forever); it is written only as `CpuTss` documents.
    let tss_descriptor = unsafe { Descriptor::tss_segment_unchecked(tss.0.get()) };
    let tss_selector = table.append(tss_descriptor);
    Gdt {
        table,
        code,
        data,
        user_data,
        user_code,
        tss: tss_selector,
        state: tss,
    }
}

impl Gdt {
    /// Sets the stack the CPU switches to when an interrupt, exception or
    /// `syscall` leaves user mode (TSS.RSP0). Call on the CPU owning this
    /// GDT, with interrupts off.
    pub fn set_kernel_stack(&self, top: VirtAddr) {
        // SAFETY: only this CPU writes its TSS (see `CpuTss`); the CPU
        // reads RSP0 only on a privilege change, which cannot happen
        // while this kernel code runs with interrupts off.
        unsafe { (*self.state.0.get()).privilege_stack_table[0] = top };
    }

    /// The user code selector (RPL 3).
    pub fn user_code(&self) -> SegmentSelector {
        self.user_code
    }

    /// The user data selector (RPL 3).
    pub fn user_data(&self) -> SegmentSelector {
        self.user_data
    }

    /// The kernel code selector.
    pub fn kernel_code(&self) -> SegmentSelector {
        self.code
    }

    /// The kernel data selector.
    pub fn kernel_data(&self) -> SegmentSelector {
        self.data
    }
}

/// Loads `gdt` on this CPU, reloads the segment registers and its TSS.
fn load(gdt: &'static Gdt) {
    gdt.table.load();
    // SAFETY: the selectors index the GDT just loaded, whose code segment is
    // a 64-bit ring-0 segment and whose data segment is writable; the TSS
    // descriptor points to a 'static TSS that no other CPU loads.
    unsafe {
        CS::set_reg(gdt.code);
        SS::set_reg(gdt.data);
        DS::set_reg(gdt.data);
        ES::set_reg(gdt.data);
        load_tss(gdt.tss);
    }
}

/// Builds and loads the boot CPU's GDT and TSS, and reloads the segment
/// registers.
pub fn init() {
    let tss = TSS.call_once(|| {
        tss_with(
            VirtAddr::new(super::sections::double_fault_stack_top()),
            VirtAddr::new(super::sections::nmi_stack_top()),
        )
    });
    load(GDT.call_once(|| gdt_with(tss)));
}

/// Builds an application processor's own GDT and TSS (kept for good: a
/// TSS is in use for as long as its CPU runs), with IST stacks at the
/// given tops, for [`load_for_ap`] on that CPU.
pub fn build_for_ap(double_fault_top: VirtAddr, nmi_top: VirtAddr) -> &'static Gdt {
    let tss: &'static CpuTss = Box::leak(Box::new(tss_with(double_fault_top, nmi_top)));
    Box::leak(Box::new(gdt_with(tss)))
}

/// Loads an application processor's tables from [`build_for_ap`] on the
/// CPU running it.
pub fn load_for_ap(gdt: &'static Gdt) {
    load(gdt);
}

/// The boot CPU's GDT.
pub fn boot() -> &'static Gdt {
    GDT.get().expect("gdt::init runs first at boot")
}

/// The kernel code selector (for IDT gates).
pub fn code_selector() -> SegmentSelector {
    GDT.get()
        .expect("gdt::init runs before the IDT is built")
        .code
}
