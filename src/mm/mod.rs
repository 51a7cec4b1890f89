//! The memory manager: physical frames, page tables and the kernel heap.
//!
//! Everything under this module is plain Rust over memory it is handed; the
//! only code that touches the machine lives in `crate::arch`.

pub mod error;
pub mod heap;
pub mod layout;
pub mod paging;
pub mod pmm;

pub use error::MmError;
