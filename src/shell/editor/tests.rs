//! The line editor against its rules, and against a plain model under
//! random keys.

use super::*;
use crate::shell::history::HISTORY_LEN;
use crate::shell::line::LINE_MAX;
use proptest::prelude::*;
use Key::*;

/// Types `text` key by key.
fn type_text(editor: &mut LineEditor, text: &str) {
    for character in text.chars() {
        assert_eq!(editor.handle(Char(character)), Outcome::Editing);
    }
}

fn press(editor: &mut LineEditor, keys: &[Key]) {
    for &key in keys {
        assert_eq!(editor.handle(key), Outcome::Editing, "{key:?}");
    }
}

/// Runs `text` as a command line.
fn run(editor: &mut LineEditor, text: &str) {
    type_text(editor, text);
    let expected = Line::from_text(text).expect("a valid line");
    assert_eq!(editor.handle(Enter), Outcome::Submitted(expected));
}

fn state(editor: &LineEditor) -> (&str, usize) {
    (editor.line().as_str(), editor.cursor())
}

#[test]
fn moves_and_inserts_in_the_middle() {
    let mut editor = LineEditor::new();
    type_text(&mut editor, "meminfX");
    press(&mut editor, &[Backspace, Left, Left]);
    assert_eq!(state(&editor), ("meminf", 4));
    press(&mut editor, &[End, Char('o'), Home, Right]);
    assert_eq!(state(&editor), ("meminfo", 1));
    press(&mut editor, &[Left, Left, Home, Left]);
    assert_eq!(state(&editor), ("meminfo", 0));
    press(&mut editor, &[End, Right, Right]);
    assert_eq!(state(&editor), ("meminfo", 7));
    let line = Line::from_text("meminfo").expect("valid");
    assert_eq!(editor.handle(Enter), Outcome::Submitted(line));
    assert_eq!(state(&editor), ("", 0));
}

#[test]
fn backspace_and_delete_either_side_of_the_cursor() {
    let mut editor = LineEditor::new();
    type_text(&mut editor, "free 0x1X2");
    press(&mut editor, &[Left, Left, Delete]);
    assert_eq!(state(&editor), ("free 0x12", 8));
    press(&mut editor, &[Backspace, Char('3')]);
    assert_eq!(state(&editor), ("free 0x32", 8));
    // Nothing to erase: at the start for Backspace, at the end for Delete.
    press(&mut editor, &[Home, Backspace, End, Delete]);
    assert_eq!(state(&editor), ("free 0x32", 9));
}

#[test]
fn erase_to_start_to_end_and_words() {
    let mut editor = LineEditor::new();
    type_text(&mut editor, "maps 0x100000 0x200000");
    press(&mut editor, &[EraseWord]);
    assert_eq!(state(&editor), ("maps 0x100000 ", 14));
    press(&mut editor, &[EraseWord]);
    assert_eq!(state(&editor), ("maps ", 5));
    type_text(&mut editor, "0x1000  ");
    press(&mut editor, &[EraseWord]);
    assert_eq!(state(&editor), ("maps ", 5));
    type_text(&mut editor, "0x1000 0x9000");
    press(
        &mut editor,
        &[Left, Left, Left, Left, Left, Left, EraseToEnd],
    );
    assert_eq!(state(&editor), ("maps 0x1000 ", 12));
    press(&mut editor, &[Left, Left, EraseToStart]);
    assert_eq!(state(&editor), ("0 ", 0));
    press(&mut editor, &[EraseWord, End, EraseToStart]);
    assert_eq!(state(&editor), ("", 0));
}

#[test]
fn ignores_what_it_cannot_store() {
    let mut editor = LineEditor::new();
    press(&mut editor, &[Char('é'), Char('\t'), Left, Right, Down, Up]);
    assert_eq!(state(&editor), ("", 0));
}

#[test]
fn cancel_drops_the_line_and_keeps_it_out_of_the_history() {
    let mut editor = LineEditor::new();
    type_text(&mut editor, "shutdown");
    assert_eq!(editor.handle(Cancel), Outcome::Cancelled);
    assert_eq!(state(&editor), ("", 0));
    assert!(editor.history().is_empty());
    press(&mut editor, &[Up]);
    assert_eq!(state(&editor), ("", 0));
}

#[test]
fn an_over_long_line_is_refused_whole() {
    // As the shell test sends it: 138 characters, 128 kept.
    let mut editor = LineEditor::new();
    let text = format!("alloc 1{}999", " ".repeat(128));
    for character in text.chars() {
        assert_eq!(editor.handle(Char(character)), Outcome::Editing);
    }
    assert_eq!(editor.line().len(), LINE_MAX);
    assert_eq!(editor.handle(Enter), Outcome::TooLong { typed: 138 });
    assert!(editor.history().is_empty());
    assert_eq!(state(&editor), ("", 0));
}

#[test]
fn backspace_takes_back_lost_characters_first() {
    let mut editor = LineEditor::new();
    type_text(&mut editor, &"x".repeat(LINE_MAX));
    type_text(&mut editor, "yz");
    press(&mut editor, &[Backspace, Backspace]);
    assert_eq!(editor.line().len(), LINE_MAX);
    press(&mut editor, &[Backspace]);
    assert_eq!(editor.line().len(), LINE_MAX - 1);
    let line = Line::from_text(&"x".repeat(LINE_MAX - 1)).expect("fits");
    assert_eq!(editor.handle(Enter), Outcome::Submitted(line));
    // Ctrl-U starts over, lost characters included.
    type_text(&mut editor, &"x".repeat(LINE_MAX + 3));
    press(&mut editor, &[EraseToStart]);
    run(&mut editor, "help");
}

#[test]
fn up_and_down_walk_the_history_and_return_to_the_draft() {
    let mut editor = LineEditor::new();
    for text in ["help", "meminfo", "meminfo", "walk 0x1000"] {
        run(&mut editor, text);
    }
    assert_eq!(editor.history().len(), 3);
    type_text(&mut editor, "fra");
    press(&mut editor, &[Left]);
    press(&mut editor, &[Up]);
    assert_eq!(state(&editor), ("walk 0x1000", 11));
    press(&mut editor, &[Up]);
    assert_eq!(state(&editor), ("meminfo", 7));
    press(&mut editor, &[Up, Up]);
    assert_eq!(state(&editor), ("help", 4), "stays at the oldest");
    press(&mut editor, &[Down, Down]);
    assert_eq!(state(&editor), ("walk 0x1000", 11));
    press(&mut editor, &[Down]);
    assert_eq!(state(&editor), ("fra", 2), "the draft, cursor and all");
    press(&mut editor, &[Down]);
    assert_eq!(state(&editor), ("fra", 2));
}

#[test]
fn a_recalled_line_can_be_edited_and_run() {
    let mut editor = LineEditor::new();
    run(&mut editor, "alloc 4096");
    run(&mut editor, "meminfo");
    press(
        &mut editor,
        &[Up, Up, Backspace, Backspace, Char('0'), Char('0')],
    );
    let edited = Line::from_text("alloc 4000").expect("valid");
    assert_eq!(editor.handle(Enter), Outcome::Submitted(edited));
    // The edited line is the newest entry; the original stays as it was.
    press(&mut editor, &[Up]);
    assert_eq!(state(&editor), ("alloc 4000", 10));
    press(&mut editor, &[Up, Up]);
    assert_eq!(state(&editor), ("alloc 4096", 10));
    // Leaving a recalled entry drops what was changed in it.
    press(&mut editor, &[Backspace, Down, Up]);
    assert_eq!(state(&editor), ("alloc 4096", 10));
}

#[test]
fn a_recalled_line_runs_again_without_a_second_entry() {
    let mut editor = LineEditor::new();
    run(&mut editor, "frames 100");
    press(&mut editor, &[Up]);
    let line = Line::from_text("frames 100").expect("valid");
    assert_eq!(editor.handle(Enter), Outcome::Submitted(line));
    assert_eq!(editor.history().len(), 1);
}

#[test]
fn the_history_keeps_the_last_sixteen_lines() {
    let mut editor = LineEditor::new();
    for number in 0..HISTORY_LEN + 4 {
        run(&mut editor, &format!("alloc {number}"));
    }
    press(&mut editor, &[Up; HISTORY_LEN + 3]);
    assert_eq!(state(&editor), ("alloc 4", 7));
}

/// A key for the property tests: mostly characters, every other key too.
fn any_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        4 => proptest::char::range(' ', '~').prop_map(Char),
        1 => prop_oneof![
            Just(Left), Just(Right), Just(Home), Just(End), Just(Up), Just(Down),
            Just(Backspace), Just(Delete), Just(Enter), Just(EraseToStart),
            Just(EraseToEnd), Just(EraseWord), Just(Cancel), Just(Char('é')),
        ],
    ]
}

/// The editor's rules written out over plain vectors, history included.
#[derive(Clone, Default)]
struct Model {
    text: Vec<u8>,
    cursor: usize,
    lost: usize,
    history: Vec<Vec<u8>>,
    recalled: Option<usize>,
    draft: (Vec<u8>, usize, usize),
}

impl Model {
    fn show(&mut self, back: usize) {
        self.text = self.history[self.history.len() - 1 - back].clone();
        self.cursor = self.text.len();
        self.lost = 0;
        self.recalled = Some(back);
    }

    fn start_over(&mut self) {
        let history = core::mem::take(&mut self.history);
        *self = Model {
            history,
            ..Model::default()
        };
    }

    fn handle(&mut self, key: Key) -> Outcome {
        match key {
            Char(character) if character.is_ascii() && !character.is_ascii_control() => {
                if self.text.len() < LINE_MAX {
                    self.text.insert(self.cursor, character as u8);
                    self.cursor += 1;
                } else {
                    self.lost += 1;
                }
            }
            Left => self.cursor = self.cursor.saturating_sub(1),
            Right => self.cursor = (self.cursor + 1).min(self.text.len()),
            Home => self.cursor = 0,
            End => self.cursor = self.text.len(),
            Backspace if self.lost > 0 => self.lost -= 1,
            Backspace if self.cursor > 0 => {
                self.text.remove(self.cursor - 1);
                self.cursor -= 1;
            }
            Delete if self.cursor < self.text.len() => {
                self.text.remove(self.cursor);
            }
            EraseToStart => {
                self.text.drain(..self.cursor);
                self.cursor = 0;
                self.lost = 0;
            }
            EraseToEnd => {
                self.text.truncate(self.cursor);
                self.lost = 0;
            }
            EraseWord => {
                let start = word_start(&self.text, self.cursor);
                self.text.drain(start..self.cursor);
                self.cursor = start;
            }
            Up => {
                let wanted = self.recalled.map_or(0, |back| back + 1);
                if wanted < self.history.len() {
                    if self.recalled.is_none() {
                        self.draft = (self.text.clone(), self.cursor, self.lost);
                    }
                    self.show(wanted);
                }
            }
            Down => match self.recalled {
                None => {}
                Some(0) => {
                    (self.text, self.cursor, self.lost) = core::mem::take(&mut self.draft);
                    self.recalled = None;
                }
                Some(back) => self.show(back - 1),
            },
            Enter => {
                let (text, lost) = (self.text.clone(), self.lost);
                self.start_over();
                if lost > 0 {
                    return Outcome::TooLong {
                        typed: text.len() + lost,
                    };
                }
                let blank = text.iter().all(|&byte| byte == b' ');
                if !blank && self.history.last() != Some(&text) {
                    if self.history.len() == HISTORY_LEN {
                        self.history.remove(0);
                    }
                    self.history.push(text.clone());
                }
                let line = core::str::from_utf8(&text).expect("ASCII");
                return Outcome::Submitted(Line::from_text(line).expect("fits"));
            }
            Cancel => {
                self.start_over();
                return Outcome::Cancelled;
            }
            _ => {}
        }
        Outcome::Editing
    }
}

proptest! {
    #![proptest_config(mm::testing::cases(2_000))]

    /// Under any keys the editor does what the model does: same outcome,
    /// same line, same cursor, as many history entries.
    #[test]
    fn matches_a_plain_model(
        fill in 0usize..140,
        keys in proptest::collection::vec(any_key(), 0..400),
    ) {
        let mut editor = LineEditor::new();
        let mut model = Model::default();
        // Start with a long line now and then, so the limit is reached.
        for key in core::iter::repeat_n(Char('x'), fill).chain(keys) {
            prop_assert_eq!(editor.handle(key), model.handle(key), "{:?}", key);
            prop_assert_eq!(editor.line().as_bytes(), model.text.as_slice());
            prop_assert_eq!(editor.cursor(), model.cursor);
            prop_assert_eq!(editor.history().len(), model.history.len());
        }
    }
}
