//! The key events the shell's line editor understands.

/// One key press, as the line editor sees it, whichever device it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character to insert at the cursor (the editor keeps printable
    /// ASCII and ignores the rest).
    Char(char),
    /// Cursor one character left.
    Left,
    /// Cursor one character right.
    Right,
    /// Cursor to the start of the line (also Ctrl-A).
    Home,
    /// Cursor to the end of the line (also Ctrl-E).
    End,
    /// The previous line in the history (also Ctrl-P).
    Up,
    /// The next line in the history, then back to the line being typed
    /// (also Ctrl-N).
    Down,
    /// Erase the character before the cursor.
    Backspace,
    /// Erase the character under the cursor (also Ctrl-D).
    Delete,
    /// Run the line.
    Enter,
    /// Ctrl-U: erase from the start of the line to the cursor.
    EraseToStart,
    /// Ctrl-K: erase from the cursor to the end of the line.
    EraseToEnd,
    /// Ctrl-W: erase the word before the cursor.
    EraseWord,
    /// Ctrl-C: drop the line and start a fresh one.
    Cancel,
}

impl Key {
    /// The key a control character stands for: Ctrl and a letter give the
    /// same byte on a terminal and on the PS/2 keyboard (Ctrl-C is 0x03).
    /// `None` for control characters the editor has no use for. DEL
    /// (0x7F) is not a control character here: a terminal sends it for
    /// Backspace, the PS/2 layout for Delete, so each decoder maps it.
    pub fn from_control(byte: u8) -> Option<Key> {
        Some(match byte {
            0x01 => Key::Home,           // Ctrl-A
            0x02 => Key::Left,           // Ctrl-B
            0x03 => Key::Cancel,         // Ctrl-C
            0x04 => Key::Delete,         // Ctrl-D
            0x05 => Key::End,            // Ctrl-E
            0x06 => Key::Right,          // Ctrl-F
            0x08 => Key::Backspace,      // Ctrl-H, BS
            b'\n' | b'\r' => Key::Enter, // Ctrl-J, Ctrl-M
            0x0B => Key::EraseToEnd,     // Ctrl-K
            0x0E => Key::Down,           // Ctrl-N
            0x10 => Key::Up,             // Ctrl-P
            0x15 => Key::EraseToStart,   // Ctrl-U
            0x17 => Key::EraseWord,      // Ctrl-W
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_letters_name_their_keys() {
        assert_eq!(Key::from_control(0x03), Some(Key::Cancel));
        assert_eq!(Key::from_control(0x15), Some(Key::EraseToStart));
        assert_eq!(Key::from_control(0x08), Some(Key::Backspace));
        assert_eq!(Key::from_control(b'\r'), Some(Key::Enter));
        assert_eq!(Key::from_control(b'\t'), None);
        assert_eq!(Key::from_control(0x1B), None);
        assert_eq!(Key::from_control(b'a'), None);
    }
}
