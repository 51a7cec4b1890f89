//! The shell's history: the last [`HISTORY_LEN`] lines run, for Up and Down.
#![forbid(unsafe_code)]

use arrayvec::ArrayVec;

use super::line::Line;

/// How many lines the history keeps.
pub const HISTORY_LEN: usize = 16;

/// The lines run so far, the oldest dropped once [`HISTORY_LEN`] are kept.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Oldest first.
    entries: ArrayVec<Line, HISTORY_LEN>,
}

impl History {
    /// An empty history.
    pub const fn new() -> Self {
        Self {
            entries: ArrayVec::new_const(),
        }
    }

    /// Records a line that was run. Blank lines are not kept, nor a line
    /// equal to the newest entry (so repeating a command takes one entry).
    pub fn push(&mut self, line: &Line) {
        if line.is_blank() || self.entries.last() == Some(line) {
            return;
        }
        if self.entries.is_full() {
            self.entries.remove(0);
        }
        self.entries.push(line.clone());
    }

    /// The entry `back` lines ago: 0 is the newest.
    pub fn back(&self, back: usize) -> Option<&Line> {
        let index = self.entries.len().checked_sub(back + 1)?;
        self.entries.get(index)
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was run yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line::from_text(text).expect("a valid line")
    }

    #[test]
    fn newest_first_without_repeats_or_blanks() {
        let mut history = History::new();
        for text in ["help", "meminfo", "meminfo", "", "   ", "help"] {
            history.push(&line(text));
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.back(0), Some(&line("help")));
        assert_eq!(history.back(1), Some(&line("meminfo")));
        assert_eq!(history.back(2), Some(&line("help")));
        assert_eq!(history.back(3), None);
    }

    #[test]
    fn drops_the_oldest_when_full() {
        let mut history = History::new();
        for number in 0..HISTORY_LEN + 5 {
            history.push(&line(&format!("alloc {number}")));
        }
        assert_eq!(history.len(), HISTORY_LEN);
        let newest = format!("alloc {}", HISTORY_LEN + 4);
        assert_eq!(history.back(0).map(Line::as_str), Some(newest.as_str()));
        assert_eq!(
            history.back(HISTORY_LEN - 1).map(Line::as_str),
            Some("alloc 5")
        );
        assert_eq!(history.back(HISTORY_LEN), None);
    }
}
