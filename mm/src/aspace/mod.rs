//! User address spaces: the regions a process may use, its own page
//! tables for PML4 entries 1..=255, demand paging and copy-on-write.
//!
//! Every space shares the kernel's PML4 entry 0 (the identity-mapped
//! kernel image at 1 MiB and the heap at 0x1000_0000) and entries
//! 256..511 (the higher half): the kernel creates those tables once at
//! boot, each space copies the entries, and no space ever changes or
//! frees anything under them. User memory is therefore
//! [`USER_START`]..[`USER_END`] (512 GiB up to the end of the lower
//! half). Once the kernel image moves to the higher half, user space can
//! have entry 0 too. See docs/address-spaces.md.

mod clone;
mod fault;
mod reclaim;
pub mod regions;
mod space;

pub use fault::{Access, FaultError, FaultFixed};
pub use regions::{check_user_range, Perms, Region, RegionKind, Regions};
pub use space::{AddressSpace, Teardown, MAX_REGIONS};

use crate::layout;

/// First user virtual address (PML4 entry 1, 512 GiB), the end
/// (exclusive) of the user PML4 entries (after entry 255, the end of the
/// lower half; not a canonical address itself, hence numbers), and the
/// end of what regions may cover (one guard page below `USER_END`).
pub use crate::layout::{USER_END, USER_START, USER_TOP};

/// The kernel's PML4 entry in the lower half, shared by every space.
pub const KERNEL_LOW_ENTRY: usize = 0;
/// The first PML4 entry of the user range.
pub const FIRST_USER_ENTRY: usize = 1;
/// The last PML4 entry of the user range.
pub const LAST_USER_ENTRY: usize = 255;
/// The first of the kernel's higher-half PML4 entries (256..=511),
/// shared by every space.
pub const FIRST_KERNEL_HIGH_ENTRY: usize = 256;

const _: () = assert!(layout::USER_START == (FIRST_USER_ENTRY as u64) << 39);
const _: () = assert!(layout::USER_END == ((LAST_USER_ENTRY as u64) + 1) << 39);

#[cfg(test)]
mod tests;
