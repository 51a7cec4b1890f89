//! A polled PS/2 keyboard (scancode set 1, US layout): enough to type
//! shell commands on a machine with a screen.

use x86_64::instructions::port::Port;

/// Keyboard state: whether a shift key is held.
pub struct Keyboard {
    shift: bool,
}

const STATUS_PORT: u16 = 0x64;
const DATA_PORT: u16 = 0x60;

/// Set 1 make codes 0x00..0x3A to ASCII: (plain, shifted). 0 = no character.
const KEYS: [(u8, u8); 0x3A] = {
    let mut keys = [(0u8, 0u8); 0x3A];
    let rows: [(usize, &[u8], &[u8]); 4] = [
        (0x02, b"1234567890-=", b"!@#$%^&*()_+"),
        (0x10, b"qwertyuiop[]", b"QWERTYUIOP{}"),
        (0x1E, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
        (0x2B, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
    ];
    let mut row = 0;
    while row < rows.len() {
        let (first, plain, shifted) = rows[row];
        let mut index = 0;
        while index < plain.len() {
            keys[first + index] = (plain[index], shifted[index]);
            index += 1;
        }
        row += 1;
    }
    keys[0x0E] = (0x08, 0x08); // backspace
    keys[0x1C] = (b'\n', b'\n'); // enter
    keys
};

impl Keyboard {
    /// A keyboard with no key held.
    pub const fn new() -> Self {
        Self { shift: false }
    }

    /// The next typed character, if the controller has a scancode waiting.
    pub fn poll(&mut self) -> Option<u8> {
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
        match code {
            0x2A | 0x36 => self.shift = true,
            0xAA | 0xB6 => self.shift = false,
            0x39 => return Some(b' '),
            code if (code as usize) < KEYS.len() => {
                let (plain, shifted) = KEYS[code as usize];
                let ascii = if self.shift { shifted } else { plain };
                return (ascii != 0).then_some(ascii);
            }
            _ => {}
        }
        None
    }
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}
