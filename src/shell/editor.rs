//! The shell's line editor: a [`Line`] with a cursor and a [`History`],
//! changed by one [`Key`] at a time. It only keeps state; what the screen
//! and the terminal show follows from that state (see [`super::echo`]).
//!
//! A line that fills up stays whole: characters typed past
//! [`LINE_MAX`](super::line::LINE_MAX)
//! are counted, not kept, and Enter then refuses the line
//! ([`Outcome::TooLong`]) rather than run its first part, which could do
//! something else than what was typed. Backspace takes back those lost
//! characters first; Ctrl-U, Ctrl-K and Ctrl-C start over.
#![forbid(unsafe_code)]

use super::history::History;
use super::line::{InsertError, Line};
use crate::input::Key;

/// What a key did to the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The line (or only the cursor) may have changed: show it.
    Editing,
    /// Enter: this line is to be run. The editor starts a new, empty one.
    Submitted(Line),
    /// Enter on a line that lost characters: nothing is run. The editor
    /// starts a new, empty line.
    TooLong {
        /// Characters typed, those kept and those lost.
        typed: usize,
    },
    /// Ctrl-C: the line was dropped; the editor starts a new, empty one.
    Cancelled,
}

/// A line being edited: its text, the cursor, what did not fit.
#[derive(Clone, Debug, Default)]
struct Edit {
    line: Line,
    /// Position of the cursor: before character `cursor`, `0..=line.len()`.
    cursor: usize,
    /// Characters typed into the full line: counted, not kept.
    lost: usize,
}

impl Edit {
    /// `line` with the cursor at its end.
    fn at_end(line: &Line) -> Self {
        Self {
            line: line.clone(),
            cursor: line.len(),
            lost: 0,
        }
    }
}

/// The line editor with its history.
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    edit: Edit,
    history: History,
    /// The history entry shown, counted back from the newest (0); `None`
    /// while the line being typed is shown.
    recalled: Option<usize>,
    /// The line being typed, kept while the history is shown.
    draft: Edit,
}

impl LineEditor {
    /// An editor with an empty line and an empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line as it stands.
    pub fn line(&self) -> &Line {
        &self.edit.line
    }

    /// The cursor position: before character `cursor()`, at most the
    /// line's length.
    pub fn cursor(&self) -> usize {
        self.edit.cursor
    }

    /// The lines run so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Applies one key.
    pub fn handle(&mut self, key: Key) -> Outcome {
        let edit = &mut self.edit;
        let len = edit.line.len();
        match key {
            Key::Char(character) => match edit.line.insert(edit.cursor, character) {
                Ok(()) => edit.cursor += 1,
                Err(InsertError::Full) => edit.lost += 1,
                Err(_) => {}
            },
            Key::Left => edit.cursor = edit.cursor.saturating_sub(1),
            Key::Right => edit.cursor = (edit.cursor + 1).min(len),
            Key::Home => edit.cursor = 0,
            Key::End => edit.cursor = len,
            Key::Backspace if edit.lost > 0 => edit.lost -= 1,
            Key::Backspace => {
                if edit.cursor > 0 {
                    edit.line.remove(edit.cursor - 1..edit.cursor);
                    edit.cursor -= 1;
                }
            }
            Key::Delete => edit.line.remove(edit.cursor..edit.cursor + 1),
            Key::EraseToStart => {
                edit.line.remove(0..edit.cursor);
                edit.cursor = 0;
                edit.lost = 0;
            }
            Key::EraseToEnd => {
                edit.line.remove(edit.cursor..len);
                edit.lost = 0;
            }
            Key::EraseWord => {
                let start = word_start(edit.line.as_bytes(), edit.cursor);
                edit.line.remove(start..edit.cursor);
                edit.cursor = start;
            }
            Key::Up => self.recall_older(),
            Key::Down => self.recall_newer(),
            Key::Enter => return self.submit(),
            Key::Cancel => {
                self.start_over();
                return Outcome::Cancelled;
            }
        }
        Outcome::Editing
    }

    /// Up: the entry before the one shown, keeping the typed line aside.
    fn recall_older(&mut self) {
        let wanted = self.recalled.map_or(0, |back| back + 1);
        let Some(entry) = self.history.back(wanted) else {
            return;
        };
        let shown = core::mem::replace(&mut self.edit, Edit::at_end(entry));
        if self.recalled.is_none() {
            self.draft = shown;
        }
        self.recalled = Some(wanted);
    }

    /// Down: the entry after the one shown, then the typed line again.
    /// Changes made to a recalled entry are dropped.
    fn recall_newer(&mut self) {
        match self.recalled {
            None => {}
            Some(0) => {
                self.edit = core::mem::take(&mut self.draft);
                self.recalled = None;
            }
            Some(back) => {
                if let Some(entry) = self.history.back(back - 1) {
                    self.edit = Edit::at_end(entry);
                }
                self.recalled = Some(back - 1);
            }
        }
    }

    fn submit(&mut self) -> Outcome {
        let edit = core::mem::take(&mut self.edit);
        self.start_over();
        if edit.lost > 0 {
            return Outcome::TooLong {
                typed: edit.line.len() + edit.lost,
            };
        }
        self.history.push(&edit.line);
        Outcome::Submitted(edit.line)
    }

    /// An empty line, the history not recalled.
    fn start_over(&mut self) {
        self.edit = Edit::default();
        self.draft = Edit::default();
        self.recalled = None;
    }
}

/// Where the word before `cursor` starts: back over blanks, then over
/// everything up to the previous blank (Ctrl-W as in a Unix terminal).
fn word_start(bytes: &[u8], cursor: usize) -> usize {
    let before = &bytes[..cursor.min(bytes.len())];
    let end = before
        .iter()
        .rposition(|&byte| byte != b' ')
        .map_or(0, |last| last + 1);
    before[..end]
        .iter()
        .rposition(|&byte| byte == b' ')
        .map_or(0, |blank| blank + 1)
}

#[cfg(test)]
mod tests;
