//! The VMM called with raw addresses, as the C interface and the shell
//! call it: checked at the boundary (`mm::checked_virt`, `checked_phys`),
//! then passed on typed. For the tests' own mappings only.
//!
//! Safety of every call below: the tests map frames they allocated
//! themselves (or, in the 1 GiB page test, the first GiB read-only), at
//! addresses of the test area that nothing else uses, and unmap only what
//! they mapped; no Rust reference ever points into a test mapping.

use x86_64::structures::paging::PageTableFlags;
use x86_64::PhysAddr;

use crate::kernel_mm::vmm;
use mm::paging::{PageSize, Translation};
use mm::{checked_phys, checked_virt, MmError};

/// [`vmm::map`] on raw addresses.
pub fn map(virt: u64, phys: u64, size: PageSize, flags: PageTableFlags) -> Result<(), MmError> {
    let (virt, phys) = (checked_virt(virt)?, checked_phys(phys)?);
    // SAFETY: see the module's documentation.
    unsafe { vmm::map(virt, phys, size, flags) }
}

/// [`vmm::unmap`] on a raw address.
pub fn unmap(virt: u64) -> Result<(PhysAddr, PageSize), MmError> {
    let virt = checked_virt(virt)?;
    // SAFETY: see the module's documentation.
    unsafe { vmm::unmap(virt) }
}

/// [`vmm::update_flags`] on a raw address.
pub fn update_flags(virt: u64, flags: PageTableFlags) -> Result<(), MmError> {
    let virt = checked_virt(virt)?;
    // SAFETY: see the module's documentation.
    unsafe { vmm::update_flags(virt, flags) }
}

/// [`vmm::translate`] on a raw address (non-canonical: `None`).
pub fn translate(virt: u64) -> Option<Translation> {
    vmm::translate(checked_virt(virt).ok()?)
}
