//! x86-64 glue: descriptor tables, exception entry, CPU helpers, linker symbols.

pub mod clock;
pub mod cmos;
pub mod cpu;
pub mod exceptions;
pub mod gdt;
pub mod idt;
pub mod lapic;
pub mod nmi;
pub mod sections;
pub mod smp;
pub mod timer;
pub mod usercopy;

/// Loads the kernel's GDT (with a TSS for the double-fault stack) and IDT,
/// and moves the legacy PICs' vectors off the exceptions, masked. Call
/// once, early, before anything can fault.
pub fn init() {
    gdt::init();
    idt::init();
    timer::remap_and_mask_pics();
    smp::init_boot_cpu();
}
