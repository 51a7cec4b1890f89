//! The boot report: what the firmware gave us and how memory is laid out.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;

use crate::acpi::{Acpi, AcpiError};
use crate::arch::x86_64::sections;
use crate::arch::x86_64::smp::{self, CpuStart, Outcome};
use crate::boot::{BootInfo, Firmware, FramebufferKind};
use crate::firmware::RsdpSource;
use crate::kernel_mm::direct_map::DirectMap;
use crate::kernel_mm::{heap, numa, pmm, vmm};
use crate::kprintln;
use crate::units::HumanSize;
use mm::heap::HeapStats;
use mm::layout::{DIRECT_MAP_OFFSET, HEAP_MAX_SIZE, HEAP_START, PAGE_SIZE, PMM_START};
use mm::paging::{NX, WRITABLE};
use mm::pmm::{ReservationKind, Stats};
use x86_64::VirtAddr;

/// What memory initialisation produced, for the report.
pub struct Memory {
    /// Bootstrap pool counters right after it was built.
    pub pool: Stats,
    /// The direct map.
    pub direct_map: DirectMap,
    /// PMM counters right after it was built.
    pub pmm: Stats,
    /// Heap counters right after it was built.
    pub heap: HeapStats,
    /// Thousands of TSC cycles spent in: pool, direct map, PMM, VMM, heap.
    pub kcycles: [u64; 5],
}

fn frames(count: u64) -> HumanSize {
    HumanSize(count * PAGE_SIZE)
}

/// Prints the memory manager's state after initialisation.
pub fn memory(memory: &Memory) {
    kprintln!();
    kprintln!(
        "bootstrap pool: {} frames ({}) in 0x10000-0x100000, {} used for page tables",
        memory.pool.total,
        frames(memory.pool.total),
        memory.direct_map.table_frames
    );
    kprintln!(
        "direct map:     {} of RAM in {} ranges up to {:#x}, at {:#x}, up to {} pages, NX; holes (devices) unmapped",
        HumanSize(memory.direct_map.ram),
        memory.direct_map.ranges,
        memory.direct_map.end,
        DIRECT_MAP_OFFSET,
        if memory.direct_map.gigabyte_pages {
            "1 GiB"
        } else {
            "2 MiB"
        }
    );
    let stats = pmm::stats();
    kprintln!(
        "PMM: {} frames ({}): {} free, {} used, {} reserved",
        stats.total,
        frames(stats.total),
        stats.free,
        stats.used,
        stats.reserved
    );
    pmm::with(|allocator| {
        for range in allocator.usable() {
            kprintln!("  usable   {}  {:>10}", range, HumanSize(range.len()));
        }
        for reservation in allocator.reservations() {
            kprintln!(
                "  reserved {}  {:>10}  {}",
                reservation.range,
                HumanSize(reservation.range.len()),
                reservation.kind.name()
            );
        }
        for kind in ReservationKind::ALL {
            let count = allocator.reserved_frames(kind);
            if count > 0 {
                kprintln!("  {} frames reserved for the {}", count, kind.name());
            }
        }
        kprintln!(
            "  largest free run: {} frames ({})",
            allocator.largest_free_run(),
            frames(allocator.largest_free_run())
        );
    });
    kprintln!();
    kprintln!(
        "VMM: PML4 at {:#x}, {} page tables",
        vmm::current_cr3().start_address().as_u64(),
        vmm::table_count()
    );
    kprintln!("  kernel sections as mapped (checked in the page tables):");
    for section in sections::kernel_sections() {
        let flags = vmm::translate(VirtAddr::new(section.span.start)).map(|t| t.flags);
        let access = match flags {
            Some(flags) => {
                let w = if flags.contains(WRITABLE) { "w" } else { "-" };
                let x = if flags.contains(NX) { "-" } else { "x" };
                (w, x)
            }
            None => ("?", "?"),
        };
        kprintln!(
            "    {:<8} {}  r{}{}",
            section.name,
            section.span,
            access.0,
            access.1
        );
    }
    kprintln!("  low 4 MiB (identity) and direct map, as runs:");
    let (low_start, low_last) = (VirtAddr::zero(), VirtAddr::new(PMM_START - 1));
    vmm::mappings(low_start, low_last, |run| kprintln!("    {run}"));
    let direct_map = VirtAddr::new(DIRECT_MAP_OFFSET);
    vmm::mappings(direct_map, VirtAddr::new(u64::MAX), |run| {
        kprintln!("    {run}")
    });
    let heap = heap::stats();
    kprintln!();
    kprintln!(
        "heap: {:#x}, {} mapped (grows to {}), {} used, {} free, largest free block {}, peak {}, {} live / {} total allocations",
        HEAP_START,
        HumanSize(heap.mapped as u64),
        HumanSize(HEAP_MAX_SIZE),
        HumanSize(heap.used as u64),
        HumanSize(heap.free as u64),
        HumanSize(heap::largest_free_block() as u64),
        HumanSize(heap.peak_used as u64),
        heap.live_allocations,
        heap.total_allocations
    );
    kprintln!(
        "  at init: {} mapped, {} free",
        HumanSize(memory.heap.mapped as u64),
        HumanSize(memory.heap.free as u64)
    );
    kprintln!(
        "init: bootstrap pool {} kcycles, direct map {} kcycles, PMM {} kcycles, VMM {} kcycles, heap {} kcycles",
        memory.kcycles[0],
        memory.kcycles[1],
        memory.kcycles[2],
        memory.kcycles[3],
        memory.kcycles[4]
    );
}

/// Prints firmware, bootloader, command line, the memory map as a table and
/// the kernel image's sections.
pub fn boot(info: &BootInfo<'_>) {
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
        info.physical_address
    );
    if let Some(framebuffer) = info.framebuffer {
        let kind = match framebuffer.kind {
            FramebufferKind::Rgb { .. } => "RGB",
            FramebufferKind::Indexed => "indexed colour",
            FramebufferKind::EgaText => "EGA text (characters)",
        };
        kprintln!(
            "framebuffer:  {kind} {}x{} {} bpp at {:#x}",
            framebuffer.width,
            framebuffer.height,
            framebuffer.bpp,
            framebuffer.address
        );
    }
    for module in info.modules() {
        kprintln!(
            "module:       {:#x}-{:#x} {}",
            module.range.start,
            module.range.end,
            module.cmdline
        );
    }

    kprintln!();
    memory_map(info);

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

/// Prints what the ACPI tables say (or why there are none).
pub fn acpi(result: &Result<(&Acpi, RsdpSource), AcpiError>) {
    let (acpi, source) = match result {
        Ok(found) => *found,
        Err(error) => {
            log::warn!("ACPI: {error}; no CPU list, shutdown falls back");
            return;
        }
    };
    let source = match source {
        RsdpSource::MultibootTag => String::from("the Multiboot2 tag"),
        RsdpSource::BiosScan(address) => format!("the BIOS scan at {address:#x}"),
    };
    kprintln!(
        "ACPI:         RSDP revision {} from {source}; tables:",
        acpi.rsdp.revision
    );
    for table in &acpi.tables {
        kprintln!(
            "  {} {:#012x} {:>6} bytes  revision {}  {}",
            table.header.signature,
            table.address,
            table.header.length,
            table.header.revision,
            table.header.oem()
        );
    }
    for (address, error) in &acpi.rejected {
        log::warn!("ACPI: table at {address:#x} skipped: {error}");
    }
    for problem in &acpi.problems {
        log::warn!("ACPI: {problem}");
    }
    if let Some(madt) = &acpi.madt {
        let enabled = madt.enabled_processors().count();
        kprintln!(
            "  CPUs: {} in the MADT, {enabled} enabled; local APIC at {:#x}; {} I/O APIC(s); {} interrupt override(s)",
            madt.processors.len(),
            madt.local_apic_address,
            madt.io_apics.len(),
            madt.overrides.len()
        );
        for cpu in &madt.processors {
            kprintln!(
                "    APIC id {:>3} (processor {}){}{}",
                cpu.apic_id,
                cpu.processor_uid,
                if cpu.enabled { "" } else { ", not enabled" },
                if cpu.online_capable {
                    ", online capable"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(fadt) = &acpi.fadt {
        let s5 = acpi
            .s5
            .map(|s5| format!("\\_S5 SLP_TYP {}/{}", s5.a, s5.b))
            .unwrap_or_else(|| "no \\_S5".into());
        kprintln!(
            "  power: PM1a control {:?}, {s5}, PM timer {}",
            fadt.pm1a_control,
            match fadt.pm_timer {
                Some(port) => format!(
                    "at port {port:#x} ({} bits)",
                    if fadt.pm_timer_32bit { 32 } else { 24 }
                ),
                None => "none".into(),
            }
        );
    }
}

/// Prints what became of each CPU the MADT lists.
pub fn cpus(cpus: &[CpuStart]) {
    kprintln!(
        "CPUs:         {} online; local APIC through {}",
        smp::online(),
        smp::lapic_mode().unwrap_or("nothing (not mapped)")
    );
    for cpu in cpus {
        let what = match cpu.outcome {
            Outcome::Boot => String::from("the boot CPU"),
            Outcome::Started(micros) => format!("CPU {} started in {micros} us", cpu.index),
            Outcome::NoAnswer => String::from("did not answer INIT-SIPI-SIPI: skipped"),
            Outcome::NotEnabled => String::from("not enabled in the MADT: not started"),
            Outcome::OverLimit => String::from("over the smp= limit: not started"),
            Outcome::NoMemory => String::from("no memory for its stacks: not started"),
            Outcome::SendFailed => String::from("the IPIs could not be sent: not started"),
        };
        kprintln!("  APIC id {:>3}: {what}", cpu.apic_id);
    }
}

/// Prints the firmware memory map as a table.
pub fn memory_map(info: &BootInfo<'_>) {
    kprintln!(
        "memory map ({} entries from the bootloader):",
        info.memory_map().len()
    );
    kprintln!("  {:>18}  {:>18}  {:>10}  type", "start", "end", "size");
    for region in info.memory_map() {
        kprintln!(
            "  {:#018x}  {:#018x}  {:>10}  {}",
            region.start,
            region.range().end,
            HumanSize(region.len),
            region.kind.name()
        );
    }
    kprintln!("  available RAM: {}", HumanSize(info.available_bytes()));
}

/// Prints the NUMA layout: where it came from, each node's memory and
/// CPUs, and the distances.
pub fn numa(topology: &numa::Topology) {
    let source = match topology.source {
        numa::Source::Srat { slit: true } => String::from("from the SRAT, distances from the SLIT"),
        numa::Source::Srat { slit: false } => {
            String::from("from the SRAT, no SLIT: distances 10 local, 20 remote")
        }
        numa::Source::NoSrat => String::from("(no SRAT)"),
        numa::Source::Rejected(error) => format!("(SRAT/SLIT unusable: {error})"),
        numa::Source::Refused(error) => format!("(the PMM refused the SRAT's layout: {error:?})"),
    };
    kprintln!(
        "NUMA:         {} node{} {source}",
        topology.nodes.len(),
        if topology.nodes.len() == 1 { "" } else { "s" }
    );
    numa_nodes();
    if topology.nodes.len() > 1 {
        for (from, row) in topology.distances.iter().enumerate() {
            let row: String = row.iter().map(|d| format!(" {d:>3}")).collect();
            kprintln!("  distance from node {from}:{row}");
        }
    }
}

/// One line per NUMA node: total, free, largest free block, CPUs, memory.
pub fn numa_nodes() {
    let Some(topology) = numa::topology() else {
        return;
    };
    for (node, info) in topology.nodes.iter().enumerate() {
        let Some(stats) = pmm::node_stats(node) else {
            continue;
        };
        let largest = stats
            .largest_free_order
            .map_or(String::from("none"), |order| {
                format!("{}", HumanSize(PAGE_SIZE << order))
            });
        let cpus: String = info.cpus.iter().map(|cpu| format!(" {cpu}")).collect();
        let memory: String = info
            .memory
            .iter()
            .map(|range| format!(" {range}"))
            .collect();
        kprintln!(
            "  node {node} (domain {}): {} total, {} free, largest free block {largest}; CPUs{}; memory{memory}",
            info.domain,
            HumanSize(stats.total * PAGE_SIZE),
            HumanSize(stats.free * PAGE_SIZE),
            if cpus.is_empty() { " none" } else { &cpus },
        );
    }
}

/// The per-frame metadata table's size.
pub fn frame_meta() {
    if let Some(meta) = crate::kernel_mm::frame_meta::stats() {
        kprintln!(
            "frame metadata: {} frames x {} bytes = {} ({} per MiB of RAM)",
            meta.frames,
            meta.entry_bytes,
            HumanSize(meta.bytes),
            HumanSize(meta.entry_bytes * 256)
        );
    }
}
