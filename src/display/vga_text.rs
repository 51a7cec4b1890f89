//! How a grid cell looks in VGA text mode: a code page 437 character byte
//! and an attribute byte (foreground in the low nibble, background in the high).
#![forbid(unsafe_code)]

use super::text_grid::{Cell, Color};

/// The attribute byte of each kind of text.
pub const fn attribute(color: Color) -> u8 {
    match color {
        // Light grey on black.
        Color::Normal => 0x07,
        // Yellow on black.
        Color::Warning => 0x0E,
        // White on red.
        Color::Error => 0x4F,
        // Light green on black.
        Color::Good => 0x0A,
    }
}

/// The 16-bit text-buffer entry of a cell: code page 437 shows printable
/// ASCII as is, anything else as a small box.
pub fn entry(cell: Cell) -> u16 {
    let character = match cell.character {
        ' '..='~' => cell.character as u8,
        _ => 0xFE,
    };
    u16::from(attribute(cell.color)) << 8 | u16::from(character)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_character_and_colour() {
        let cell = |character, color| entry(Cell { character, color });
        assert_eq!(cell('A', Color::Normal), 0x0741);
        assert_eq!(cell('~', Color::Warning), 0x0E7E);
        assert_eq!(cell(' ', Color::Error), 0x4F20);
        assert_eq!(cell('!', Color::Good), 0x0A21);
        assert_eq!(cell('\t', Color::Normal), 0x07FE);
        assert_eq!(cell('\u{7f}', Color::Normal), 0x07FE);
        assert_eq!(cell('é', Color::Normal), 0x07FE);
    }
}
