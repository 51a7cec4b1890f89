//! Key events from the shell's two input devices, decoded to one [`Key`]
//! type: the serial terminal's bytes ([`SerialDecoder`]: VT100/xterm
//! escape sequences) and the PS/2 keyboard's scancodes ([`Ps2Decoder`]:
//! set 1, US layout, through the `pc-keyboard` crate).
//!
//! Both decoders are plain state machines fed one byte at a time; the port
//! reads that feed them live in the console (serial) and
//! `console::keyboard` (PS/2).
#![forbid(unsafe_code)]

mod key;
mod ps2;
mod serial;

pub use key::Key;
pub use ps2::Ps2Decoder;
pub use serial::SerialDecoder;
