//! The boot report: what the firmware gave us and how memory is laid out.

use crate::arch::x86_64::sections;
use crate::boot::{BootInfo, Firmware};
use crate::kprintln;
use crate::units::HumanSize;

/// Prints firmware, bootloader, command line, the memory map as a table and
/// the kernel image's sections.
pub fn boot(info: &BootInfo<'_>, info_phys: u64) {
    let firmware = match info.firmware {
        Firmware::Bios => "BIOS",
        Firmware::Uefi => "UEFI",
    };
    kprintln!("firmware:     {firmware}");
    kprintln!("bootloader:   {}", info.bootloader);
    kprintln!("command line: {}", info.cmdline);
    kprintln!(
        "boot info:    {} bytes at {:#x} (copied into the kernel image)",
        info.total_size,
        info_phys
    );
    if let Some(framebuffer) = info.framebuffer {
        kprintln!(
            "framebuffer:  {:?} {}x{} {} bpp at {:#x}",
            framebuffer.kind,
            framebuffer.width,
            framebuffer.height,
            framebuffer.bpp,
            framebuffer.address
        );
    }
    for module in info.modules() {
        kprintln!(
            "module:       {:#x}-{:#x} {}",
            module.start,
            module.end,
            module.cmdline
        );
    }

    kprintln!();
    kprintln!(
        "memory map ({} entries from the bootloader):",
        info.memory_map().len()
    );
    kprintln!("  {:>18}  {:>18}  {:>10}  type", "start", "end", "size");
    for region in info.memory_map() {
        kprintln!(
            "  {:#018x}  {:#018x}  {:>10}  {}",
            region.start,
            region.end(),
            HumanSize(region.len),
            region.kind.name()
        );
    }
    kprintln!("  available RAM: {}", HumanSize(info.available_bytes()));

    kprintln!();
    let image = sections::kernel_image();
    kprintln!(
        "kernel image: {:#x}-{:#x} ({})",
        image.start,
        image.end,
        HumanSize(image.len())
    );
    for section in sections::kernel_sections() {
        kprintln!(
            "  {:<8} {:#010x}-{:#010x} {:>10}  r{}{}",
            section.name,
            section.span.start,
            section.span.end,
            HumanSize(section.span.len()),
            if section.writable { "w" } else { "-" },
            if section.executable { "x" } else { "-" },
        );
    }
    let guard = sections::boot_stack_guard();
    kprintln!(
        "  boot stack {:#x}-{:#x}, guard page at {:#x} (unmapped)",
        guard.end,
        sections::boot_stack_top(),
        guard.start
    );
}
