//! The framebuffer console: draws a [`TextGrid`] into a linear framebuffer
//! with the embedded 8x8 `font8x8` glyphs, each row doubled into an 8x16 cell.
//!
//! GRUB on UEFI hands the kernel a framebuffer, not VGA text mode; this is
//! what makes the boot report visible on a UEFI PC. Only cells that changed
//! are drawn, so scrolling rewrites the glyphs that moved and never reads
//! the framebuffer back. It works over any `&mut [u8]`, so it is tested on
//! the host.
#![forbid(unsafe_code)]

use font8x8::legacy::BASIC_LEGACY;

use super::text_grid::{Cell, Color, TextGrid};

/// Width of a character cell in pixels.
pub const CELL_WIDTH: usize = 8;
/// Height of a character cell in pixels (each font row drawn twice).
pub const CELL_HEIGHT: usize = 16;

/// A colour with 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// How a pixel is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bytes per pixel: 2, 3 or 4.
    pub bytes_per_pixel: usize,
    /// (position, size) in bits of the red, green and blue channels.
    pub channels: [(u8, u8); 3],
}

impl PixelFormat {
    /// The common 32-bit BGRX layout of UEFI GOP framebuffers.
    pub const BGRX32: PixelFormat = PixelFormat {
        bytes_per_pixel: 4,
        channels: [(16, 8), (8, 8), (0, 8)],
    };

    /// Encodes a colour as this format's pixel value.
    pub fn encode(&self, color: Rgb) -> u32 {
        let mut value = 0u32;
        for (&(position, size), level) in self.channels.iter().zip([color.0, color.1, color.2]) {
            let size = size.min(8);
            let bits = u32::from(level) >> (8 - size);
            value |= bits.checked_shl(u32::from(position)).unwrap_or(0);
        }
        value
    }
}

/// Why a framebuffer cannot be used for text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramebufferError {
    /// Bytes per pixel other than 2, 3 or 4.
    UnsupportedDepth,
    /// The pitch is smaller than a line of pixels, or the buffer smaller
    /// than pitch * height.
    BadGeometry,
    /// Smaller than one character cell.
    TooSmall,
}

/// The colours the framebuffer console draws each kind of text in.
pub const fn colors(color: Color) -> (Rgb, Rgb) {
    match color {
        Color::Normal => (Rgb(0xC0, 0xC0, 0xC0), Rgb(0, 0, 0)),
        Color::Warning => (Rgb(0xFF, 0xFF, 0x55), Rgb(0, 0, 0)),
        Color::Error => (Rgb(0xFF, 0xFF, 0xFF), Rgb(0xAA, 0, 0)),
        Color::Good => (Rgb(0x55, 0xFF, 0x55), Rgb(0, 0, 0)),
    }
}

/// The glyph of a character: printable ASCII from the font, anything else `?`.
fn glyph(character: char) -> [u8; 8] {
    let index = match character {
        ' '..='~' => character as usize,
        _ => usize::from(b'?'),
    };
    BASIC_LEGACY[index]
}

/// Draws a [`TextGrid`] into a framebuffer, one glyph per cell.
pub struct TextFramebuffer<'a> {
    pixels: &'a mut [u8],
    pitch: usize,
    format: PixelFormat,
    columns: usize,
    rows: usize,
}

impl<'a> TextFramebuffer<'a> {
    /// Wraps a framebuffer of `width` x `height` pixels, `pitch` bytes per
    /// line. It is left as it is until the first [`draw`](Self::draw).
    pub fn new(
        pixels: &'a mut [u8],
        width: usize,
        height: usize,
        pitch: usize,
        format: PixelFormat,
    ) -> Result<Self, FramebufferError> {
        if !(2..=4).contains(&format.bytes_per_pixel) {
            return Err(FramebufferError::UnsupportedDepth);
        }
        let line_bytes = width.checked_mul(format.bytes_per_pixel);
        let total = pitch.checked_mul(height);
        match (line_bytes, total) {
            (Some(line), Some(total)) if line <= pitch && total <= pixels.len() => {}
            _ => return Err(FramebufferError::BadGeometry),
        }
        let (columns, rows) = (width / CELL_WIDTH, height / CELL_HEIGHT);
        if columns == 0 || rows == 0 {
            return Err(FramebufferError::TooSmall);
        }
        Ok(Self {
            pixels,
            pitch,
            format,
            columns,
            rows,
        })
    }

    /// Text columns and rows: the size of the grid to draw.
    pub fn size(&self) -> (usize, usize) {
        (self.columns, self.rows)
    }

    /// Draws the cells of `grid` that changed since it was last drawn (the
    /// whole grid the first time). Cells outside this framebuffer's
    /// [`size`](Self::size) are not shown.
    pub fn draw(&mut self, grid: &mut TextGrid<'_>) {
        grid.drain_changes(|column, row, cell| {
            if column < self.columns && row < self.rows {
                self.draw_cell(column, row, cell);
            }
        });
    }

    /// Draws one cell; `column` and `row` are inside [`size`](Self::size),
    /// so every pixel is inside the checked geometry.
    fn draw_cell(&mut self, column: usize, row: usize, cell: Cell) {
        // One copy of the loop per pixel size, so that a glyph row is built
        // and stored with fixed-size copies: scrolling redraws thousands of
        // cells, and per-pixel length checks and memcpy calls would dominate.
        match self.format.bytes_per_pixel {
            2 => self.draw_glyph::<2, { 2 * CELL_WIDTH }>(column, row, cell),
            3 => self.draw_glyph::<3, { 3 * CELL_WIDTH }>(column, row, cell),
            _ => self.draw_glyph::<4, { 4 * CELL_WIDTH }>(column, row, cell),
        }
    }

    /// [`draw_cell`](Self::draw_cell) for `BYTES` bytes per pixel and
    /// `LINE` (= `BYTES` * [`CELL_WIDTH`]) bytes per glyph row.
    fn draw_glyph<const BYTES: usize, const LINE: usize>(
        &mut self,
        column: usize,
        row: usize,
        cell: Cell,
    ) {
        const { assert!(LINE == BYTES * CELL_WIDTH) };
        let pixel = |color: Rgb| -> [u8; BYTES] {
            let bytes = self.format.encode(color).to_le_bytes();
            core::array::from_fn(|index| bytes[index])
        };
        let (foreground, background) = colors(cell.color);
        let (foreground, background) = (pixel(foreground), pixel(background));
        let left = column * LINE;
        let mut line = [0u8; LINE];
        for (font_row, bits) in glyph(cell.character).iter().enumerate() {
            let (pixels, _) = line.as_chunks_mut::<BYTES>();
            for (x, pixel) in pixels.iter_mut().enumerate() {
                // Bit 0 is the leftmost pixel in font8x8.
                *pixel = if bits & (1 << x) != 0 {
                    foreground
                } else {
                    background
                };
            }
            // Each font row is drawn twice: 8x8 glyphs in 8x16 cells.
            let top = row * CELL_HEIGHT + 2 * font_row;
            for y in top..top + 2 {
                let start = y * self.pitch + left;
                let (target, _) = self.pixels[start..start + LINE].as_chunks_mut::<LINE>();
                target.fill(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::text_grid::{Slot, Wrap};

    const GREY: u32 = 0x00C0_C0C0;

    fn pixel(buffer: &[u8], pitch: usize, x: usize, y: usize) -> u32 {
        let at = y * pitch + x * 4;
        u32::from_le_bytes(buffer[at..at + 4].try_into().unwrap())
    }

    /// The pixels of the cell at (column, row) in `color` as 16 rows of 8 bits.
    fn cell_bits_in(
        buffer: &[u8],
        pitch: usize,
        column: usize,
        row: usize,
        color: u32,
    ) -> [u8; 16] {
        let mut rows = [0u8; 16];
        for (y, bits) in rows.iter_mut().enumerate() {
            for x in 0..8 {
                if pixel(buffer, pitch, column * 8 + x, row * 16 + y) == color {
                    *bits |= 1 << x;
                }
            }
        }
        rows
    }

    fn cell_bits(buffer: &[u8], pitch: usize, column: usize, row: usize) -> [u8; 16] {
        cell_bits_in(buffer, pitch, column, row, GREY)
    }

    fn doubled(glyph: [u8; 8]) -> [u8; 16] {
        let mut rows = [0u8; 16];
        for (index, bits) in glyph.iter().enumerate() {
            rows[2 * index] = *bits;
            rows[2 * index + 1] = *bits;
        }
        rows
    }

    fn glyph_of(character: u8) -> [u8; 16] {
        doubled(BASIC_LEGACY[usize::from(character)])
    }

    /// Writes `text` to a grid the size of a BGRX framebuffer and draws it.
    fn render(buffer: &mut [u8], width: usize, height: usize, pitch: usize, text: &str) {
        let mut console =
            TextFramebuffer::new(buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        let (columns, rows) = console.size();
        let mut slots = vec![Slot::EMPTY; columns * rows];
        let mut grid = TextGrid::new(&mut slots, columns, rows, Wrap::AtColumn).unwrap();
        grid.write_str(text);
        console.draw(&mut grid);
    }

    #[test]
    fn draws_glyphs_from_the_font() {
        let (width, height, pitch) = (64, 32, 64 * 4 + 16);
        let mut buffer = vec![0xFFu8; pitch * height];
        let console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        assert_eq!(console.size(), (8, 2));
        render(&mut buffer, width, height, pitch, "Hi\u{e9}");
        assert_eq!(cell_bits(&buffer, pitch, 0, 0), glyph_of(b'H'));
        assert_eq!(cell_bits(&buffer, pitch, 1, 0), glyph_of(b'i'));
        // What the font lacks is drawn as a question mark.
        assert_eq!(cell_bits(&buffer, pitch, 2, 0), glyph_of(b'?'));
        // The first draw paints every cell: blank ones black.
        assert_eq!(cell_bits(&buffer, pitch, 3, 0), [0; 16]);
        assert_eq!(pixel(&buffer, pitch, 63, 31), 0);
        // Padding bytes past the visible line are never touched.
        assert_eq!(buffer[64 * 4], 0xFF);
    }

    #[test]
    fn draws_each_colour() {
        let (width, height, pitch) = (32, 16, 32 * 4);
        let mut buffer = vec![0u8; pitch * height];
        let mut console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        let mut slots = vec![Slot::EMPTY; 4];
        let mut grid = TextGrid::new(&mut slots, 4, 1, Wrap::AtColumn).unwrap();
        for color in [Color::Normal, Color::Warning, Color::Error, Color::Good] {
            grid.set_color(color);
            grid.write_str("#");
        }
        console.draw(&mut grid);
        for (column, color) in [Color::Normal, Color::Warning, Color::Error, Color::Good]
            .into_iter()
            .enumerate()
        {
            let (foreground, background) = colors(color);
            let (foreground, background) = (
                PixelFormat::BGRX32.encode(foreground),
                PixelFormat::BGRX32.encode(background),
            );
            assert_eq!(
                cell_bits_in(&buffer, pitch, column, 0, foreground),
                glyph_of(b'#')
            );
            assert_eq!(
                cell_bits_in(&buffer, pitch, column, 0, background),
                glyph_of(b'#').map(|bits| !bits)
            );
        }
        // Keep the colours the console always had.
        assert_eq!(
            colors(Color::Error),
            (Rgb(0xFF, 0xFF, 0xFF), Rgb(0xAA, 0, 0))
        );
    }

    #[test]
    fn wraps_and_scrolls() {
        let (width, height, pitch) = (16, 32, 16 * 4);
        let mut buffer = vec![0u8; pitch * height];
        // Two columns, two rows: "ab" fills row 0, "cd" row 1, "e" scrolls.
        render(&mut buffer, width, height, pitch, "abcde");
        assert_eq!(cell_bits(&buffer, pitch, 0, 0), glyph_of(b'c'));
        assert_eq!(cell_bits(&buffer, pitch, 1, 0), glyph_of(b'd'));
        assert_eq!(cell_bits(&buffer, pitch, 0, 1), glyph_of(b'e'));
        assert_eq!(cell_bits(&buffer, pitch, 1, 1), [0; 16]);
    }

    #[test]
    fn scrolling_redraws_the_changed_cells_only() {
        let (width, height, pitch) = (32, 48, 32 * 4);
        let mut buffer = vec![0u8; pitch * height];
        let mut slots = vec![Slot::EMPTY; 4 * 3];
        let mut grid = TextGrid::new(&mut slots, 4, 3, Wrap::AtColumn).unwrap();
        grid.write_str("ab\nab\ncd");
        TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32)
            .unwrap()
            .draw(&mut grid);
        // Mark two cells that keep their content when the grid scrolls:
        // "a" of row 0 (row 1 holds "a" too) and the blank last cell of row 1.
        let mark = 0x00AB_CDEFu32.to_le_bytes();
        for (column, row) in [(0, 0), (3, 1)] {
            let at = row * 16 * pitch + column * 8 * 4;
            buffer[at..at + 4].copy_from_slice(&mark);
        }
        grid.write_str("\n");
        TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32)
            .unwrap()
            .draw(&mut grid);
        // The changed cells show the scrolled text; the others were not redrawn.
        assert_eq!(cell_bits(&buffer, pitch, 1, 0), glyph_of(b'b'));
        assert_eq!(cell_bits(&buffer, pitch, 0, 1), glyph_of(b'c'));
        assert_eq!(cell_bits(&buffer, pitch, 1, 1), glyph_of(b'd'));
        assert_eq!(cell_bits(&buffer, pitch, 0, 2), [0; 16]);
        assert_eq!(pixel(&buffer, pitch, 0, 0), 0x00AB_CDEF);
        assert_eq!(pixel(&buffer, pitch, 24, 16), 0x00AB_CDEF);
    }

    #[test]
    fn draws_two_and_three_byte_pixels() {
        for (bytes_per_pixel, channels) in [
            (2, [(11, 5), (5, 6), (0, 5)]),
            (3, [(16, 8), (8, 8), (0, 8)]),
        ] {
            let format = PixelFormat {
                bytes_per_pixel,
                channels,
            };
            let (width, height, pitch) = (16, 16, 16 * bytes_per_pixel + 4);
            let mut buffer = vec![0xEEu8; pitch * height];
            let mut console =
                TextFramebuffer::new(&mut buffer, width, height, pitch, format).unwrap();
            let mut slots = vec![Slot::EMPTY; 2];
            let mut grid = TextGrid::new(&mut slots, 2, 1, Wrap::AtColumn).unwrap();
            grid.write_str("-");
            console.draw(&mut grid);
            let grey = format.encode(colors(Color::Normal).0).to_le_bytes();
            let glyph = glyph_of(b'-');
            for (y, bits) in glyph.iter().enumerate() {
                for x in 0..16 {
                    let at = y * pitch + x * bytes_per_pixel;
                    let lit = x < 8 && bits & (1 << x) != 0;
                    let expected = if lit {
                        &grey[..bytes_per_pixel]
                    } else {
                        &[0; 4][..bytes_per_pixel]
                    };
                    assert_eq!(
                        &buffer[at..at + bytes_per_pixel],
                        expected,
                        "{bytes_per_pixel} bytes, x {x} y {y}"
                    );
                }
                assert_eq!(buffer[y * pitch + 16 * bytes_per_pixel], 0xEE);
            }
        }
    }

    #[test]
    fn ignores_cells_outside_the_framebuffer() {
        let (width, height, pitch) = (8, 16, 8 * 4);
        let mut buffer = vec![0u8; pitch * height];
        let mut console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        let mut slots = vec![Slot::EMPTY; 3 * 2];
        let mut grid = TextGrid::new(&mut slots, 3, 2, Wrap::AtColumn).unwrap();
        grid.write_str("abc\ndef");
        console.draw(&mut grid);
        assert_eq!(cell_bits(&buffer, pitch, 0, 0), glyph_of(b'a'));
    }

    #[test]
    fn encodes_pixel_formats() {
        assert_eq!(
            PixelFormat::BGRX32.encode(Rgb(0x12, 0x34, 0x56)),
            0x0012_3456
        );
        let rgb565 = PixelFormat {
            bytes_per_pixel: 2,
            channels: [(11, 5), (5, 6), (0, 5)],
        };
        assert_eq!(rgb565.encode(Rgb(0xFF, 0xFF, 0xFF)), 0xFFFF);
        assert_eq!(rgb565.encode(Rgb(0xFF, 0, 0)), 0xF800);
    }

    #[test]
    fn rejects_bad_geometry() {
        let mut buffer = vec![0u8; 100];
        assert_eq!(
            TextFramebuffer::new(&mut buffer, 64, 32, 256, PixelFormat::BGRX32).err(),
            Some(FramebufferError::BadGeometry)
        );
        let mut buffer = vec![0u8; 4 * 4 * 4];
        assert_eq!(
            TextFramebuffer::new(&mut buffer, 4, 4, 16, PixelFormat::BGRX32).err(),
            Some(FramebufferError::TooSmall)
        );
        let odd = PixelFormat {
            bytes_per_pixel: 1,
            channels: [(0, 3), (3, 3), (6, 2)],
        };
        assert_eq!(
            TextFramebuffer::new(&mut buffer, 4, 4, 16, odd).err(),
            Some(FramebufferError::UnsupportedDepth)
        );
    }
}
