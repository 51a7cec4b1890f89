//! IncroOS kernel library: the memory manager and the machine glue around it.
//!
//! The pure parts (allocators, page-table logic, boot-information and
//! memory-map handling) build for the host too, so `cargo host-test` runs
//! their unit and property tests; the machine glue builds only for the
//! kernel target.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod boot;
pub mod cabi;
pub mod display;
#[cfg(test)]
mod fuzzing;
pub mod mm;
pub mod units;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod ktest;
#[cfg(target_os = "none")]
pub mod memory;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod shell;
#[cfg(target_os = "none")]
pub mod sync;
