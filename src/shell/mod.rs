//! The memory debug shell, on the serial port and (where there is one) the
//! PS/2 keyboard and screen. One line, one command; bad input gets a usage
//! line, never a crash.
//!
//! The line editing is plain Rust, tested on the host: [`line`](mod@line) and
//! [`history`] hold the text, [`editor`] applies keys to it, [`echo`]
//! turns its state into output for a VT100 terminal and for the kernel's
//! screens; [`physmap`] draws physical memory as characters and
//! [`frame_runs`] lists what `frames N` got. The kernel alone builds the
//! glue: the input loop (`session`) and the commands.

pub mod echo;
pub mod editor;
pub mod frame_runs;
pub mod history;
pub mod line;
pub mod physmap;

#[cfg(target_os = "none")]
mod commands;
#[cfg(target_os = "none")]
mod session;

#[cfg(target_os = "none")]
pub use session::run;
