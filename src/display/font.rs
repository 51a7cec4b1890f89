//! The framebuffer console's fonts: which character cell a screen of a
//! given size gets, and each glyph as coverage values (0 = background,
//! 255 = foreground).
//!
//! Small screens keep the 8x8 `font8x8` glyphs with doubled rows (8x16
//! cells, as on VGA text mode). Larger ones get Noto Sans Mono in the
//! regular weight, rasterised at 20, 24 and 32 pixels by the
//! `noto-sans-mono-bitmap` crate with one coverage byte per pixel, so its
//! edges are anti-aliased; those three cuts drawn at twice their size
//! serve screens wider than about 2 200 pixels. The kernel embeds only
//! these cuts and only printable ASCII (about 83 KiB, see `Cargo.toml`).
//!
//! [`Font::for_screen`] picks the largest cell that still leaves
//! [`MIN_COLUMNS`] columns and [`MIN_ROWS`] rows. Each cell in [`FONTS`]
//! is at most 29% wider than the one before, so every screen from 1 125 to
//! about 4 500 pixels wide gets between 125 and 160 columns: long log lines
//! stay on one row and the text is a readable size on the monitors that
//! have such widths. Below that 8x16 cells give 80 (640 pixels) to 140
//! columns.
#![forbid(unsafe_code)]

use core::fmt;

use font8x8::legacy::BASIC_LEGACY;
use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

/// Fewest columns a cell larger than 8x16 must leave on the screen.
pub const MIN_COLUMNS: usize = 125;
/// Most columns the next smaller cell may give when [`MIN_COLUMNS`] rules
/// out the larger one: the top of the range the cut-off aims for.
pub const MAX_COLUMNS: usize = 160;
/// Fewest rows a cell larger than 8x16 must leave: as many as VGA text mode.
pub const MIN_ROWS: usize = 25;

/// A set of glyphs at one raster size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// `font8x8`: 8x8 pixels, each lit or not.
    Font8x8,
    /// Noto Sans Mono regular, 9x20 pixels.
    Noto20,
    /// Noto Sans Mono regular, 11x24 pixels.
    Noto24,
    /// Noto Sans Mono regular, 14x32 pixels.
    Noto32,
}

impl Face {
    /// The crate's name for a Noto cut; `None` for `font8x8`.
    const fn noto_height(self) -> Option<RasterHeight> {
        match self {
            Face::Font8x8 => None,
            Face::Noto20 => Some(RasterHeight::Size20),
            Face::Noto24 => Some(RasterHeight::Size24),
            Face::Noto32 => Some(RasterHeight::Size32),
        }
    }

    /// Width and height of a glyph's raster in pixels.
    pub const fn raster_size(self) -> (usize, usize) {
        match self.noto_height() {
            None => (8, 8),
            Some(height) => (get_raster_width(FontWeight::Regular, height), height.val()),
        }
    }

    /// The glyph of `character`: printable ASCII from the face, anything
    /// else a question mark.
    pub fn glyph(self, character: char) -> Glyph {
        let character = match character {
            ' '..='~' => character,
            _ => '?',
        };
        let raster = self
            .noto_height()
            .and_then(|height| get_raster(character, FontWeight::Regular, height));
        match raster {
            Some(raster) => Glyph {
                pixels: raster.pixels(),
                width: raster.width(),
            },
            // font8x8 (the crate's Noto is built with all of printable ASCII).
            None => Glyph {
                pixels: &FONT8X8_COVERAGE[character as usize - usize::from(b' ')],
                width: 8,
            },
        }
    }
}

/// font8x8's printable ASCII as coverage bytes (0 or 255), 8 rows of 8,
/// so that both faces are drawn by one loop (6 KiB).
static FONT8X8_COVERAGE: [[u8; 64]; 95] = {
    let mut glyphs = [[0u8; 64]; 95];
    let mut index = 0;
    while index < glyphs.len() {
        let rows = BASIC_LEGACY[index + b' ' as usize];
        let mut pixel = 0;
        while pixel < 64 {
            // Bit 0 of a row is its leftmost pixel.
            if rows[pixel / 8] & (1 << (pixel % 8)) != 0 {
                glyphs[index][pixel] = 255;
            }
            pixel += 1;
        }
        index += 1;
    }
    glyphs
};

/// One glyph's raster: a coverage byte per pixel, row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Glyph {
    /// The bytes, `width` to a row.
    pub pixels: &'static [u8],
    /// Pixels per row.
    pub width: usize,
}

impl Glyph {
    /// Coverage of the raster pixel at (x, y), 0 (background) to 255
    /// (foreground); 0 outside the raster.
    pub fn coverage(&self, x: usize, y: usize) -> u8 {
        if x < self.width {
            self.pixels.get(y * self.width + x).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The coverage of raster row `y`, one value per pixel from the left
    /// (empty below the raster).
    pub fn row(&self, y: usize) -> &'static [u8] {
        let start = (y * self.width).min(self.pixels.len());
        &self.pixels[start..(start + self.width).min(self.pixels.len())]
    }
}

/// A face drawn at a whole-number scale: what fills one character cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Font {
    /// The glyphs.
    pub face: Face,
    /// Screen pixels per raster pixel, across and down.
    pub scale: (usize, usize),
}

/// Every cell the console can use, narrowest first.
pub const FONTS: [Font; 7] = [
    Font::new(Face::Font8x8, (1, 2)),
    Font::new(Face::Noto20, (1, 1)),
    Font::new(Face::Noto24, (1, 1)),
    Font::new(Face::Noto32, (1, 1)),
    Font::new(Face::Noto20, (2, 2)),
    Font::new(Face::Noto24, (2, 2)),
    Font::new(Face::Noto32, (2, 2)),
];

/// The widest cell: the size of a line of one cell's pixels.
pub const MAX_CELL_WIDTH: usize = {
    let mut widest = 0;
    let mut index = 0;
    while index < FONTS.len() {
        let (width, _) = FONTS[index].cell_size();
        if width > widest {
            widest = width;
        }
        index += 1;
    }
    widest
};

// The cut-off's promise: where a cell leaves fewer than MIN_COLUMNS, the
// next narrower one gives at most MAX_COLUMNS.
const _: () = {
    let mut index = 1;
    while index < FONTS.len() {
        let (narrower, _) = FONTS[index - 1].cell_size();
        let (wider, _) = FONTS[index].cell_size();
        assert!(narrower < wider);
        // The widest screen on which `wider` leaves MIN_COLUMNS - 1 columns.
        let widest_screen = MIN_COLUMNS * wider - 1;
        assert!(widest_screen / narrower <= MAX_COLUMNS);
        index += 1;
    }
};

impl Font {
    /// `face` with each raster pixel drawn as `scale` = (across, down)
    /// screen pixels.
    pub const fn new(face: Face, scale: (usize, usize)) -> Self {
        Self { face, scale }
    }

    /// The font for a screen of `width` x `height` pixels: the largest cell
    /// that leaves at least [`MIN_COLUMNS`] columns and [`MIN_ROWS`] rows,
    /// or 8x16 if none does.
    pub fn for_screen(width: usize, height: usize) -> Self {
        FONTS
            .iter()
            .rev()
            .find(|font| {
                let (cell_width, cell_height) = font.cell_size();
                width / cell_width >= MIN_COLUMNS && height / cell_height >= MIN_ROWS
            })
            .copied()
            .unwrap_or(FONTS[0])
    }

    /// Width and height of a character cell in screen pixels.
    pub const fn cell_size(&self) -> (usize, usize) {
        let (width, height) = self.face.raster_size();
        (width * self.scale.0, height * self.scale.1)
    }
}

impl fmt::Display for Font {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (width, height) = self.cell_size();
        match self.face {
            Face::Font8x8 => write!(f, "font8x8, rows doubled")?,
            face => write!(f, "Noto Sans Mono {} px", face.raster_size().1)?,
        }
        if self.scale.0 == self.scale.1 && self.scale.0 > 1 {
            write!(f, " x{}", self.scale.0)?;
        }
        write!(f, " ({width}x{height} cells)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell_for(width: usize, height: usize) -> (usize, usize) {
        Font::for_screen(width, height).cell_size()
    }

    #[test]
    fn cells_of_the_table() {
        let cells = FONTS.map(|font| font.cell_size());
        assert_eq!(
            cells,
            [
                (8, 16),
                (9, 20),
                (11, 24),
                (14, 32),
                (18, 40),
                (22, 48),
                (28, 64)
            ]
        );
        assert_eq!(MAX_CELL_WIDTH, 28);
    }

    #[test]
    fn small_screens_keep_8x16() {
        for (width, height) in [(640, 480), (800, 600), (1024, 768), (1120, 900)] {
            assert_eq!(cell_for(width, height), (8, 16), "{width}x{height}");
        }
        // Too short for 25 rows of a larger cell.
        assert_eq!(cell_for(1920, 480), (8, 16));
        // Smaller than one cell: still a font (the framebuffer then refuses).
        assert_eq!(cell_for(4, 4), (8, 16));
    }

    #[test]
    fn large_screens_get_larger_cells() {
        for (width, height, cell, grid) in [
            (1152, 864, (9, 20), (128, 43)),
            (1280, 800, (9, 20), (142, 40)),
            (1280, 1024, (9, 20), (142, 51)),
            (1366, 768, (9, 20), (151, 38)),
            (1440, 900, (11, 24), (130, 37)),
            (1600, 1200, (11, 24), (145, 50)),
            (1680, 1050, (11, 24), (152, 43)),
            (1920, 1080, (14, 32), (137, 33)),
            (2560, 1440, (18, 40), (142, 36)),
            (3440, 1440, (22, 48), (156, 30)),
            (3840, 2160, (28, 64), (137, 33)),
        ] {
            let (cell_width, cell_height) = cell_for(width, height);
            assert_eq!((cell_width, cell_height), cell, "{width}x{height}");
            assert_eq!(
                (width / cell_width, height / cell_height),
                grid,
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn columns_stay_in_range_on_every_large_width() {
        for width in 1125..4480 {
            let (cell_width, _) = cell_for(width, 4000);
            let columns = width / cell_width;
            assert!(
                (MIN_COLUMNS..=MAX_COLUMNS).contains(&columns),
                "{width}: {columns}"
            );
        }
    }

    #[test]
    fn glyphs_come_from_the_fonts() {
        for character in ' '..='~' {
            let glyph = Face::Font8x8.glyph(character);
            for (y, bits) in BASIC_LEGACY[character as usize].iter().enumerate() {
                for x in 0..8 {
                    let lit = bits & (1 << x) != 0;
                    assert_eq!(glyph.coverage(x, y), if lit { 255 } else { 0 });
                }
            }
        }
        for face in [Face::Noto20, Face::Noto24, Face::Noto32] {
            let (width, height) = face.raster_size();
            let raster = get_raster('A', FontWeight::Regular, face.noto_height().unwrap()).unwrap();
            let glyph = face.glyph('A');
            for y in 0..height {
                for x in 0..width {
                    assert_eq!(glyph.coverage(x, y), raster.pixel(x, y).unwrap());
                }
            }
            assert_eq!(glyph.row(3), &raster.pixels()[3 * width..4 * width]);
            // Anti-aliased: partial coverage at the edges.
            assert!(raster
                .pixels()
                .iter()
                .any(|coverage| (1..255).contains(coverage)));
        }
        for face in [Face::Font8x8, Face::Noto20, Face::Noto24, Face::Noto32] {
            let (width, height) = face.raster_size();
            let glyph = face.glyph('#');
            assert_eq!(glyph.width, width);
            assert_eq!(glyph.pixels.len(), width * height);
            // Outside the raster: background, no row.
            assert_eq!(glyph.coverage(width, 0), 0);
            assert_eq!(glyph.coverage(0, height), 0);
            assert_eq!(glyph.row(height), &[] as &[u8]);
            // What the face lacks is a question mark.
            assert_eq!(face.glyph('\u{e9}'), face.glyph('?'));
            assert_eq!(face.glyph('\u{2588}'), face.glyph('?'));
        }
    }

    #[test]
    fn names_each_font() {
        assert_eq!(FONTS[0].to_string(), "font8x8, rows doubled (8x16 cells)");
        assert_eq!(FONTS[1].to_string(), "Noto Sans Mono 20 px (9x20 cells)");
        assert_eq!(
            FONTS[6].to_string(),
            "Noto Sans Mono 32 px x2 (28x64 cells)"
        );
    }
}
