//! The kernel image's sections, from the symbols linker.ld exports. Their
//! ranges are physical and, identity-mapped, virtual alike.

use mm::layout::PAGE_SIZE;
use mm::pmm::PhysRange;

/// A section of the kernel image and the access it needs.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// Section name as in linker.ld.
    pub name: &'static str,
    /// Where it is.
    pub span: PhysRange,
    /// Needs write access.
    pub writable: bool,
    /// Needs execute access.
    pub executable: bool,
}

/// Symbols defined by linker.ld and asm/boot32.s; only their addresses matter.
mod symbols {
    extern "C" {
        pub static __kernel_start: u8;
        pub static __kernel_end: u8;
        pub static __text_start: u8;
        pub static __text_end: u8;
        pub static __rodata_start: u8;
        pub static __rodata_end: u8;
        pub static __data_start: u8;
        pub static __data_end: u8;
        pub static __bss_start: u8;
        pub static __bss_end: u8;
        pub static boot_stack_guard: u8;
        pub static boot_stack_top: u8;
        pub static double_fault_stack_guard: u8;
        pub static double_fault_stack_top: u8;
        pub static nmi_stack_guard: u8;
        pub static nmi_stack_top: u8;
    }
}

fn span(start: *const u8, end: *const u8) -> PhysRange {
    PhysRange {
        start: start as u64,
        end: end as u64,
    }
}

/// The whole loaded image, from the Multiboot2 header to the end of .bss.
pub fn kernel_image() -> PhysRange {
    span(
        &raw const symbols::__kernel_start,
        &raw const symbols::__kernel_end,
    )
}

/// The image's sections in address order.
pub fn kernel_sections() -> [Section; 4] {
    [
        Section {
            name: ".text",
            span: span(
                &raw const symbols::__text_start,
                &raw const symbols::__text_end,
            ),
            writable: false,
            executable: true,
        },
        Section {
            name: ".rodata",
            span: span(
                &raw const symbols::__rodata_start,
                &raw const symbols::__rodata_end,
            ),
            writable: false,
            executable: false,
        },
        Section {
            name: ".data",
            span: span(
                &raw const symbols::__data_start,
                &raw const symbols::__data_end,
            ),
            writable: true,
            executable: false,
        },
        Section {
            name: ".bss",
            span: span(
                &raw const symbols::__bss_start,
                &raw const symbols::__bss_end,
            ),
            writable: true,
            executable: false,
        },
    ]
}

/// The page that starts at `symbol`.
fn page_at(symbol: *const u8) -> PhysRange {
    PhysRange::from_len(symbol as u64, PAGE_SIZE)
}

/// The unmapped guard page below the boot stack.
pub fn boot_stack_guard() -> PhysRange {
    page_at(&raw const symbols::boot_stack_guard)
}

/// The top of the boot stack.
pub fn boot_stack_top() -> u64 {
    &raw const symbols::boot_stack_top as u64
}

/// The unmapped guard page below the double-fault stack.
pub fn double_fault_stack_guard() -> PhysRange {
    page_at(&raw const symbols::double_fault_stack_guard)
}

/// The top of the double-fault (IST 1) stack.
pub fn double_fault_stack_top() -> u64 {
    &raw const symbols::double_fault_stack_top as u64
}

/// The unmapped guard page below the NMI stack.
pub fn nmi_stack_guard() -> PhysRange {
    page_at(&raw const symbols::nmi_stack_guard)
}

/// The top of the NMI (IST 2) stack.
pub fn nmi_stack_top() -> u64 {
    &raw const symbols::nmi_stack_top as u64
}
