//! Bytes from a serial terminal to [`Key`]s: printable ASCII, control
//! characters, and the VT100/xterm escape sequences of the cursor keys.
//!
//! | bytes | key |
//! |---|---|
//! | `ESC [ A` / `B` / `C` / `D` (also `ESC O A`..`D`) | Up, Down, Right, Left |
//! | `ESC [ H`, `ESC [ 1 ~`, `ESC [ 7 ~`, `ESC O H` | Home |
//! | `ESC [ F`, `ESC [ 4 ~`, `ESC [ 8 ~`, `ESC O F` | End |
//! | `ESC [ 3 ~` | Delete |
//! | DEL (0x7F), BS (0x08) | Backspace |
//! | CR, LF, CR LF | Enter (once) |
//! | Ctrl-letters (0x01-0x1A) | see [`Key::from_control`] |
//!
//! Modifier parameters (`ESC [ 1 ; 5 C`, Ctrl-Right) are ignored: the key
//! is the arrow. Sequences the editor has no use for (function keys,
//! Page Up) decode to nothing. A byte that cannot continue a sequence
//! ends it and is decoded afresh, so a lone Esc followed by `a` gives `a`.

use super::Key;

/// The escape byte that starts every sequence.
const ESC: u8 = 0x1B;
/// Parameter values are capped here: no sequence the decoder knows needs
/// more, and a long run of digits must not overflow.
const PARAMETER_MAX: u16 = 9999;

/// Where the decoder is inside an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between sequences.
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC [` (a control sequence), with its first parameter so far
    /// and whether anything else (more parameters, a private marker, an
    /// intermediate byte) came along. Only the first parameter matters.
    ControlSequence { first: u16, more: bool },
    /// After `ESC O` (single shift 3: the cursor keys in application mode).
    SingleShift,
}

/// Decodes a serial terminal's input, one byte at a time.
#[derive(Clone, Debug)]
pub struct SerialDecoder {
    state: State,
    /// The last byte was CR: an LF right after it ends the same line.
    after_carriage_return: bool,
}

impl Default for SerialDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SerialDecoder {
    /// A decoder between sequences.
    pub const fn new() -> Self {
        Self {
            state: State::Ground,
            after_carriage_return: false,
        }
    }

    /// Takes the next byte; returns the key it completes, if any.
    pub fn feed(&mut self, byte: u8) -> Option<Key> {
        let after_carriage_return = core::mem::take(&mut self.after_carriage_return);
        match self.state {
            State::Ground => self.ground(byte, after_carriage_return),
            State::Escape => match byte {
                b'[' => {
                    self.state = State::ControlSequence {
                        first: 0,
                        more: false,
                    };
                    None
                }
                b'O' => {
                    self.state = State::SingleShift;
                    None
                }
                _ => self.restart(byte),
            },
            State::ControlSequence { first, more } => match byte {
                b'0'..=b'9' if !more => {
                    let digit = u16::from(byte - b'0');
                    let first = first
                        .saturating_mul(10)
                        .saturating_add(digit)
                        .min(PARAMETER_MAX);
                    self.state = State::ControlSequence { first, more };
                    None
                }
                // Further parameters, separators, private markers (0x30-0x3F)
                // and intermediate bytes (0x20-0x2F).
                0x20..=0x3F => {
                    self.state = State::ControlSequence { first, more: true };
                    None
                }
                // The final byte.
                0x40..=0x7E => {
                    self.state = State::Ground;
                    control_sequence(first, byte)
                }
                _ => self.restart(byte),
            },
            State::SingleShift => match byte {
                0x40..=0x7E => {
                    self.state = State::Ground;
                    match byte {
                        b'H' => Some(Key::Home),
                        b'F' => Some(Key::End),
                        _ => cursor_key(byte),
                    }
                }
                _ => self.restart(byte),
            },
        }
    }

    /// Drops the sequence in progress and decodes `byte` as if between
    /// sequences.
    fn restart(&mut self, byte: u8) -> Option<Key> {
        self.state = State::Ground;
        self.ground(byte, false)
    }

    fn ground(&mut self, byte: u8, after_carriage_return: bool) -> Option<Key> {
        match byte {
            ESC => {
                self.state = State::Escape;
                None
            }
            b'\r' => {
                self.after_carriage_return = true;
                Some(Key::Enter)
            }
            b'\n' if after_carriage_return => None,
            0x7F => Some(Key::Backspace),
            0x20..=0x7E => Some(Key::Char(char::from(byte))),
            0x00..=0x1F => Key::from_control(byte),
            // Not ASCII: the shell's commands are.
            _ => None,
        }
    }
}

/// The key of `ESC [ <first> <final>`.
fn control_sequence(first: u16, final_byte: u8) -> Option<Key> {
    match (final_byte, first) {
        (b'H', _) => Some(Key::Home),
        (b'F', _) => Some(Key::End),
        (b'~', 1 | 7) => Some(Key::Home),
        (b'~', 4 | 8) => Some(Key::End),
        (b'~', 3) => Some(Key::Delete),
        (b'~', _) => None,
        _ => cursor_key(final_byte),
    }
}

/// The arrow of a final byte `A`..`D`, if it is one.
fn cursor_key(final_byte: u8) -> Option<Key> {
    match final_byte {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every key `bytes` decode to, fed through one decoder.
    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut decoder = SerialDecoder::new();
        bytes
            .iter()
            .filter_map(|&byte| decoder.feed(byte))
            .collect()
    }

    #[test]
    fn printable_bytes_are_characters() {
        assert_eq!(
            keys(b"ls -l"),
            "ls -l".chars().map(Key::Char).collect::<Vec<_>>()
        );
    }

    #[test]
    fn arrows_in_both_cursor_modes() {
        use Key::*;
        assert_eq!(keys(b"\x1b[A\x1b[B\x1b[C\x1b[D"), [Up, Down, Right, Left]);
        assert_eq!(keys(b"\x1bOA\x1bOB\x1bOC\x1bOD"), [Up, Down, Right, Left]);
    }

    #[test]
    fn home_end_and_delete_in_every_spelling() {
        use Key::*;
        assert_eq!(
            keys(b"\x1b[H\x1b[1~\x1b[7~\x1bOH\x1b[F\x1b[4~\x1b[8~\x1bOF\x1b[3~"),
            [Home, Home, Home, Home, End, End, End, End, Delete]
        );
    }

    #[test]
    fn modifiers_are_ignored_and_unknown_sequences_vanish() {
        use Key::*;
        // Ctrl-Right, Shift-Up; then F5, Page Up, Insert, a private mode report.
        assert_eq!(keys(b"\x1b[1;5C\x1b[1;2A"), [Right, Up]);
        assert_eq!(keys(b"\x1b[15~\x1b[5~\x1b[2~\x1b[?1;2c\x1b[Z"), []);
        assert_eq!(keys(b"\x1b[3;5~"), [Delete]);
    }

    #[test]
    fn editing_bytes() {
        use Key::*;
        assert_eq!(
            keys(b"\x7f\x08\x03\x15"),
            [Backspace, Backspace, Cancel, EraseToStart]
        );
        assert_eq!(
            keys(b"\x01\x05\x0b\x17"),
            [Home, End, EraseToEnd, EraseWord]
        );
        assert_eq!(keys(b"\t\x00\x1c"), []);
        assert_eq!(keys("é".as_bytes()), []);
    }

    #[test]
    fn one_enter_per_line_ending() {
        use Key::*;
        assert_eq!(
            keys(b"a\rb\nc\r\nd\n\n\r\r"),
            [
                Char('a'),
                Enter,
                Char('b'),
                Enter,
                Char('c'),
                Enter,
                Char('d'),
                Enter,
                Enter,
                Enter,
                Enter
            ]
        );
    }

    #[test]
    fn a_broken_sequence_gives_back_the_byte_that_broke_it() {
        use Key::*;
        // Esc, then a letter; Esc [ interrupted by Ctrl-C; Esc O by Enter.
        assert_eq!(keys(b"\x1ba"), [Char('a')]);
        assert_eq!(keys(b"\x1b[1\x03x"), [Cancel, Char('x')]);
        assert_eq!(keys(b"\x1bO\r"), [Enter]);
        // Esc Esc [ A: the second Esc starts the sequence again.
        assert_eq!(keys(b"\x1b\x1b[A"), [Up]);
    }

    #[test]
    fn long_parameters_do_not_overflow() {
        let mut bytes = b"\x1b[".to_vec();
        bytes.extend([b'9'; 40]);
        bytes.extend(b"~\x1b[D");
        assert_eq!(keys(&bytes), [Key::Left]);
    }

    proptest! {
        /// Whatever came before, the decoder finds its way back: after
        /// any bytes, a CR (which ends any sequence) then `ESC [ D` is Left.
        #[test]
        fn recovers_from_any_bytes(noise in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut decoder = SerialDecoder::new();
            for byte in noise {
                decoder.feed(byte);
            }
            let tail: Vec<Key> = b"\r\x1b[D".iter().filter_map(|&b| decoder.feed(b)).collect();
            prop_assert_eq!(tail.last(), Some(&Key::Left));
        }
    }
}
