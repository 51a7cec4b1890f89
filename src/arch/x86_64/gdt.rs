//! The kernel GDT: code and data segments plus a TSS whose IST entry 1 is
//! the double-fault stack (so a kernel stack overflow still gets a report)
//! and entry 2 the NMI stack.

use alloc::boxed::Box;

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
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<Gdt> = Once::new();

/// A TSS whose IST entries are the given double-fault and NMI stacks.
fn tss_with(double_fault_top: VirtAddr, nmi_top: VirtAddr) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = double_fault_top;
    tss.interrupt_stack_table[usize::from(NMI_IST - 1)] = nmi_top;
    tss
}

/// A GDT with the kernel's code and data segments and `tss`.
fn gdt_with(tss: &'static TaskStateSegment) -> Gdt {
    let mut table = GlobalDescriptorTable::new();
    let code = table.append(Descriptor::kernel_code_segment());
    let data = table.append(Descriptor::kernel_data_segment());
    let tss = table.append(Descriptor::tss_segment(tss));
    Gdt {
        table,
        code,
        data,
        tss,
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
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss_with(double_fault_top, nmi_top)));
    Box::leak(Box::new(gdt_with(tss)))
}

/// Loads an application processor's tables from [`build_for_ap`] on the
/// CPU running it.
pub fn load_for_ap(gdt: &'static Gdt) {
    load(gdt);
}

/// The kernel code selector (for IDT gates).
pub fn code_selector() -> SegmentSelector {
    GDT.get()
        .expect("gdt::init runs before the IDT is built")
        .code
}
