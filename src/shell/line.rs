//! One command line: printable ASCII, at most [`LINE_MAX`] bytes.
#![forbid(unsafe_code)]

use arrayvec::ArrayVec;

/// Longest command line.
pub const LINE_MAX: usize = 128;

/// A command line being typed, shown or kept in the history. Holds only
/// printable ASCII (0x20-0x7E), so it is always a `str` and each byte is
/// one character, one column on a terminal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    bytes: ArrayVec<u8, LINE_MAX>,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            bytes: ArrayVec::new_const(),
        }
    }

    /// `text` as a line; `None` if it is too long or not printable ASCII.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut line = Self::new();
        for (index, character) in text.chars().enumerate() {
            line.insert(index, character).ok()?;
        }
        Some(line)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored (see `insert`): valid UTF-8.
        core::str::from_utf8(&self.bytes).unwrap_or("")
    }

    /// The bytes (one per character).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in characters.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the line holds nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether only blanks (or nothing) were typed.
    pub fn is_blank(&self) -> bool {
        self.bytes.iter().all(|&byte| byte == b' ')
    }

    /// Inserts `character` before position `index` (at most `len()`).
    pub fn insert(&mut self, index: usize, character: char) -> Result<(), InsertError> {
        if !matches!(character, ' '..='~') {
            return Err(InsertError::NotPrintable);
        }
        if index > self.len() {
            return Err(InsertError::OutOfRange);
        }
        // ASCII: the character is one byte.
        self.bytes
            .try_insert(index, character as u8)
            .map_err(|_| InsertError::Full)
    }

    /// Removes the characters in `range` (clamped to the line).
    pub fn remove(&mut self, range: core::ops::Range<usize>) {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        self.bytes.drain(start..end);
    }
}

/// Why a character was not inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The line already holds [`LINE_MAX`] characters.
    Full,
    /// Not printable ASCII.
    NotPrintable,
    /// The position is past the end of the line.
    OutOfRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_printable_ascii_up_to_the_limit() {
        let mut line = Line::new();
        assert_eq!(line.insert(0, 'b'), Ok(()));
        assert_eq!(line.insert(0, 'a'), Ok(()));
        assert_eq!(line.insert(2, '~'), Ok(()));
        assert_eq!(line.as_str(), "ab~");
        assert_eq!(line.insert(1, '\t'), Err(InsertError::NotPrintable));
        assert_eq!(line.insert(1, 'é'), Err(InsertError::NotPrintable));
        assert_eq!(line.insert(4, 'x'), Err(InsertError::OutOfRange));
        let full = Line::from_text(&"x".repeat(LINE_MAX)).expect("fits");
        assert_eq!(full.clone().insert(0, 'y'), Err(InsertError::Full));
        assert_eq!(Line::from_text(&"x".repeat(LINE_MAX + 1)), None);
    }

    #[test]
    fn removes_clamped_ranges() {
        let mut line = Line::from_text("meminfo").expect("fits");
        line.remove(3..5);
        assert_eq!(line.as_str(), "memfo");
        line.remove(3..99);
        assert_eq!(line.as_str(), "mem");
        line.remove(7..9);
        assert_eq!(line.as_str(), "mem");
        assert!(Line::from_text("   ").expect("fits").is_blank());
        assert!(!line.is_blank());
    }
}
