//! The framebuffer console: draws a [`TextGrid`] into a linear framebuffer,
//! one glyph of a [`Font`] per cell, in a cell size chosen from the
//! screen's size (8x16 `font8x8` glyphs on small screens, anti-aliased Noto
//! Sans Mono on large ones: see [`font`](super::font)).
//!
//! GRUB on UEFI hands the kernel a framebuffer, not VGA text mode; this is
//! what makes the boot report visible on a UEFI PC. Only cells that changed
//! are drawn, so scrolling rewrites the glyphs that moved and never reads
//! the framebuffer back. It works over any `&mut [u8]`, so it is tested on
//! the host.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use super::font::Font;
use super::text_grid::{Cell, Color, TextGrid};

/// A colour with 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// `foreground` over `background` where a glyph covers `coverage` / 255 of
/// a pixel, each 8-bit channel rounded to nearest. The mix is of the
/// channel values as they are (sRGB), which is what the font's coverage
/// was rasterised for; the result is then encoded for the pixel format,
/// so 16-bit pixels blend as exactly as 32-bit ones, to their precision.
pub const fn blend(foreground: Rgb, background: Rgb, coverage: u8) -> Rgb {
    const fn mix(foreground: u8, background: u8, coverage: u8) -> u8 {
        let (foreground, background, coverage) =
            (foreground as u32, background as u32, coverage as u32);
        // At most 255 * 255 + 127, so the quotient fits a byte.
        ((foreground * coverage + background * (255 - coverage) + 127) / 255) as u8
    }
    Rgb(
        mix(foreground.0, background.0, coverage),
        mix(foreground.1, background.1, coverage),
        mix(foreground.2, background.2, coverage),
    )
}

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

/// Every colour, in the order of [`palette_index`].
const COLORS: [Color; 4] = [Color::Normal, Color::Warning, Color::Error, Color::Good];

/// Where a colour's palette is in [`TextFramebuffer`]'s table.
const fn palette_index(color: Color) -> usize {
    match color {
        Color::Normal => 0,
        Color::Warning => 1,
        Color::Error => 2,
        Color::Good => 3,
    }
}

/// One colour's encoded pixel (little-endian bytes, the first
/// `bytes_per_pixel` used) for every coverage value.
type Palette = [[u8; 4]; 256];

/// The first `BYTES` bytes of a palette entry: one pixel.
#[inline(always)]
fn first_bytes<const BYTES: usize>(entry: &[u8; 4]) -> [u8; BYTES] {
    core::array::from_fn(|index| entry[index])
}

/// Draws a [`TextGrid`] into a framebuffer, one glyph per cell.
pub struct TextFramebuffer<'a> {
    pixels: &'a mut [u8],
    width: usize,
    height: usize,
    pitch: usize,
    format: PixelFormat,
    font: Font,
    /// The font's cell size in pixels.
    cell: (usize, usize),
    columns: usize,
    rows: usize,
    /// Each colour's blends, computed once, so a glyph pixel is one lookup
    /// (4 KiB: scrolling redraws thousands of cells, blending each pixel
    /// anew would dominate).
    palettes: [Palette; 4],
    /// Whether the strips right of and below the grid, which no cell
    /// covers, were cleared (on the first draw).
    margins_cleared: bool,
}

impl<'a> TextFramebuffer<'a> {
    /// Wraps a framebuffer of `width` x `height` pixels, `pitch` bytes per
    /// line, with the font [`Font::for_screen`] picks for that size. It is
    /// left as it is until the first [`draw`](Self::draw).
    pub fn new(
        pixels: &'a mut [u8],
        width: usize,
        height: usize,
        pitch: usize,
        format: PixelFormat,
    ) -> Result<Self, FramebufferError> {
        let font = Font::for_screen(width, height);
        Self::with_font(pixels, width, height, pitch, format, font)
    }

    /// [`new`](Self::new) with a font of the caller's choice.
    pub fn with_font(
        pixels: &'a mut [u8],
        width: usize,
        height: usize,
        pitch: usize,
        format: PixelFormat,
        font: Font,
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
        let cell = font.cell_size();
        let (columns, rows) = (width / cell.0, height / cell.1);
        if columns == 0 || rows == 0 {
            return Err(FramebufferError::TooSmall);
        }
        let palettes = COLORS.map(|color| {
            let (foreground, background) = colors(color);
            core::array::from_fn(|coverage| {
                // `coverage` < 256: the palette has 256 entries.
                let mixed = blend(foreground, background, coverage as u8);
                format.encode(mixed).to_le_bytes()
            })
        });
        Ok(Self {
            pixels,
            width,
            height,
            pitch,
            format,
            font,
            cell,
            columns,
            rows,
            palettes,
            margins_cleared: false,
        })
    }

    /// Text columns and rows: the size of the grid to draw.
    pub fn size(&self) -> (usize, usize) {
        (self.columns, self.rows)
    }

    /// The font the cells are drawn in.
    pub fn font(&self) -> Font {
        self.font
    }

    /// Draws the cells of `grid` that changed since it was last drawn (the
    /// whole grid the first time). Cells outside this framebuffer's
    /// [`size`](Self::size) are not shown.
    pub fn draw(&mut self, grid: &mut TextGrid<'_>) {
        if !self.margins_cleared {
            self.clear_margins();
        }
        grid.drain_changes(|column, row, cell| {
            if column < self.columns && row < self.rows {
                self.draw_cell(column, row, cell);
            }
        });
    }

    /// Fills the pixels no cell covers (right of the last column, below the
    /// last row) with the normal background, so that nothing the firmware
    /// or the bootloader left there stays beside the text.
    fn clear_margins(&mut self) {
        let bytes = self.format.bytes_per_pixel;
        let background = self.palettes[palette_index(Color::Normal)][0];
        let (grid_width, grid_height) = (self.columns * self.cell.0, self.rows * self.cell.1);
        for y in 0..self.height {
            let first = if y < grid_height { grid_width } else { 0 };
            let line = y * self.pitch;
            let margin = &mut self.pixels[line + first * bytes..line + self.width * bytes];
            for pixel in margin.chunks_exact_mut(bytes) {
                pixel.copy_from_slice(&background[..bytes]);
            }
        }
        self.margins_cleared = true;
    }

    /// Draws one cell; `column` and `row` are inside [`size`](Self::size),
    /// so every pixel is inside the checked geometry.
    fn draw_cell(&mut self, column: usize, row: usize, cell: Cell) {
        // One copy of the loop per pixel size, so that each pixel is one
        // palette lookup and one fixed-size store straight into the
        // framebuffer: scrolling redraws thousands of cells, and per-pixel
        // length checks or memcpy calls would dominate. (A row built on the
        // stack and copied with `copy_from_slice` was 3 times slower under
        // QEMU TCG, whose `rep movsb` inside memcpy costs per byte.)
        match self.format.bytes_per_pixel {
            2 => self.draw_glyph::<2>(column, row, cell),
            3 => self.draw_glyph::<3>(column, row, cell),
            _ => self.draw_glyph::<4>(column, row, cell),
        }
    }

    /// [`draw_cell`](Self::draw_cell) for `BYTES` bytes per pixel.
    fn draw_glyph<const BYTES: usize>(&mut self, column: usize, row: usize, cell: Cell) {
        let (cell_width, cell_height) = self.cell;
        let (scale_across, scale_down) = self.font.scale;
        let (_, raster_height) = self.font.face.raster_size();
        let palette = &self.palettes[palette_index(cell.color)];
        let glyph = self.font.face.glyph(cell.character);
        let line_bytes = cell_width * BYTES;
        let left = column * line_bytes;
        for raster_y in 0..raster_height {
            let coverage = glyph.row(raster_y);
            let top = row * cell_height + raster_y * scale_down;
            for y in top..top + scale_down {
                let start = y * self.pitch + left;
                let (pixels, _) = self.pixels[start..start + line_bytes].as_chunks_mut::<BYTES>();
                if scale_across == 1 {
                    for (pixel, &coverage) in pixels.iter_mut().zip(coverage) {
                        *pixel = first_bytes(&palette[usize::from(coverage)]);
                    }
                } else {
                    // Each raster pixel fills `scale_across` screen pixels.
                    for (run, &coverage) in pixels.chunks_exact_mut(scale_across).zip(coverage) {
                        run.fill(first_bytes(&palette[usize::from(coverage)]));
                    }
                }
            }
        }
    }
}
