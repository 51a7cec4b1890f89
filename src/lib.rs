//! IncroOS kernel library: the machine glue around the memory manager core
//! (the `mm` crate, `mm/`), the console, the shell and the in-kernel tests.
//!
//! The pure parts here (boot-information and command-line parsing, the C
//! interface's constants, text layout, key decoding, the shell's line
//! editor and memory map) build for the host too, so `cargo host-test`
//! runs their tests; the glue builds only for the kernel target.
//! Lints are set once for the workspace (`Cargo.toml`, `[workspace.lints]`).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod cabi;
pub mod display;
pub mod input;
pub mod shell;
pub mod units;
pub mod user;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod firmware;
#[cfg(target_os = "none")]
pub mod kernel_mm;
#[cfg(target_os = "none")]
pub mod ktest;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod sync;
