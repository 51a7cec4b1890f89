//! The VGA text screen at 0xB8000 (80x25 cells), used on BIOS boots.

use core::fmt;
use core::ptr;

/// Physical (and identity-mapped) address of the VGA text buffer.
const VGA_TEXT: usize = 0xB8000;
const COLUMNS: usize = 80;
const ROWS: usize = 25;

/// Colour attributes: foreground in the low nibble, background in the high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Color {
    /// Normal text: light grey on black.
    Normal = 0x07,
    /// Warnings: yellow on black.
    Warning = 0x0E,
    /// Errors and fault reports: white on red.
    Error = 0x4F,
    /// Success lines: light green on black.
    Good = 0x0A,
}

/// A scrolling writer over the VGA text buffer.
pub struct VgaText {
    column: usize,
    color: Color,
}

impl VgaText {
    /// Takes over the text screen and clears it.
    ///
    /// # Safety
    /// The VGA text buffer must be mapped at `VGA_TEXT` (identity-mapped low
    /// memory on a BIOS boot), and nothing else may write to it.
    pub unsafe fn new() -> Self {
        let mut screen = Self {
            column: 0,
            color: Color::Normal,
        };
        for row in 0..ROWS {
            screen.clear_row(row);
        }
        screen
    }

    /// Sets the colour of the text written from now on.
    pub fn set_color(&mut self, color: Color) {
        self.color = color;
    }

    fn cell(&self, row: usize, column: usize) -> *mut u16 {
        (VGA_TEXT as *mut u16).wrapping_add(row * COLUMNS + column)
    }

    fn put(&mut self, row: usize, column: usize, byte: u8) {
        let value = u16::from(self.color as u8) << 8 | u16::from(byte);
        // SAFETY: row < ROWS and column < COLUMNS keep the cell inside the
        // 4000-byte text buffer, which `new`'s contract says is mapped.
        unsafe { ptr::write_volatile(self.cell(row, column), value) };
    }

    fn clear_row(&mut self, row: usize) {
        for column in 0..COLUMNS {
            self.put(row, column, b' ');
        }
    }

    fn new_line(&mut self) {
        for row in 1..ROWS {
            for column in 0..COLUMNS {
                // SAFETY: both cells are inside the text buffer (see `put`).
                unsafe {
                    let value = ptr::read_volatile(self.cell(row, column));
                    ptr::write_volatile(self.cell(row - 1, column), value);
                }
            }
        }
        self.clear_row(ROWS - 1);
        self.column = 0;
    }

    fn write_byte(&mut self, byte: u8) {
        match byte {
            b'\n' => self.new_line(),
            b'\r' => self.column = 0,
            0x08 => {
                if self.column > 0 {
                    self.column -= 1;
                    self.put(ROWS - 1, self.column, b' ');
                }
            }
            byte => {
                if self.column >= COLUMNS {
                    self.new_line();
                }
                // Code page 437 shows printable ASCII as is; anything else as a box.
                let shown = if (0x20..0x7F).contains(&byte) {
                    byte
                } else {
                    0xFE
                };
                self.put(ROWS - 1, self.column, shown);
                self.column += 1;
            }
        }
    }
}

impl fmt::Write for VgaText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(|byte| self.write_byte(byte));
        Ok(())
    }
}
