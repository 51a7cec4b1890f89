//! What the line being edited looks like on each output: the bytes that
//! take a display from what it shows to the editor's new state.
//!
//! Both echoes remember what they last showed, find the first character
//! that changed and rewrite from there, so typing at the end of a line
//! echoes just the character, as before the editor existed.
//!
//! * [`TerminalEcho`]: a VT100 (xterm, minicom, `screen`) on the serial
//!   port. It moves the cursor with `ESC [ n D` / `ESC [ n C` and clears
//!   what is left of a shorter line with `ESC [ K`.
//! * [`ScreenEcho`]: the kernel's own VGA text and framebuffer consoles,
//!   which only write forward and erase backwards with BS. They have no
//!   cursor of their own, so the character under the cursor is drawn in
//!   [`Style::Cursor`], and a cursor at the end of the line (at an empty
//!   prompt, say) as a blank cell in that style after the text.
//!
//! Neither knows the display's width: a prompt and line wider than it
//! wrap, and edits before the wrap do not reach back across it.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use super::line::{Line, LINE_MAX};

/// Length of the common start of `old` and `new`.
fn common_prefix(old: &[u8], new: &[u8]) -> usize {
    old.iter().zip(new).take_while(|(a, b)| a == b).count()
}

/// The line echo on a VT100 terminal.
#[derive(Clone, Debug, Default)]
pub struct TerminalEcho {
    /// What the terminal shows after the prompt.
    shown: Line,
    /// Where its cursor is, in characters after the prompt.
    cursor: usize,
}

impl TerminalEcho {
    /// An echo for a terminal that shows a prompt and nothing after it.
    pub const fn new() -> Self {
        Self {
            shown: Line::new(),
            cursor: 0,
        }
    }

    /// Writes what takes the terminal to `line` with the cursor at
    /// `cursor`.
    pub fn show(&mut self, line: &Line, cursor: usize, out: &mut impl Write) -> fmt::Result {
        let (old, new) = (self.shown.as_bytes(), line.as_bytes());
        let same = common_prefix(old, new);
        if same < old.len() || same < new.len() {
            move_cursor(self.cursor, same, out)?;
            out.write_str(&line.as_str()[same..])?;
            if new.len() < old.len() {
                out.write_str("\x1b[K")?;
            }
            move_cursor(new.len(), cursor, out)?;
        } else {
            move_cursor(self.cursor, cursor, out)?;
        }
        self.shown = line.clone();
        self.cursor = cursor;
        Ok(())
    }

    /// Leaves the line as shown, followed by `note` (`^C`, or nothing),
    /// and moves to a new line; the next prompt starts afresh.
    pub fn finish(&mut self, note: &str, out: &mut impl Write) -> fmt::Result {
        move_cursor(self.cursor, self.shown.len(), out)?;
        out.write_str(note)?;
        out.write_str("\n")?;
        *self = Self::new();
        Ok(())
    }
}

/// Moves a terminal's cursor from column `from` to column `to`.
fn move_cursor(from: usize, to: usize, out: &mut impl Write) -> fmt::Result {
    match to.cmp(&from) {
        core::cmp::Ordering::Less => write!(out, "\x1b[{}D", from - to),
        core::cmp::Ordering::Greater => write!(out, "\x1b[{}C", to - from),
        core::cmp::Ordering::Equal => Ok(()),
    }
}

/// How the screen should draw a piece of the echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Like any other console text.
    Plain,
    /// The character under the cursor.
    Cursor,
}

/// As many backspaces as a line and the cursor cell after it can need,
/// sliced from.
const BACKSPACES: &str = {
    const BYTES: [u8; LINE_MAX + 1] = [0x08; LINE_MAX + 1];
    match core::str::from_utf8(&BYTES) {
        Ok(text) => text,
        Err(_) => panic!("BS is ASCII"),
    }
};

/// Where the screen shows the cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mark {
    /// Nowhere (a finished line, or nothing drawn yet).
    #[default]
    None,
    /// On the character at this index of the line.
    On(usize),
    /// On a blank cell after the line.
    After,
}

/// The line echo on the kernel's screens.
#[derive(Clone, Debug, Default)]
pub struct ScreenEcho {
    /// What the screen shows after the prompt.
    shown: Line,
    /// Where it shows the cursor.
    mark: Mark,
}

/// A blank cell for [`Mark::After`], drawn in [`Style::Cursor`].
const BLANK: &str = " ";

impl ScreenEcho {
    /// An echo for a screen that shows a prompt and nothing after it.
    pub const fn new() -> Self {
        Self {
            shown: Line::new(),
            mark: Mark::None,
        }
    }

    /// Writes, through `out`, what takes the screen to `line` with the
    /// cursor at `cursor`.
    pub fn show(&mut self, line: &Line, cursor: usize, out: &mut impl FnMut(&str, Style)) {
        let mark = if cursor < line.len() {
            Mark::On(cursor)
        } else {
            Mark::After
        };
        self.redraw(line, mark, out);
    }

    /// Leaves the line as shown without the cursor, followed by `note`
    /// (`^C`, or nothing), and moves to a new line.
    pub fn finish(&mut self, note: &str, out: &mut impl FnMut(&str, Style)) {
        let shown = self.shown.clone();
        self.redraw(&shown, Mark::None, out);
        if !note.is_empty() {
            out(note, Style::Plain);
        }
        out("\n", Style::Plain);
        *self = Self::new();
    }

    fn redraw(&mut self, line: &Line, mark: Mark, out: &mut impl FnMut(&str, Style)) {
        if *line == self.shown && mark == self.mark {
            return;
        }
        let old = self.shown.as_bytes();
        // The cells shown, the blank cursor cell after the text included.
        let old_cells = old.len() + usize::from(self.mark == Mark::After);
        let mut same = common_prefix(old, line.as_bytes());
        if self.mark != mark {
            // The cell that loses or gains the cursor must be drawn again.
            for cell in [self.mark, mark] {
                if let Mark::On(cell) = cell {
                    same = same.min(cell);
                }
            }
        }
        let mut write = |text: &str, style| {
            if !text.is_empty() {
                out(text, style);
            }
        };
        write(&BACKSPACES[..old_cells - same], Style::Plain);
        let text = line.as_str();
        match mark {
            Mark::On(cell) if cell >= same => {
                write(&text[same..cell], Style::Plain);
                write(&text[cell..cell + 1], Style::Cursor);
                write(&text[cell + 1..], Style::Plain);
            }
            _ => write(&text[same..], Style::Plain),
        }
        if mark == Mark::After {
            write(BLANK, Style::Cursor);
        }
        self.shown = line.clone();
        self.mark = mark;
    }
}

#[cfg(test)]
mod tests;
