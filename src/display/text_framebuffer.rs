//! A scrolling text console drawn into a linear framebuffer with the
//! embedded 8x8 `font8x8` glyphs, each row doubled into an 8x16 cell.
//!
//! GRUB on UEFI hands the kernel a framebuffer, not VGA text mode; this is
//! what makes the boot report visible on a UEFI PC. It works over any
//! `&mut [u8]`, so it is tested on the host.
#![forbid(unsafe_code)]

use core::fmt;

use font8x8::legacy::BASIC_LEGACY;

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

/// A text console over a framebuffer.
pub struct TextFramebuffer<'a> {
    pixels: &'a mut [u8],
    pitch: usize,
    format: PixelFormat,
    columns: usize,
    rows: usize,
    column: usize,
    row: usize,
    foreground: u32,
    background: u32,
}

impl<'a> TextFramebuffer<'a> {
    /// Wraps a framebuffer of `width` x `height` pixels, `pitch` bytes per
    /// line, and clears it to black.
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
        let mut console = Self {
            pixels,
            pitch,
            format,
            columns,
            rows,
            column: 0,
            row: 0,
            foreground: format.encode(Rgb(0xC0, 0xC0, 0xC0)),
            background: format.encode(Rgb(0, 0, 0)),
        };
        console.clear_rows(0, rows);
        Ok(console)
    }

    /// Text columns and rows.
    pub fn size(&self) -> (usize, usize) {
        (self.columns, self.rows)
    }

    /// Sets the text colour for what follows.
    pub fn set_color(&mut self, foreground: Rgb, background: Rgb) {
        self.foreground = self.format.encode(foreground);
        self.background = self.format.encode(background);
    }

    fn put_pixel(&mut self, x: usize, y: usize, value: u32) {
        let bytes = self.format.bytes_per_pixel;
        let offset = y * self.pitch + x * bytes;
        let encoded = value.to_le_bytes();
        self.pixels[offset..offset + bytes].copy_from_slice(&encoded[..bytes]);
    }

    fn clear_rows(&mut self, first: usize, count: usize) {
        let background = self.background;
        let width = self.columns * CELL_WIDTH;
        for y in first * CELL_HEIGHT..(first + count) * CELL_HEIGHT {
            for x in 0..width {
                self.put_pixel(x, y, background);
            }
        }
    }

    fn draw_glyph(&mut self, byte: u8) {
        let glyph = BASIC_LEGACY
            .get(usize::from(byte))
            .copied()
            .unwrap_or(BASIC_LEGACY[usize::from(b'?')]);
        let (x0, y0) = (self.column * CELL_WIDTH, self.row * CELL_HEIGHT);
        for (font_row, bits) in glyph.iter().enumerate() {
            for x in 0..CELL_WIDTH {
                // Bit 0 is the leftmost pixel in font8x8.
                let value = if bits & (1 << x) != 0 {
                    self.foreground
                } else {
                    self.background
                };
                self.put_pixel(x0 + x, y0 + 2 * font_row, value);
                self.put_pixel(x0 + x, y0 + 2 * font_row + 1, value);
            }
        }
    }

    fn new_line(&mut self) {
        self.column = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
            return;
        }
        // Scroll: move every text row up by one cell height.
        let cell_bytes = CELL_HEIGHT * self.pitch;
        let used = self.rows * cell_bytes;
        self.pixels.copy_within(cell_bytes..used, 0);
        self.clear_rows(self.rows - 1, 1);
    }

    /// Writes one byte: printable ASCII, `\n`, `\r`; anything else as `?`.
    pub fn write_byte(&mut self, byte: u8) {
        match byte {
            b'\n' => self.new_line(),
            b'\r' => self.column = 0,
            0x08 => {
                if self.column > 0 {
                    self.column -= 1;
                    self.draw_glyph(b' ');
                }
            }
            byte => {
                if self.column >= self.columns {
                    self.new_line();
                }
                let shown = if (0x20..0x7F).contains(&byte) {
                    byte
                } else {
                    b'?'
                };
                self.draw_glyph(shown);
                self.column += 1;
            }
        }
    }
}

impl fmt::Write for TextFramebuffer<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(|byte| self.write_byte(byte));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    const WHITE: u32 = 0x00C0_C0C0;

    fn pixel(buffer: &[u8], pitch: usize, x: usize, y: usize) -> u32 {
        let at = y * pitch + x * 4;
        u32::from_le_bytes(buffer[at..at + 4].try_into().unwrap())
    }

    /// The pixels of the cell at (column, row) as 16 rows of 8 bits.
    fn cell_bits(buffer: &[u8], pitch: usize, column: usize, row: usize) -> [u8; 16] {
        let mut rows = [0u8; 16];
        for (y, bits) in rows.iter_mut().enumerate() {
            for x in 0..8 {
                if pixel(buffer, pitch, column * 8 + x, row * 16 + y) == WHITE {
                    *bits |= 1 << x;
                }
            }
        }
        rows
    }

    fn doubled(glyph: [u8; 8]) -> [u8; 16] {
        let mut rows = [0u8; 16];
        for (index, bits) in glyph.iter().enumerate() {
            rows[2 * index] = *bits;
            rows[2 * index + 1] = *bits;
        }
        rows
    }

    #[test]
    fn draws_glyphs_from_the_font() {
        let (width, height, pitch) = (64, 32, 64 * 4 + 16);
        let mut buffer = vec![0xFFu8; pitch * height];
        let mut console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        assert_eq!(console.size(), (8, 2));
        write!(console, "Hi").unwrap();
        assert_eq!(
            cell_bits(&buffer, pitch, 0, 0),
            doubled(BASIC_LEGACY[b'H' as usize])
        );
        assert_eq!(
            cell_bits(&buffer, pitch, 1, 0),
            doubled(BASIC_LEGACY[b'i' as usize])
        );
        assert_eq!(cell_bits(&buffer, pitch, 2, 0), [0; 16]);
        // Padding bytes past the visible line are never touched.
        assert_eq!(buffer[64 * 4], 0xFF);
    }

    #[test]
    fn wraps_and_scrolls() {
        let (width, height, pitch) = (16, 32, 16 * 4);
        let mut buffer = vec![0u8; pitch * height];
        let mut console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        // Two columns, two rows: "ab" fills row 0, "cd" row 1, "e" scrolls.
        write!(console, "abcde").unwrap();
        assert_eq!(
            cell_bits(&buffer, pitch, 0, 0),
            doubled(BASIC_LEGACY[b'c' as usize])
        );
        assert_eq!(
            cell_bits(&buffer, pitch, 1, 0),
            doubled(BASIC_LEGACY[b'd' as usize])
        );
        assert_eq!(
            cell_bits(&buffer, pitch, 0, 1),
            doubled(BASIC_LEGACY[b'e' as usize])
        );
        assert_eq!(cell_bits(&buffer, pitch, 1, 1), [0; 16]);
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
