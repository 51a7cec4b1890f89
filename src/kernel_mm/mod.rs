//! The kernel's memory services: the global instances of the `mm`
//! allocators behind interrupt-safe locks, wired to the machine.
//!
//! Initialisation order (each step uses only the ones before it):
//! 0. [`reservations`]: what no allocator may hand out, computed once;
//! 1. [`bootstrap`]: frames from the identity-mapped pool 0x10000-0x100000,
//!    outside every reservation;
//! 2. [`direct_map`]: all RAM mapped at `DIRECT_MAP_OFFSET`, its page
//!    tables taken from the bootstrap pool;
//! 3. [`pmm`]: the frame allocator over all usable RAM from 0x400000, its
//!    bitmap reached through the direct map;
//! 4. [`vmm`]: the page-table tree in CR3, tables from the PMM; then W^X on
//!    the kernel image;
//! 5. [`heap`]: `kmalloc`/`kfree` and Rust's `alloc`, growing through the
//!    VMM and the PMM;
//! 6. [`slab`]: object caches with slabs from the PMM (nothing to
//!    initialise: a cache takes its first slab on its first allocation).
//!
//! Lock order, outermost first: an object cache, heap, VMM, PMM,
//! bootstrap pool. A holder
//! may take a lock further down the list, never one further up: the VMM
//! calls the PMM (and the pool) for table frames while holding its lock;
//! the heap calls the VMM to grow; an object cache calls the PMM for
//! slabs (and its constructor may use the heap); neither the PMM nor the
//! VMM ever allocates from the heap or a cache. Each lock disables
//! interrupts while held.

pub mod bootstrap;
pub mod deferred;
pub mod direct_map;
pub mod firmware;
pub mod frame_cache;
pub mod frame_meta;
pub mod heap;
pub mod numa;
pub mod pmm;
pub mod reclaim;
pub mod slab;
pub mod vmm;

use x86_64::{PhysAddr, VirtAddr};

use crate::arch::x86_64::sections;
use crate::boot::{BootInfo, FramebufferKind, MemoryKind};
use mm::layout::{BOOT_PML4, BOOT_TABLES_END, DIRECT_MAP_OFFSET};
use mm::pmm::{MapEntry, PhysRange, ReservationKind, ReservationList, ReservationsFull};

/// The firmware memory map as the range normalisation wants it: entries
/// of the kinds `wanted` accepts count as usable, every other kind is
/// reserved (and wins where they overlap).
pub fn map_entries<'a>(
    info: &'a BootInfo<'_>,
    wanted: fn(MemoryKind) -> bool,
) -> impl Iterator<Item = MapEntry> + Clone + 'a {
    info.memory_map().iter().map(move |region| MapEntry {
        range: region.range(),
        usable: wanted(region.kind),
    })
}

/// What the frame allocators may hand out: "available" RAM only.
pub fn is_available(kind: MemoryKind) -> bool {
    kind == MemoryKind::Available
}

/// The direct-map address of physical address `address`.
///
/// Valid for RAM once [`direct_map::init`] has run.
pub fn phys_to_virt(address: PhysAddr) -> VirtAddr {
    VirtAddr::new(DIRECT_MAP_OFFSET + address.as_u64())
}

/// Everything no frame allocator may hand out, honoured by the bootstrap
/// pool and the PMM alike: the kernel image, the boot page tables, and all
/// that GRUB handed over (the information structure with the command line,
/// every module, the framebuffer). Fails, naming the reservation, rather
/// than drop one.
pub fn reservations(info: &BootInfo<'_>) -> Result<ReservationList, ReservationsFull> {
    let mut list = ReservationList::new();
    list.push(sections::kernel_image(), ReservationKind::KernelImage)?;
    list.push(
        PhysRange {
            start: BOOT_PML4,
            end: BOOT_TABLES_END,
        },
        ReservationKind::BootPageTables,
    )?;
    list.push(
        PhysRange::from_len(info.physical_address, info.total_size as u64),
        ReservationKind::BootInfo,
    )?;
    for module in info.modules() {
        list.push(module.range, ReservationKind::BootModule)?;
    }
    if let Some(framebuffer) = info.framebuffer {
        if framebuffer.kind != FramebufferKind::EgaText {
            list.push(
                PhysRange::from_len(framebuffer.address, framebuffer.size()),
                ReservationKind::Framebuffer,
            )?;
        }
    }
    Ok(list)
}
