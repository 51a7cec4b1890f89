//! PS/2 scancodes to [`Key`]s through the `pc-keyboard` crate: scancode
//! set 1 (what the 8042 controller delivers, translating the keyboard's
//! set 2), the US 104-key layout, Shift, Caps Lock, Num Lock (on at
//! start, as the crate has it), and Ctrl with a letter as the control
//! character of that letter.

use pc_keyboard::layouts::Us104Key;
use pc_keyboard::{DecodedKey, HandleControl, KeyCode, PS2Keyboard, ScancodeSet1};

use super::Key;

/// Decodes the scancodes of a PS/2 keyboard, one byte at a time; keeps the
/// state of the modifier keys between bytes.
pub struct Ps2Decoder {
    keyboard: PS2Keyboard<Us104Key, ScancodeSet1>,
}

impl Default for Ps2Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Decoder {
    /// A decoder with no key held and every lock off.
    pub const fn new() -> Self {
        Self {
            keyboard: PS2Keyboard::new(
                ScancodeSet1::new(),
                Us104Key,
                HandleControl::MapLettersToUnicode,
            ),
        }
    }

    /// Takes the next scancode byte; returns the key it completes, if any
    /// (releases, modifiers and keys the editor has no use for give none).
    pub fn feed(&mut self, scancode: u8) -> Option<Key> {
        let event = self.keyboard.add_byte(scancode).ok()??;
        match self.keyboard.process_keyevent(event)? {
            DecodedKey::Unicode(character) => from_character(character),
            DecodedKey::RawKey(code) => from_code(code),
        }
    }
}

/// The key of a character the layout produced.
fn from_character(character: char) -> Option<Key> {
    match character {
        // The layout's Delete key (and keypad Del without Num Lock).
        '\u{7f}' => Some(Key::Delete),
        ' '..='~' => Some(Key::Char(character)),
        // Backspace (0x08), Enter (0x0A) and Ctrl-letters.
        '\0'..='\u{1f}' => Key::from_control(character as u8),
        _ => None,
    }
}

/// The key of a key that has no character: arrows, Home, End (the keypad's
/// too, without Num Lock).
fn from_code(code: KeyCode) -> Option<Key> {
    match code {
        KeyCode::ArrowLeft => Some(Key::Left),
        KeyCode::ArrowRight => Some(Key::Right),
        KeyCode::ArrowUp => Some(Key::Up),
        KeyCode::ArrowDown => Some(Key::Down),
        KeyCode::Home => Some(Key::Home),
        KeyCode::End => Some(Key::End),
        KeyCode::Delete => Some(Key::Delete),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the scancodes decode to, fed through one decoder.
    fn keys(scancodes: &[u8]) -> Vec<Key> {
        let mut decoder = Ps2Decoder::new();
        scancodes
            .iter()
            .filter_map(|&code| decoder.feed(code))
            .collect()
    }

    // Set 1 make codes; a release is the make code | 0x80.
    const A: u8 = 0x1E;
    const C: u8 = 0x2E;
    const U: u8 = 0x16;
    const ONE: u8 = 0x02;
    const LEFT_SHIFT: u8 = 0x2A;
    const LEFT_CONTROL: u8 = 0x1D;
    const CAPS_LOCK: u8 = 0x3A;
    const RELEASE: u8 = 0x80;
    const EXTENDED: u8 = 0xE0;

    #[test]
    fn letters_with_shift_and_caps_lock() {
        use Key::Char;
        assert_eq!(keys(&[A, A | RELEASE]), [Char('a')]);
        assert_eq!(
            keys(&[LEFT_SHIFT, A, ONE, LEFT_SHIFT | RELEASE, A]),
            [Char('A'), Char('!'), Char('a')]
        );
        // Caps Lock toggles on its press: letters shift, digits do not.
        let on = [CAPS_LOCK, CAPS_LOCK | RELEASE];
        assert_eq!(
            keys(&[&on[..], &[A, ONE], &on[..], &[A]].concat()),
            [Char('A'), Char('1'), Char('a')]
        );
    }

    #[test]
    fn arrows_home_end_delete_are_extended_codes() {
        use Key::*;
        let pressed = |code| [EXTENDED, code, EXTENDED, code | RELEASE];
        let scancodes: Vec<u8> = [0x4B, 0x4D, 0x48, 0x50, 0x47, 0x4F, 0x53]
            .into_iter()
            .flat_map(pressed)
            .collect();
        assert_eq!(keys(&scancodes), [Left, Right, Up, Down, Home, End, Delete]);
    }

    #[test]
    fn the_keypad_types_digits_until_num_lock_turns_off() {
        use Key::*;
        // Keypad 4 and 1 (no E0 prefix); then Num Lock (starts on) and again.
        const NUM_LOCK: u8 = 0x45;
        assert_eq!(
            keys(&[0x4B, 0x4F, NUM_LOCK, NUM_LOCK | RELEASE, 0x4B, 0x4F]),
            [Char('4'), Char('1'), Left, End]
        );
    }

    #[test]
    fn control_keys() {
        use Key::*;
        assert_eq!(
            keys(&[LEFT_CONTROL, C, C | RELEASE, U, LEFT_CONTROL | RELEASE, C]),
            [Cancel, EraseToStart, Char('c')]
        );
        // Backspace, Enter, Tab (nothing), Escape (nothing).
        assert_eq!(keys(&[0x0E, 0x1C, 0x0F, 0x01]), [Backspace, Enter]);
    }
}
