//! IncroOS's memory manager core: physical frames, page tables, the
//! kernel heap and object caches, as plain Rust over memory they are
//! handed.
//!
//! Nothing here touches the machine (no `asm!`, no port I/O, no statics):
//! the kernel crate wires these types to CR3, `invlpg` and its locks, and
//! the same code runs in host unit and property tests and benchmarks
//! (`cargo test -p incroos-mm --target x86_64-unknown-linux-gnu`).
#![cfg_attr(not(any(test, feature = "testing")), no_std)]

pub mod aspace;
pub mod error;
pub mod fail;
pub mod heap;
pub mod layout;
pub mod paging;
pub mod pmm;
pub mod rng;
pub mod slab;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{checked_phys, checked_virt, MmError};
