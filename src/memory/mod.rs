//! The kernel's memory services: the global instances of the `mm`
//! allocators behind interrupt-safe locks, wired to the machine.
//!
//! Initialisation order (each step uses only the ones before it):
//! 1. [`bootstrap`]: frames from the identity-mapped pool 0x10000-0x100000;
//! 2. [`direct_map`]: all RAM mapped at `DIRECT_MAP_OFFSET`, its page
//!    tables taken from the bootstrap pool;
//! 3. [`pmm`]: the frame allocator over all usable RAM from 0x200000, its
//!    bitmap reached through the direct map.
//!
//! Lock order: bootstrap pool, then PMM (then, later, page tables, then
//! heap). No path takes them in the other order.

pub mod bootstrap;
pub mod direct_map;
pub mod pmm;

use x86_64::{PhysAddr, VirtAddr};

use crate::mm::layout::DIRECT_MAP_OFFSET;

/// The direct-map address of physical address `address`.
///
/// Valid for RAM once [`direct_map::init`] has run.
pub fn phys_to_virt(address: PhysAddr) -> VirtAddr {
    VirtAddr::new(DIRECT_MAP_OFFSET + address.as_u64())
}
