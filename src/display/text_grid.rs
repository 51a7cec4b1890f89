//! The text screen as a grid of cells: the terminal logic (cursor, line
//! breaks, wrapping, scrolling, colours) behind both screen consoles.
//!
//! A [`TextGrid`] holds every cell of the screen in memory it is handed and
//! remembers which cells its renderer has not drawn yet. The VGA text
//! console and the framebuffer console only ask for those
//! ([`TextGrid::drain_changes`]) and draw them. Scrolling moves cells in
//! this memory, never on the screen, so a renderer never reads video memory
//! back (slow on real hardware) and redraws only the cells whose content
//! changed.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use core::fmt;
use core::ops::Range;

/// What a piece of text means; each screen turns it into its own colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Color {
    /// Normal text: light grey on black.
    #[default]
    Normal,
    /// Warnings: yellow on black.
    Warning,
    /// Errors and fault reports: white on red.
    Error,
    /// Success lines: light green on black.
    Good,
}

/// One character cell: what it shows and in which colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The character; a screen shows one its font lacks as a placeholder.
    pub character: char,
    /// Its colour.
    pub color: Color,
}

impl Cell {
    /// An empty cell in the normal colour: what a new or scrolled-in row holds.
    pub const BLANK: Cell = Cell {
        character: ' ',
        color: Color::Normal,
    };
}

/// Storage for one cell of a [`TextGrid`]: the cell, and whether the
/// screen shows it (its renderer drew it since it last changed). Eight
/// bytes: a framebuffer console of 1280x800 pixels (142x40 cells of 9x20)
/// needs 45 440, one of 1024x768 (128x48 of 8x16) 49 152.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    character: char,
    color: Color,
    drawn: bool,
}

impl Slot {
    /// What to fill a grid's storage with; all zeros, so a static array of
    /// them costs no space in the kernel image (the grid blanks it anyway).
    pub const EMPTY: Slot = Slot {
        character: '\0',
        color: Color::Normal,
        drawn: false,
    };

    /// A slot holding `cell`, which the screen does not show yet.
    const fn undrawn(cell: Cell) -> Slot {
        Slot {
            character: cell.character,
            color: cell.color,
            drawn: false,
        }
    }

    /// Stores `cell`; whether that changed the slot (which then needs drawing).
    fn store(&mut self, cell: Cell) -> bool {
        if self.cell() == cell {
            return false;
        }
        *self = Slot::undrawn(cell);
        true
    }

    fn cell(&self) -> Cell {
        Cell {
            character: self.character,
            color: self.color,
        }
    }
}

const _: () = assert!(size_of::<Slot>() == 8);

/// Where a line longer than the screen is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// At the last column, mid-word if need be.
    AtColumn,
    /// Before the word that does not fit, which moves to the next row,
    /// unless it alone fills a row (then it breaks at the column). A space
    /// that arrives at a full row becomes the line break.
    AtWord,
}

/// Why storage cannot be used as a grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridError {
    /// No columns or no rows.
    Empty,
    /// Fewer slots than columns * rows.
    StorageTooSmall,
}

/// A scrolling text screen of `columns` x `rows` cells with a cursor.
///
/// Printable characters go at the cursor, which moves right; `\n` moves to
/// the start of the next row, `\r` to the start of this row, and backspace
/// (`\u{8}`) one column back, blanking that cell. A character that does not
/// fit on the row goes to the next one (see [`Wrap`]); a line break on the
/// last row scrolls the grid up by one row.
pub struct TextGrid<'a> {
    /// The cells, row by row.
    slots: &'a mut [Slot],
    columns: usize,
    rows: usize,
    /// The cursor. `column == columns` after the last column was written:
    /// the next printable character wraps, a line break does not add a row.
    column: usize,
    row: usize,
    color: Color,
    wrap: Wrap,
    /// Rows that hold undrawn cells (and possibly rows in between).
    dirty: Range<usize>,
}

impl<'a> TextGrid<'a> {
    /// A blank grid of `columns` x `rows` cells in the first slots of
    /// `slots`, with the cursor at the top left; nothing of it drawn yet.
    pub fn new(
        slots: &'a mut [Slot],
        columns: usize,
        rows: usize,
        wrap: Wrap,
    ) -> Result<Self, GridError> {
        if columns == 0 || rows == 0 {
            return Err(GridError::Empty);
        }
        let slots = match columns.checked_mul(rows) {
            Some(cells) if cells <= slots.len() => &mut slots[..cells],
            _ => return Err(GridError::StorageTooSmall),
        };
        slots.fill(Slot::undrawn(Cell::BLANK));
        Ok(Self {
            slots,
            columns,
            rows,
            column: 0,
            row: 0,
            color: Color::Normal,
            wrap,
            dirty: 0..rows,
        })
    }

    /// Columns and rows.
    pub fn size(&self) -> (usize, usize) {
        (self.columns, self.rows)
    }

    /// The cursor as (column, row). The column equals the number of columns
    /// when the row is full: the next printable character goes on the next row.
    pub fn cursor(&self) -> (usize, usize) {
        (self.column, self.row)
    }

    /// The cell at (column, row), if that is inside the grid.
    pub fn cell(&self, column: usize, row: usize) -> Option<Cell> {
        if column < self.columns && row < self.rows {
            Some(self.slots[row * self.columns + column].cell())
        } else {
            None
        }
    }

    /// Sets the colour of the text written from now on.
    pub fn set_color(&mut self, color: Color) {
        self.color = color;
    }

    /// Writes one character (see the type's documentation for control characters).
    pub fn write_char(&mut self, character: char) {
        match character {
            '\n' => self.new_line(),
            '\r' => self.column = 0,
            '\u{8}' => {
                if self.column > 0 {
                    self.column -= 1;
                    self.set(self.column, self.row, self.colored(' '));
                }
            }
            character => self.put(character),
        }
    }

    /// Writes every character of `text`.
    pub fn write_str(&mut self, text: &str) {
        text.chars()
            .for_each(|character| self.write_char(character));
    }

    /// Calls `draw(column, row, cell)` for every cell that changed since it
    /// was last drawn (every cell, the first time), row by row; afterwards
    /// the grid counts them as shown.
    pub fn drain_changes(&mut self, mut draw: impl FnMut(usize, usize, Cell)) {
        let dirty = core::mem::replace(&mut self.dirty, 0..0);
        for row in dirty {
            let slots = &mut self.slots[row * self.columns..(row + 1) * self.columns];
            for (column, slot) in slots.iter_mut().enumerate() {
                if !slot.drawn {
                    draw(column, row, slot.cell());
                    slot.drawn = true;
                }
            }
        }
    }

    fn colored(&self, character: char) -> Cell {
        Cell {
            character,
            color: self.color,
        }
    }

    /// Puts a printable character at the cursor, first breaking the line if
    /// the row is full.
    fn put(&mut self, character: char) {
        if self.column == self.columns {
            match self.wrap {
                Wrap::AtColumn => self.new_line(),
                Wrap::AtWord if character == ' ' => return self.new_line(),
                Wrap::AtWord => self.break_before_word(),
            }
        }
        self.set(self.column, self.row, self.colored(character));
        self.column += 1;
    }

    /// Breaks the full cursor row before the word at its end (the cells
    /// after its last space), moving the word to the start of the next row.
    fn break_before_word(&mut self) {
        let start = self.row * self.columns;
        let word = match self.slots[start..start + self.columns]
            .iter()
            .rposition(|slot| slot.character == ' ')
        {
            Some(space) => space + 1..self.columns,
            // One word fills the row: it cannot fit on the next one either.
            None => self.columns..self.columns,
        };
        self.new_line();
        // The row the word was on is now the one above (scrolled or not),
        // unless a one-row grid scrolled it away.
        let Some(above) = self.row.checked_sub(1) else {
            return;
        };
        for from in word {
            let cell = self.slots[above * self.columns + from].cell();
            self.set(from, above, Cell::BLANK);
            self.set(self.column, self.row, cell);
            self.column += 1;
        }
    }

    /// Moves the cursor to the start of the next row, scrolling on the last.
    fn new_line(&mut self) {
        self.column = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            self.scroll_up();
        }
    }

    /// Moves every row up by one and blanks the last. Each cell is compared
    /// with the one it replaces, so only cells whose content differs are
    /// redrawn (a blank cell scrolled onto a blank cell is not).
    fn scroll_up(&mut self) {
        let columns = self.columns;
        for row in 0..self.rows {
            let (upper, lower) = self.slots.split_at_mut((row + 1) * columns);
            let target = &mut upper[row * columns..];
            let mut changed = false;
            match lower.get(..columns) {
                Some(source) => {
                    for (slot, from) in target.iter_mut().zip(source) {
                        changed |= slot.store(from.cell());
                    }
                }
                None => target
                    .iter_mut()
                    .for_each(|slot| changed |= slot.store(Cell::BLANK)),
            }
            if changed {
                self.mark(row);
            }
        }
    }

    /// Stores `cell` at (column, row); marks it for drawing if it differs
    /// from what is there.
    fn set(&mut self, column: usize, row: usize, cell: Cell) {
        if self.slots[row * self.columns + column].store(cell) {
            self.mark(row);
        }
    }

    /// Notes that `row` holds undrawn cells.
    fn mark(&mut self, row: usize) {
        self.dirty = if self.dirty.is_empty() {
            row..row + 1
        } else {
            self.dirty.start.min(row)..self.dirty.end.max(row + 1)
        };
    }
}

impl fmt::Write for TextGrid<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        TextGrid::write_str(self, text);
        Ok(())
    }
}
