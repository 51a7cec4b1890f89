//! The echoes, checked on model displays: whatever the keys, the display
//! ends up showing the editor's line with the cursor where the editor has it.

use super::*;
use crate::input::Key::{self, *};
use crate::shell::editor::{LineEditor, Outcome};
use proptest::prelude::*;

/// A VT100 terminal's current row after the prompt, understanding what
/// `TerminalEcho` sends (and failing on anything else).
#[derive(Default)]
struct Terminal {
    row: Vec<u8>,
    column: usize,
    /// Rows finished with a newline.
    done: Vec<String>,
}

impl Terminal {
    fn feed(&mut self, output: &str) {
        let bytes = output.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'\n' => {
                    let row = String::from_utf8(core::mem::take(&mut self.row)).unwrap();
                    self.done.push(row.trim_end().to_string());
                    self.column = 0;
                }
                0x1B => {
                    assert_eq!(bytes[index + 1], b'[', "{output:?}");
                    let digits = bytes[index + 2..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let count: usize = core::str::from_utf8(&bytes[index + 2..index + 2 + digits])
                        .unwrap()
                        .parse()
                        .unwrap_or(1);
                    index += 2 + digits;
                    match bytes[index] {
                        b'C' => self.column += count,
                        b'D' => {
                            self.column =
                                self.column.checked_sub(count).expect("left of the prompt")
                        }
                        b'K' if digits == 0 => self.row.truncate(self.column),
                        other => panic!("unexpected final byte {other:?} in {output:?}"),
                    }
                    assert!(
                        self.column <= self.row.len(),
                        "cursor past the text: {output:?}"
                    );
                }
                byte @ 0x20..=0x7E => {
                    if self.column < self.row.len() {
                        self.row[self.column] = byte;
                    } else {
                        self.row.push(byte);
                    }
                    self.column += 1;
                }
                other => panic!("unexpected byte {other:#x} in {output:?}"),
            }
            index += 1;
        }
    }
}

/// A screen's current row after the prompt: BS erases backwards, text
/// overwrites; each cell remembers its style.
#[derive(Default)]
struct Screen {
    cells: Vec<(u8, Style)>,
    column: usize,
    done: Vec<String>,
}

impl Screen {
    fn write(&mut self, text: &str, style: Style) {
        assert!(!text.is_empty(), "empty writes are not sent");
        for byte in text.bytes() {
            match byte {
                b'\n' => {
                    assert!(self.cells.iter().all(|&(_, style)| style == Style::Plain));
                    let row = self
                        .cells
                        .iter()
                        .map(|&(byte, _)| byte as char)
                        .collect::<String>();
                    self.done.push(row.trim_end().to_string());
                    self.cells.clear();
                    self.column = 0;
                }
                0x08 => {
                    self.column = self.column.checked_sub(1).expect("erased into the prompt");
                    self.cells[self.column] = (b' ', Style::Plain);
                }
                0x20..=0x7E => {
                    if self.column < self.cells.len() {
                        self.cells[self.column] = (byte, style);
                    } else {
                        self.cells.push((byte, style));
                    }
                    self.column += 1;
                }
                other => panic!("unexpected byte {other:#x}"),
            }
        }
    }

    /// What the row reads, the cursor cell marked `[x]`, blanks past the
    /// end of the text dropped.
    fn reads(&self) -> String {
        let mut text = String::new();
        for &(byte, style) in &self.cells {
            match style {
                Style::Plain => text.push(byte as char),
                Style::Cursor => text.push_str(&format!("[{}]", byte as char)),
            }
        }
        text.trim_end().to_string()
    }
}

/// Types keys into an editor and both echoes, each prompt shown first as
/// the shell's session does; returns the displays.
fn drive(keys: &[Key]) -> (LineEditor, Terminal, Screen) {
    let mut editor = LineEditor::new();
    let (mut terminal_echo, mut screen_echo) = (TerminalEcho::new(), ScreenEcho::new());
    let (mut terminal, mut screen) = (Terminal::default(), Screen::default());
    let mut prompt = true;
    for &key in keys {
        let mut output = String::new();
        let mut draw = |text: &str, style| screen.write(text, style);
        if prompt {
            terminal_echo
                .show(editor.line(), editor.cursor(), &mut output)
                .unwrap();
            screen_echo.show(editor.line(), editor.cursor(), &mut draw);
            prompt = false;
        }
        match editor.handle(key) {
            Outcome::Editing => {
                terminal_echo
                    .show(editor.line(), editor.cursor(), &mut output)
                    .unwrap();
                screen_echo.show(editor.line(), editor.cursor(), &mut draw);
            }
            Outcome::Cancelled => {
                terminal_echo.finish("^C", &mut output).unwrap();
                screen_echo.finish("^C", &mut draw);
                prompt = true;
            }
            Outcome::Submitted(_) | Outcome::TooLong { .. } => {
                terminal_echo.finish("", &mut output).unwrap();
                screen_echo.finish("", &mut draw);
                prompt = true;
            }
        }
        terminal.feed(&output);
    }
    if prompt {
        let mut draw = |text: &str, style| screen.write(text, style);
        screen_echo.show(editor.line(), editor.cursor(), &mut draw);
    }
    (editor, terminal, screen)
}

fn typed(text: &str) -> Vec<Key> {
    text.chars().map(Char).collect()
}

/// The terminal output of `keys` typed after `before`.
fn terminal_output(before: &[Key], keys: &[Key]) -> String {
    let mut editor = LineEditor::new();
    let mut echo = TerminalEcho::new();
    let mut output = String::new();
    for (index, &key) in before.iter().chain(keys).enumerate() {
        assert_eq!(editor.handle(key), Outcome::Editing);
        if index == before.len() {
            output.clear();
        }
        echo.show(editor.line(), editor.cursor(), &mut output)
            .unwrap();
    }
    output
}

#[test]
fn typing_at_the_end_echoes_just_the_characters() {
    assert_eq!(terminal_output(&[], &typed("meminfo")), "meminfo");
    let (_, terminal, screen) = drive(&typed("meminfo"));
    assert_eq!(terminal.row, b"meminfo");
    assert_eq!(screen.reads(), "meminfo[ ]");
}

#[test]
fn the_screen_shows_the_cursor_at_an_empty_prompt() {
    let mut echo = ScreenEcho::new();
    let mut screen = Screen::default();
    let editor = LineEditor::new();
    echo.show(editor.line(), editor.cursor(), &mut |text, style| {
        screen.write(text, style)
    });
    assert_eq!(screen.reads(), "[ ]");
    // Showing the same again draws nothing.
    echo.show(editor.line(), editor.cursor(), &mut |_, _| {
        panic!("redrew an unchanged line")
    });
    // A typed character replaces the cursor cell and moves it on.
    let mut writes = Vec::new();
    echo.show(&Line::from_text("a").unwrap(), 1, &mut |text, style| {
        writes.push((text.to_string(), style))
    });
    assert_eq!(
        writes,
        [
            ("\u{8}".to_string(), Style::Plain),
            ("a".to_string(), Style::Plain),
            (" ".to_string(), Style::Cursor)
        ]
    );
}

#[test]
fn the_terminal_gets_short_cursor_sequences() {
    let before = typed("meminfX");
    assert_eq!(terminal_output(&before, &[Backspace]), "\x1b[1D\x1b[K");
    assert_eq!(terminal_output(&before, &[Left, Left]), "\x1b[1D\x1b[1D");
    assert_eq!(terminal_output(&before, &[Home]), "\x1b[7D");
    // Inserting in the middle rewrites the tail and steps back over it.
    assert_eq!(
        terminal_output(&before, &[Left, Char('o')]),
        "\x1b[1DoX\x1b[1D"
    );
    assert_eq!(terminal_output(&before, &[Home, End]), "\x1b[7D\x1b[7C");
    assert_eq!(
        terminal_output(&before, &[Home, Delete]),
        "\x1b[7DeminfX\x1b[K\x1b[6D"
    );
}

#[test]
fn history_recall_rewrites_from_the_first_difference() {
    let mut keys = typed("alloc 4096");
    keys.push(Enter);
    keys.extend(typed("alloc 1"));
    keys.push(Up);
    let (editor, terminal, screen) = drive(&keys);
    assert_eq!(editor.line().as_str(), "alloc 4096");
    assert_eq!(terminal.done, ["alloc 4096"]);
    assert_eq!(terminal.row, b"alloc 4096");
    assert_eq!(screen.reads(), "alloc 4096[ ]");
}

#[test]
fn the_screen_marks_the_cursor_inside_the_line() {
    let mut keys = typed("frames 10");
    keys.extend([Left, Left]);
    let (_, _, screen) = drive(&keys);
    assert_eq!(screen.reads(), "frames [1]0");
    keys.push(Home);
    assert_eq!(drive(&keys).2.reads(), "[f]rames 10");
    keys.push(End);
    assert_eq!(drive(&keys).2.reads(), "frames 10[ ]");
}

#[test]
fn cancel_and_enter_leave_the_line_on_its_own_row() {
    let mut keys = typed("shutdown");
    keys.extend([Home, Cancel]);
    keys.extend(typed("help"));
    keys.extend([Left, Enter]);
    let (_, terminal, screen) = drive(&keys);
    assert_eq!(terminal.done, ["shutdown^C", "help"]);
    assert_eq!(screen.done, ["shutdown^C", "help"]);
    // The next prompt: nothing typed yet, the cursor cell shown.
    assert!(terminal.row.is_empty());
    assert_eq!(screen.reads(), "[ ]");
}

/// Keys for the property test, Enter and Cancel rarer than the rest.
fn any_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        6 => proptest::char::range(' ', '~').prop_map(Char),
        6 => prop_oneof![
            Just(Left), Just(Right), Just(Home), Just(End), Just(Up), Just(Down),
            Just(Backspace), Just(Delete), Just(EraseToStart), Just(EraseToEnd),
            Just(EraseWord),
        ],
        1 => prop_oneof![Just(Enter), Just(Cancel)],
    ]
}

proptest! {
    #![proptest_config(mm::testing::cases(2_000))]

    /// After any keys, both displays show exactly the editor's line, the
    /// terminal's cursor and the screen's marked cell where the editor's
    /// cursor is, and every finished row reads as the line that was left.
    #[test]
    fn displays_follow_the_editor(
        fill in 0usize..140,
        keys in proptest::collection::vec(any_key(), 0..300),
    ) {
        let keys: Vec<Key> = core::iter::repeat_n(Char('y'), fill).chain(keys).collect();
        let (editor, terminal, screen) = drive(&keys);
        let text = editor.line().as_str();
        prop_assert_eq!(terminal.row.as_slice(), text.as_bytes());
        prop_assert_eq!(terminal.column, editor.cursor());
        let cursor = editor.cursor();
        let expected = if cursor < text.len() {
            format!("{}[{}]{}", &text[..cursor], &text[cursor..cursor + 1], &text[cursor + 1..])
        } else {
            format!("{text}[ ]")
        };
        prop_assert_eq!(screen.reads(), expected.trim_end());
        prop_assert_eq!(screen.column, text.len() + usize::from(cursor == text.len()));
        prop_assert_eq!(&terminal.done, &screen.done);
    }
}
