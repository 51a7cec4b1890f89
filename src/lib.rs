//! IncroOS kernel library: the memory manager and the machine glue around it.
//!
//! The pure parts (allocators, page-table logic, memory-map handling) build
//! for the host too, so `cargo host-test` runs their unit and property tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod mm;
