//! The fixed memory layout of the design, as named constants.
//!
//! ```text
//! physical                                   virtual
//! 0x0000_0000  page 0: never mapped          (null dereference faults)
//! 0x0000_1000  PML4  \
//! 0x0000_2000  PDPT   | boot page tables,   identity-mapped
//! 0x0000_3000  PD     | built by asm/boot32.s
//! 0x0000_4000  PT     | (low 2 MiB)
//! 0x0000_5000  PT2   /  (2-4 MiB)
//! 0x0001_0000  bootstrap frame pool (up to 0x10_0000), identity-mapped
//! 0x0010_0000  kernel image (linker.ld), ends below 0x40_0000
//! 0x0040_0000  PMM-managed memory starts here
//! 0x1000_0000  kernel heap (virtual), 1 MiB at start, up to 16 MiB
//! ```
//!
//! Virtually, every address space shares the kernel's PML4 entry 0 (the
//! identity-mapped image and the heap above) and entries 256..511 (the
//! higher half); user memory is PML4 entries 1..=255,
//! [`USER_START`]..[`USER_END`].
#![forbid(unsafe_code)]

use x86_64::structures::paging::{PageSize as _, Size1GiB, Size2MiB, Size4KiB};

/// Size of a small page / frame.
pub const PAGE_SIZE: u64 = Size4KiB::SIZE;
/// Size of a 2 MiB huge page.
pub const HUGE_PAGE_SIZE: u64 = Size2MiB::SIZE;
/// Size of a 1 GiB huge page.
pub const GIANT_PAGE_SIZE: u64 = Size1GiB::SIZE;

/// Physical address of the boot PML4 (built by the assembly stub).
pub const BOOT_PML4: u64 = 0x1000;
/// Physical address of the boot PDPT.
pub const BOOT_PDPT: u64 = 0x2000;
/// Physical address of the boot page directory.
pub const BOOT_PD: u64 = 0x3000;
/// Physical address of the boot page table (maps the low 2 MiB in 4 KiB pages).
pub const BOOT_PT: u64 = 0x4000;
/// Physical address of the second boot page table (2-4 MiB, so the kernel
/// image may grow past 2 MiB); it follows [`BOOT_PT`] directly.
pub const BOOT_PT2: u64 = 0x5000;
/// End (exclusive) of the boot page tables.
pub const BOOT_TABLES_END: u64 = 0x6000;
/// End (exclusive) of what the boot page tables identity-map.
pub const BOOT_IDENTITY_END: u64 = 0x40_0000;

/// Physical page the application processors start in (real mode, from
/// INIT-SIPI-SIPI with vector `AP_TRAMPOLINE >> 12`): the trampoline's code
/// and GDT, and at [`AP_PARAMS`] what the starting CPU needs. Below the
/// bootstrap pool and above the boot page tables, so no allocator ever
/// hands it out.
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// Where in the trampoline page the boot CPU leaves the page-table root,
/// stack top, CPU index and Rust entry for the CPU starting.
pub const AP_PARAMS: u64 = AP_TRAMPOLINE + 0xF00;
/// Size of each application processor's kernel stack, above its guard
/// page (its double-fault and NMI stacks are the boot CPU's sizes).
pub const AP_STACK_SIZE: usize = 64 * 1024;
/// Virtual base of the application processors' stacks: one
/// [`CPU_STACKS_SLOT`] per CPU, guard pages unmapped between the stacks.
pub const CPU_STACKS_START: u64 = 0xFFFF_B000_0000_0000;
/// Virtual space per CPU for its stacks and their guard pages.
pub const CPU_STACKS_SLOT: u64 = 256 * 1024;

/// Start of the bootstrap frame pool (identity-mapped).
pub const BOOTSTRAP_POOL_START: u64 = 0x1_0000;
/// End (exclusive) of the bootstrap frame pool.
pub const BOOTSTRAP_POOL_END: u64 = 0x10_0000;

/// Physical load address of the kernel image.
pub const KERNEL_LOAD: u64 = 0x10_0000;
/// First physical address the PMM manages.
pub const PMM_START: u64 = BOOT_IDENTITY_END;

/// Virtual base of the kernel heap.
pub const HEAP_START: u64 = 0x1000_0000;
/// Heap size mapped at init.
pub const HEAP_INITIAL_SIZE: u64 = 1024 * 1024;
/// Hard cap on the heap size.
pub const HEAP_MAX_SIZE: u64 = 16 * 1024 * 1024;

const _: () = assert!(BOOT_TABLES_END <= BOOTSTRAP_POOL_START);
const _: () = assert!(BOOT_PT2 == BOOT_PT + 4096 && BOOT_TABLES_END == BOOT_PT2 + 4096);
const _: () =
    assert!(BOOT_TABLES_END <= AP_TRAMPOLINE && AP_TRAMPOLINE + 4096 <= BOOTSTRAP_POOL_START);
const _: () = assert!(AP_TRAMPOLINE.is_multiple_of(4096) && AP_TRAMPOLINE < 0x10_0000);
const _: () = assert!(
    (AP_STACK_SIZE + DOUBLE_FAULT_STACK_SIZE + NMI_STACK_SIZE) as u64 + 4 * 4096 <= CPU_STACKS_SLOT
);
const _: () = assert!(BOOTSTRAP_POOL_END <= KERNEL_LOAD);
const _: () = assert!(KERNEL_LOAD < PMM_START);
const _: () = assert!(HEAP_START.is_multiple_of(HUGE_PAGE_SIZE));
const _: () = assert!(HEAP_INITIAL_SIZE <= HEAP_MAX_SIZE);

/// First user virtual address: PML4 entry 1 (512 GiB). Entry 0 stays the
/// kernel's, because the kernel image is linked and identity-mapped at
/// 1 MiB and its heap sits at [`HEAP_START`]; moving the image to the
/// higher half would give user space entry 0 too (future work).
pub const USER_START: u64 = 1 << 39;
/// End (exclusive) of user virtual memory: the end of the lower canonical
/// half, after PML4 entry 255.
pub const USER_END: u64 = 1 << 47;
/// End (exclusive) of the user memory a region may cover: the last page
/// below [`USER_END`] stays unmapped. An instruction ending there would
/// leave a non-canonical return address, which `sysret` on Intel CPUs
/// faults on in ring 0 (Linux keeps the same guard page); and every
/// region end stays a canonical `VirtAddr`.
pub const USER_TOP: u64 = USER_END - PAGE_SIZE;

/// Whether `address` is in the user half ([`USER_START`]..[`USER_END`]).
pub const fn is_user(address: u64) -> bool {
    USER_START <= address && address < USER_END
}

const _: () = assert!(HEAP_START + HEAP_MAX_SIZE <= USER_START);
const _: () = assert!(USER_START.is_multiple_of(GIANT_PAGE_SIZE * 512));

/// Virtual base of the direct map of all physical RAM (higher half).
pub const DIRECT_MAP_OFFSET: u64 = 0xFFFF_8000_0000_0000;

/// Size of the boot stack (asm/boot32.s), above its guard page.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// Size of the double-fault IST stack, above its guard page.
pub const DOUBLE_FAULT_STACK_SIZE: usize = 16 * 1024;
/// Size of the NMI IST stack, above its guard page.
pub const NMI_STACK_SIZE: usize = 16 * 1024;

/// Virtual base where device memory (the framebuffer) is mapped.
pub const MMIO_START: u64 = 0xFFFF_C000_0000_0000;
