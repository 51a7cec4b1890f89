//! IncroOS kernel entry point: the Rust side of the boot.
//!
//! asm/boot32.s checks the machine, builds the first page tables and enters
//! long mode; asm/boot64.s calls [`kernel_entry`]. From here the kernel sets
//! up its console and exception handling, reads the boot information, and
//! then either prints the boot report or runs the in-kernel tests.
#![cfg_attr(target_os = "none", no_std, no_main)]

/// On the host this binary only explains itself: the kernel runs on bare metal.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("incroos is a kernel: build it with `make iso` and boot it with `make run`");
}

#[cfg(target_os = "none")]
mod kernel {
    use core::panic::PanicInfo;

    use incroos::arch::x86_64::{self as arch, cpu};
    use incroos::boot::{self, BootInfo, BootMode, CommandLine, Firmware, FramebufferKind};
    use incroos::display::{PixelFormat, TextFramebuffer};
    use incroos::units::HumanSize;
    use incroos::{console, kernel_mm, kprintln, ktest, report, shell};
    use mm::layout;

    // The boot stub. Constants shared with Rust are passed in by name, so
    // each is defined once (in mm::layout or boot) and named the same in asm.
    core::arch::global_asm!(
        include_str!("../asm/multiboot_header.s"),
        include_str!("../asm/boot32.s"),
        include_str!("../asm/boot64.s"),
        include_str!("../asm/exceptions.s"),
        include_str!("../asm/ap_trampoline.s"),
        MB2_HEADER_MAGIC = const boot::MULTIBOOT2_HEADER_MAGIC,
        MB2_BOOTLOADER_MAGIC = const boot::MULTIBOOT2_BOOTLOADER_MAGIC,
        BOOT_INFO_MAX = const boot::BOOT_INFO_MAX,
        BOOT_PML4 = const layout::BOOT_PML4,
        BOOT_PDPT = const layout::BOOT_PDPT,
        BOOT_PD = const layout::BOOT_PD,
        BOOT_PT = const layout::BOOT_PT,
        BOOT_PT2 = const layout::BOOT_PT2,
        BOOT_STACK_SIZE = const layout::BOOT_STACK_SIZE,
        DOUBLE_FAULT_STACK_SIZE = const layout::DOUBLE_FAULT_STACK_SIZE,
        NMI_STACK_SIZE = const layout::NMI_STACK_SIZE,
        AP_TRAMPOLINE = const layout::AP_TRAMPOLINE,
        AP_PARAMS = const layout::AP_PARAMS,
    );

    /// Called by asm/boot64.s in long mode, on the boot stack.
    ///
    /// `boot_info_phys` is where GRUB put the Multiboot2 information;
    /// `boot_info_copy` is the copy the stub made inside the kernel image.
    #[no_mangle]
    extern "C" fn kernel_entry(magic: u32, boot_info_phys: u32, boot_info_copy: *const u8) -> ! {
        let boot_start = cpu::rdtsc();
        console::init_serial();
        console::logger::init(log::LevelFilter::Info);
        arch::init();
        kprintln!("IncroOS: long mode reached, exceptions armed");
        let protections = cpu::harden(&cpu::features());
        incroos::user::entry::init_cpu();
        let state = |on: bool| if on { "on" } else { "off (CPU lacks it)" };
        kprintln!(
            "CPU protections: PGE {}, SMEP {}, SMAP {}, UMIP {}",
            state(protections.global_pages),
            state(protections.smep),
            state(protections.smap),
            state(protections.umip)
        );

        // SAFETY: the stub copied the boot information into this
        // BOOT_INFO_MAX-byte buffer in the kernel's .bss, which nothing
        // writes again; it is identity-mapped and lives forever.
        let bytes = unsafe { core::slice::from_raw_parts(boot_info_copy, boot::BOOT_INFO_MAX) };
        let info = match BootInfo::parse(magic, bytes) {
            Ok(mut info) => {
                info.physical_address = u64::from(boot_info_phys);
                info
            }
            Err(error) => {
                // Without boot information we cannot tell BIOS from UEFI; the
                // text screen is the better guess for a person watching.
                // SAFETY: the low 4 MiB, VGA memory included, are identity-mapped.
                unsafe { console::attach_vga_text() };
                console::fatal(|out| out.print(format_args!("IncroOS boot failed: {error}\n")));
            }
        };
        if wants_vga_text(&info) {
            // SAFETY: a BIOS boot in text mode has the VGA text buffer at
            // 0xB8000, which the boot page tables identity-map.
            unsafe { console::attach_vga_text() };
            kprintln!(
                "VGA text console: {}x{} characters at 0xb8000",
                console::vga::COLUMNS,
                console::vga::ROWS
            );
        }

        let cmdline = CommandLine::parse(info.cmdline);
        if let Some(level) = cmdline.log_level {
            log::set_max_level(level);
        }
        if let Some(word) = cmdline.unknown {
            log::warn!("ignoring unknown command-line word {word:?}");
        }
        let test_mode = cmdline.mode == BootMode::Test;
        cpu::set_exit_on_fatal(test_mode);

        let memory = init_memory(&info, cmdline.pmm_max);
        attach_framebuffer(&info);
        report::boot(&info);
        report::memory(&memory);
        report::frame_meta();
        let acpi = incroos::firmware::init(&info);
        report::acpi(&acpi);
        if let Ok((acpi, _)) = acpi {
            let pm_timer = acpi
                .fadt
                .and_then(|fadt| Some((fadt.pm_timer?, fadt.pm_timer_32bit)));
            let per_us = arch::clock::calibrate(pm_timer);
            kprintln!(
                "clock:        TSC {} MHz (measured against the ACPI PM timer)",
                per_us
            );
            if let Some(madt) = &acpi.madt {
                let cpus = arch::smp::start_all(madt, cmdline.smp.unwrap_or(usize::MAX));
                report::cpus(&cpus);
            }
        }
        report::numa(kernel_mm::numa::init(&info));
        let frames = kernel_mm::pmm::stats();
        kprintln!();
        kprintln!(
            "IncroOS up: {:?} boot, {} frames ({}) managed, kernel W^X, heap {} at {:#x}, boot took {} kcycles",
            info.firmware,
            frames.total,
            HumanSize(frames.total * layout::PAGE_SIZE),
            HumanSize(kernel_mm::heap::stats().mapped as u64),
            layout::HEAP_START,
            (cpu::rdtsc() - boot_start) / 1000
        );

        if let Some(kind) = cmdline.crash {
            ktest::crash(kind);
        }

        match cmdline.mode {
            BootMode::Test => ktest::run(
                &ktest::Context { boot_info: &info },
                cmdline.test_filter,
                cmdline.fail_pmm,
            ),
            BootMode::Report if cmdline.power_off_after_report => {
                kprintln!("IncroOS is up; powering off as asked (poweroff)");
                incroos::firmware::shut_down()
            }
            BootMode::Report if cmdline.exit_after_report => {
                kprintln!("IncroOS is up; leaving QEMU as asked (exit)");
                cpu::qemu_exit(cpu::QemuExitCode::Success)
            }
            BootMode::Report => shell::run(&info),
        }
    }

    /// Brings up the memory manager in the design's order, timing each step.
    /// A failure here is fatal: it is reported and the kernel stops.
    fn init_memory(info: &BootInfo<'_>, pmm_max: Option<u64>) -> report::Memory {
        let fail = |what: &str, error: &dyn core::fmt::Display| -> ! {
            console::fatal(|out| out.print(format_args!("IncroOS boot failed: {what}: {error}\n")))
        };
        let features = cpu::features();
        let start = cpu::rdtsc();
        let reservations = kernel_mm::reservations(info)
            .unwrap_or_else(|error| fail("reserving what the bootloader handed over", &error));
        let pool = kernel_mm::bootstrap::init(info, &reservations)
            .unwrap_or_else(|error| fail("bootstrap frame pool", &format_args!("{error:?}")));
        let after_pool = cpu::rdtsc();
        let direct_map = kernel_mm::direct_map::init(info, features.gigabyte_pages)
            .unwrap_or_else(|error| fail("direct map", &error));
        let after_direct_map = cpu::rdtsc();
        let pmm = kernel_mm::pmm::init(info, &reservations, pmm_max)
            .unwrap_or_else(|error| fail("physical memory manager", &error));
        let after_pmm = cpu::rdtsc();
        kernel_mm::vmm::init(features.gigabyte_pages);
        kernel_mm::vmm::protect_kernel(wants_vga_text(info))
            .unwrap_or_else(|error| fail("kernel W^X remap", &error));
        let after_vmm = cpu::rdtsc();
        let heap = kernel_mm::heap::init().unwrap_or_else(|error| fail("kernel heap", &error));
        kernel_mm::pmm::enable_frame_caches()
            .unwrap_or_else(|error| fail("per-CPU frame caches", &error));
        kernel_mm::frame_meta::init().unwrap_or_else(|error| fail("frame metadata", &error));
        kernel_mm::vmm::share_kernel_half()
            .unwrap_or_else(|error| fail("kernel half for address spaces", &error));
        let after_heap = cpu::rdtsc();
        report::Memory {
            heap,
            pool,
            direct_map,
            pmm,
            kcycles: [
                (after_pool - start) / 1000,
                (after_direct_map - after_pool) / 1000,
                (after_pmm - after_direct_map) / 1000,
                (after_vmm - after_pmm) / 1000,
                (after_heap - after_vmm) / 1000,
            ],
        }
    }

    /// On a UEFI boot (or any boot where GRUB set a graphics mode), maps
    /// the framebuffer and mirrors the console into it.
    fn attach_framebuffer(info: &BootInfo<'_>) {
        let Some(framebuffer) = info.framebuffer else {
            return;
        };
        let FramebufferKind::Rgb { red, green, blue } = framebuffer.kind else {
            return;
        };
        let format = PixelFormat {
            bytes_per_pixel: usize::from(framebuffer.bpp).div_ceil(8),
            channels: [
                (red.position, red.size),
                (green.position, green.size),
                (blue.position, blue.size),
            ],
        };
        let mapped = mm::checked_phys(framebuffer.address).and_then(|phys| {
            // SAFETY: GRUB's framebuffer is device memory (reserved, never
            // handed out as RAM); only the console uses this mapping.
            unsafe { kernel_mm::vmm::map_device(phys, framebuffer.size()) }
        });
        let virt = match mapped {
            // The console draws into it for the rest of the kernel's life.
            Ok((mapping, virt)) => {
                mapping.keep();
                virt
            }
            Err(error) => {
                log::warn!(
                    "framebuffer at {:#x} not mapped: {error}",
                    framebuffer.address
                );
                return;
            }
        };
        // SAFETY: map_device just mapped the framebuffer's pitch * height
        // bytes at `virt`, writable, for the console alone.
        let pixels = unsafe {
            core::slice::from_raw_parts_mut(virt.as_mut_ptr::<u8>(), framebuffer.size() as usize)
        };
        match TextFramebuffer::new(
            pixels,
            framebuffer.width as usize,
            framebuffer.height as usize,
            framebuffer.pitch as usize,
            format,
        ) {
            Ok(console) => {
                let (columns, rows) = console.size();
                match console::attach_framebuffer(console) {
                    Ok(()) => kprintln!(
                        "framebuffer console: {}x{} pixels, {} bpp, {columns}x{rows} characters",
                        framebuffer.width,
                        framebuffer.height,
                        framebuffer.bpp
                    ),
                    Err(error) => log::warn!("framebuffer console not attached: {error}"),
                }
            }
            Err(error) => log::warn!("framebuffer not usable for text: {error:?}"),
        }
    }

    /// Whether to mirror the console on the VGA text screen.
    fn wants_vga_text(info: &BootInfo<'_>) -> bool {
        match info.framebuffer {
            Some(framebuffer) => framebuffer.kind == FramebufferKind::EgaText,
            None => info.firmware == Firmware::Bios,
        }
    }

    #[panic_handler]
    fn panic(panic: &PanicInfo<'_>) -> ! {
        console::fatal(|console| report_panic(console, panic))
    }

    fn report_panic(console: &console::Emergency, panic: &PanicInfo<'_>) {
        let out = |args: core::fmt::Arguments<'_>| console.print(args);
        match panic.location() {
            Some(location) => out(format_args!(
                "\n!!! KERNEL PANIC at {}:{}:{}\n    {}\n",
                location.file(),
                location.line(),
                location.column(),
                panic.message()
            )),
            None => out(format_args!(
                "\n!!! KERNEL PANIC\n    {}\n",
                panic.message()
            )),
        }
        if arch::smp::online() > 1 {
            let index = arch::smp::current().map_or(0, |cpu| cpu.index);
            out(format_args!(
                "    on CPU {index} (the others were halted)\n"
            ));
        }
        cpu::print_backtrace(cpu::frame_pointer(), out);
    }
}
