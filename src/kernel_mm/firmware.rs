//! Reading firmware tables (ACPI) out of physical memory, for the pure
//! parser in [`crate::acpi`].
//!
//! A table in ACPI memory (reclaimable or NVS) is read through the direct
//! map, which covers it; one in reserved memory or in no region at all (the
//! BIOS area, SeaBIOS's tables) through a temporary read-only mapping that
//! is dropped after the copy. Bytes in RAM the frame allocators manage are
//! never read: a table pointer into them is corrupt, and the read fails.

use core::ptr;

use mm::layout::{BOOTSTRAP_POOL_START, PAGE_SIZE};
use mm::pmm::PhysRange;
use x86_64::PhysAddr;

use super::vmm;
use crate::acpi::{AcpiError, PhysMemory};
use crate::boot::{BootInfo, MemoryKind};

/// [`PhysMemory`] over this machine's memory map.
pub struct FirmwareMemory<'a> {
    info: &'a BootInfo<'a>,
}

impl<'a> FirmwareMemory<'a> {
    /// Firmware memory as `info`'s memory map describes it (the direct map
    /// must be built).
    pub fn new(info: &'a BootInfo<'a>) -> Self {
        Self { info }
    }

    /// The kind of the region holding all of `range`, if one does.
    fn kind_of(&self, range: PhysRange) -> Option<MemoryKind> {
        self.info
            .memory_map()
            .iter()
            .find(|region| {
                let region = region.range();
                region.start <= range.start && range.end <= region.end
            })
            .map(|region| region.kind)
    }

    /// Whether any byte of `range` is RAM a frame allocator may hand out
    /// (the first 64 KiB, below the bootstrap pool, never are: the BIOS
    /// data area lives there).
    fn touches_managed_ram(&self, range: PhysRange) -> bool {
        let managed = PhysRange {
            start: range.start.max(BOOTSTRAP_POOL_START),
            end: range.end,
        };
        !managed.is_empty()
            && self.info.memory_map().iter().any(|region| {
                region.kind == MemoryKind::Available && region.range().overlaps(&managed)
            })
    }
}

impl PhysMemory for FirmwareMemory<'_> {
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), AcpiError> {
        let len = buffer.len() as u64;
        let unreadable = AcpiError::Unreadable { address, len };
        let range = PhysRange {
            start: address,
            end: address.checked_add(len).ok_or(unreadable)?,
        };
        let phys = mm::checked_phys(address).map_err(|_| unreadable)?;
        let in_acpi_memory = matches!(
            self.kind_of(range),
            Some(MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs)
        );
        if in_acpi_memory && direct_mapped(range) {
            let source = super::phys_to_virt(phys).as_ptr::<u8>();
            // SAFETY: every page of the range is mapped in the direct map
            // (checked just above) and is ACPI memory, which no allocator
            // hands out and nothing in the kernel writes: a plain copy.
            unsafe { ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len()) };
            return Ok(());
        }
        if self.touches_managed_ram(range) {
            return Err(unreadable);
        }
        // SAFETY: no byte of the range is RAM the allocators manage (checked
        // above), so the new mapping aliases no Rust object; it is only
        // read, and dropped (unmapped) before this function returns.
        let (mapping, virt) = unsafe { vmm::map_firmware(phys, len) }.map_err(|_| unreadable)?;
        // SAFETY: `virt` maps the `len` bytes at `address` (map_firmware's
        // contract), and the mapping lives until the end of this block.
        unsafe { ptr::copy_nonoverlapping(virt.as_ptr::<u8>(), buffer.as_mut_ptr(), buffer.len()) };
        drop(mapping);
        Ok(())
    }
}

/// Whether every page of `range` is mapped in the direct map.
fn direct_mapped(range: PhysRange) -> bool {
    let first = range.start - range.start % PAGE_SIZE;
    (first..range.end.max(range.start + 1))
        .step_by(PAGE_SIZE as usize)
        .all(|page| vmm::translate(super::phys_to_virt(PhysAddr::new(page))).is_some())
}
