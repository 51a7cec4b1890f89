//! A polled PS/2 keyboard: the 8042 controller's scancodes (set 1),
//! decoded by [`Ps2Decoder`] (US layout, Shift, Ctrl, Caps Lock, the
//! cursor keys), enough to use the shell on a machine with a screen.

use x86_64::instructions::port::Port;

use crate::input::{Key, Ps2Decoder};

const STATUS_PORT: u16 = 0x64;
const DATA_PORT: u16 = 0x60;

/// The keyboard: its decoder, which keeps the modifier keys' state.
pub struct Keyboard {
    decoder: Ps2Decoder,
}

impl Keyboard {
    /// A keyboard with no key held.
    pub const fn new() -> Self {
        Self {
            decoder: Ps2Decoder::new(),
        }
    }

    /// The next key, if the controller has a scancode waiting and it
    /// completes one.
    pub fn poll(&mut self) -> Option<Key> {
        let mut status = Port::<u8>::new(STATUS_PORT);
        let mut data = Port::<u8>::new(DATA_PORT);
        // SAFETY: reading the 8042 status and data ports has no effect on
        // memory; bit 0 says whether the output buffer holds a byte, and
        // bit 5 whether that byte came from the mouse (ignored).
        let code = unsafe {
            let state = status.read();
            if state & 1 == 0 || state & 0x20 != 0 {
                return None;
            }
            data.read()
        };
        self.decoder.feed(code)
    }
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}
