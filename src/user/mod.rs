//! User mode: programs in their own address spaces, entered through
//! `iretq`, calling the kernel through `syscall`, ended by the kernel when
//! they fault (docs/address-spaces.md).
//!
//! * [`image`]: the flat program image format (pure, host-tested);
//! * `entry`: the switch to ring 3 and back, [`Exit`];
//! * `space`: address spaces in the kernel (lock, loaded CPUs, shootdown);
//! * `fault`: the user page-fault path (demand paging, copy-on-write,
//!   ending the program);
//! * `syscall`: the system calls;
//! * `programs`: the embedded test programs, loading and running them.

pub mod image;

#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod fault;
#[cfg(target_os = "none")]
pub mod programs;
#[cfg(target_os = "none")]
pub mod space;
#[cfg(target_os = "none")]
pub mod syscall;

#[cfg(target_os = "none")]
pub use entry::{Exit, Kill, KillReason};
