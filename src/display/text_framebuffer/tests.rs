//! Host tests of the framebuffer console: glyphs of both kinds of font as
//! their rasters say, blending, every pixel format, the margins and edges,
//! and redrawing only what scrolling changed.

use super::*;
use crate::display::font::{Face, Glyph, FONTS};
use crate::display::text_grid::{Slot, Wrap};
use font8x8::legacy::BASIC_LEGACY;

const GREY: u32 = 0x00C0_C0C0;
/// font8x8 with doubled rows.
const SMALL: Font = FONTS[0];
/// Noto Sans Mono 20 px, 9x20 cells.
const NOTO20: Font = Font::new(Face::Noto20, (1, 1));

fn pixel(buffer: &[u8], pitch: usize, x: usize, y: usize) -> u32 {
    let at = y * pitch + x * 4;
    u32::from_le_bytes(buffer[at..at + 4].try_into().unwrap())
}

/// The pixels of the 8x16 cell at (column, row) in `color` as 16 rows of 8 bits.
fn cell_bits_in(buffer: &[u8], pitch: usize, column: usize, row: usize, color: u32) -> [u8; 16] {
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

/// A grid the size of `console` with `text` written to it (word wrap).
fn grid_with<'s>(
    slots: &'s mut Vec<Slot>,
    console: &TextFramebuffer<'_>,
    text: &str,
) -> TextGrid<'s> {
    let (columns, rows) = console.size();
    slots.resize(columns * rows, Slot::EMPTY);
    let mut grid = TextGrid::new(slots, columns, rows, Wrap::AtColumn).unwrap();
    grid.write_str(text);
    grid
}

/// Writes `text` to a grid the size of a BGRX framebuffer and draws it.
fn render(buffer: &mut [u8], width: usize, height: usize, pitch: usize, text: &str) {
    let mut console =
        TextFramebuffer::new(buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
    let mut slots = Vec::new();
    let mut grid = grid_with(&mut slots, &console, text);
    console.draw(&mut grid);
}

/// What the cell at (left, top) in screen pixels must show: `character`
/// of `font` blended into `color`'s pair, encoded as `format`.
fn expected_pixel(
    font: Font,
    character: char,
    color: Color,
    format: PixelFormat,
    x: usize,
    y: usize,
) -> u32 {
    let glyph: Glyph = font.face.glyph(character);
    let coverage = glyph.coverage(x / font.scale.0, y / font.scale.1);
    let (foreground, background) = colors(color);
    format.encode(blend(foreground, background, coverage))
}

#[test]
fn draws_glyphs_from_the_font() {
    let (width, height, pitch) = (64, 32, 64 * 4 + 16);
    let mut buffer = vec![0xFFu8; pitch * height];
    let console =
        TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
    assert_eq!(console.size(), (8, 2));
    assert_eq!(console.font(), SMALL);
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
fn picks_the_font_for_the_screen_size() {
    for (width, height, font, grid) in [
        (800, 600, SMALL, (100, 37)),
        (1280, 800, NOTO20, (142, 40)),
        (1920, 1080, Font::new(Face::Noto32, (1, 1)), (137, 33)),
    ] {
        let pitch = width * 4;
        let mut buffer = vec![0u8; pitch * height];
        let console =
            TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
        assert_eq!(
            (console.font(), console.size()),
            (font, grid),
            "{width}x{height}"
        );
        assert_eq!(console.font(), Font::for_screen(width, height));
    }
}

#[test]
fn draws_noto_glyphs_blended_into_each_colour() {
    let (width, height) = NOTO20.cell_size();
    let (width, height, pitch) = (4 * width, height, 4 * width * 4);
    let mut buffer = vec![0xEEu8; pitch * height];
    let mut console = TextFramebuffer::with_font(
        &mut buffer,
        width,
        height,
        pitch,
        PixelFormat::BGRX32,
        NOTO20,
    )
    .unwrap();
    let mut slots = Vec::new();
    let mut grid = grid_with(&mut slots, &console, "");
    let colours = [Color::Normal, Color::Warning, Color::Error, Color::Good];
    for (color, character) in colours.into_iter().zip(['g', '@', 'W', '0']) {
        grid.set_color(color);
        grid.write_char(character);
    }
    console.draw(&mut grid);
    let mut partial = 0;
    for (column, (color, character)) in colours.into_iter().zip(['g', '@', 'W', '0']).enumerate() {
        for y in 0..20 {
            for x in 0..9 {
                let shown = pixel(&buffer, pitch, column * 9 + x, y);
                let expected = expected_pixel(NOTO20, character, color, PixelFormat::BGRX32, x, y);
                assert_eq!(shown, expected, "{character:?} at ({x}, {y})");
                let (foreground, background) = colors(color);
                let ends = [foreground, background].map(|c| PixelFormat::BGRX32.encode(c));
                partial += usize::from(!ends.contains(&shown));
            }
        }
    }
    // Anti-aliased: many pixels lie between the two colours.
    assert!(partial > 40, "{partial} blended pixels");
}

#[test]
fn blends_channels_rounded() {
    let (white, red) = (Rgb(0xFF, 0xFF, 0xFF), Rgb(0xAA, 0, 0));
    assert_eq!(blend(white, red, 0), red);
    assert_eq!(blend(white, red, 255), white);
    // Halfway: (255 * 128 + 0 * 127 + 127) / 255 = 128; (0xAA * 127 + 255 * 128 + 127) / 255 = 213.
    assert_eq!(blend(white, red, 128), Rgb(213, 128, 128));
    assert_eq!(
        blend(Rgb(0xC0, 0xC0, 0xC0), Rgb(0, 0, 0), 64),
        Rgb(48, 48, 48)
    );
    // Blended before encoding: 16-bit pixels get the mix, not a mix of
    // their bit fields.
    let rgb565 = PixelFormat {
        bytes_per_pixel: 2,
        channels: [(11, 5), (5, 6), (0, 5)],
    };
    let half = rgb565.encode(blend(white, red, 128));
    assert_eq!(half, (213 >> 3) << 11 | (128 >> 2) << 5 | 128 >> 3);
}

#[test]
fn draws_each_colour() {
    let (width, height, pitch) = (32, 16, 32 * 4);
    let mut buffer = vec![0u8; pitch * height];
    let mut console =
        TextFramebuffer::new(&mut buffer, width, height, pitch, PixelFormat::BGRX32).unwrap();
    let mut slots = vec![Slot::EMPTY; 4];
    let mut grid = TextGrid::new(&mut slots, 4, 1, Wrap::AtColumn).unwrap();
    for color in COLORS {
        grid.set_color(color);
        grid.write_str("#");
    }
    console.draw(&mut grid);
    for (column, color) in COLORS.into_iter().enumerate() {
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
fn scales_a_glyph_up() {
    let font = Font::new(Face::Noto20, (2, 2));
    let (width, height) = font.cell_size();
    assert_eq!((width, height), (18, 40));
    let pitch = width * 4;
    let mut buffer = vec![0u8; pitch * height];
    let mut console =
        TextFramebuffer::with_font(&mut buffer, width, height, pitch, PixelFormat::BGRX32, font)
            .unwrap();
    let mut slots = Vec::new();
    let mut grid = grid_with(&mut slots, &console, "&");
    console.draw(&mut grid);
    for y in 0..height {
        for x in 0..width {
            let expected = expected_pixel(font, '&', Color::Normal, PixelFormat::BGRX32, x, y);
            assert_eq!(pixel(&buffer, pitch, x, y), expected, "({x}, {y})");
        }
    }
}

#[test]
fn clips_at_the_edges_and_clears_the_margins() {
    // Two and a half cells across, one and a half down: two columns, one row.
    let (width, height, pitch) = (9 * 2 + 5, 20 + 7, (9 * 2 + 5) * 4 + 8);
    let mut buffer = vec![0xEEu8; pitch * height];
    let mut console = TextFramebuffer::with_font(
        &mut buffer,
        width,
        height,
        pitch,
        PixelFormat::BGRX32,
        NOTO20,
    )
    .unwrap();
    assert_eq!(console.size(), (2, 1));
    let mut slots = Vec::new();
    let mut grid = grid_with(&mut slots, &console, "MW");
    console.draw(&mut grid);
    for y in 0..height {
        for x in 0..width {
            let expected = if x < 18 && y < 20 {
                expected_pixel(
                    NOTO20,
                    if x < 9 { 'M' } else { 'W' },
                    Color::Normal,
                    PixelFormat::BGRX32,
                    x % 9,
                    y,
                )
            } else {
                // Margins: the normal background.
                0
            };
            assert_eq!(pixel(&buffer, pitch, x, y), expected, "({x}, {y})");
        }
        // The padding past the visible line is never written.
        assert_eq!(buffer[y * pitch + width * 4..(y + 1) * pitch], [0xEE; 8]);
    }
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
    for (font, (cell_width, cell_height)) in [(SMALL, (8, 16)), (NOTO20, (9, 20))] {
        let (width, height) = (4 * cell_width, 3 * cell_height);
        let pitch = width * 4;
        let mut buffer = vec![0u8; pitch * height];
        let mut slots = vec![Slot::EMPTY; 4 * 3];
        let mut grid = TextGrid::new(&mut slots, 4, 3, Wrap::AtColumn).unwrap();
        grid.write_str("ab\nab\ncd");
        TextFramebuffer::with_font(&mut buffer, width, height, pitch, PixelFormat::BGRX32, font)
            .unwrap()
            .draw(&mut grid);
        // Mark two cells that keep their content when the grid scrolls:
        // "a" of row 0 (row 1 holds "a" too) and the blank last cell of row 1.
        let mark = 0x00AB_CDEFu32.to_le_bytes();
        for (column, row) in [(0, 0), (3, 1)] {
            let at = row * cell_height * pitch + column * cell_width * 4;
            buffer[at..at + 4].copy_from_slice(&mark);
        }
        grid.write_str("\n");
        TextFramebuffer::with_font(&mut buffer, width, height, pitch, PixelFormat::BGRX32, font)
            .unwrap()
            .draw(&mut grid);
        // The changed cells show the scrolled text; the others were not redrawn.
        for (column, row, character) in [(1, 0, 'b'), (0, 1, 'c'), (1, 1, 'd'), (0, 2, ' ')] {
            for y in 0..cell_height {
                for x in 0..cell_width {
                    let (screen_x, screen_y) = (column * cell_width + x, row * cell_height + y);
                    let expected =
                        expected_pixel(font, character, Color::Normal, PixelFormat::BGRX32, x, y);
                    assert_eq!(pixel(&buffer, pitch, screen_x, screen_y), expected);
                }
            }
        }
        assert_eq!(pixel(&buffer, pitch, 0, 0), 0x00AB_CDEF);
        assert_eq!(
            pixel(&buffer, pitch, 3 * cell_width, cell_height),
            0x00AB_CDEF
        );
    }
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
        let mut console = TextFramebuffer::new(&mut buffer, width, height, pitch, format).unwrap();
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
fn blends_noto_glyphs_in_two_and_three_byte_pixels() {
    for (bytes_per_pixel, channels) in [
        (2, [(11, 5), (5, 6), (0, 5)]),
        (3, [(0, 8), (8, 8), (16, 8)]),
    ] {
        let format = PixelFormat {
            bytes_per_pixel,
            channels,
        };
        let (width, height) = NOTO20.cell_size();
        let pitch = width * bytes_per_pixel + 2;
        let mut buffer = vec![0xEEu8; pitch * height];
        let mut console =
            TextFramebuffer::with_font(&mut buffer, width, height, pitch, format, NOTO20).unwrap();
        let mut slots = Vec::new();
        let mut grid = grid_with(&mut slots, &console, "");
        grid.set_color(Color::Error);
        grid.write_str("a");
        console.draw(&mut grid);
        for y in 0..height {
            for x in 0..width {
                let at = y * pitch + x * bytes_per_pixel;
                let expected =
                    expected_pixel(NOTO20, 'a', Color::Error, format, x, y).to_le_bytes();
                assert_eq!(
                    buffer[at..at + bytes_per_pixel],
                    expected[..bytes_per_pixel],
                    "{bytes_per_pixel} bytes, x {x} y {y}"
                );
            }
            assert_eq!(
                buffer[y * pitch + width * bytes_per_pixel..(y + 1) * pitch],
                [0xEE; 2]
            );
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
    // Room for an 8x16 cell but not for the font asked for.
    let mut buffer = vec![0u8; 8 * 16 * 4];
    assert_eq!(
        TextFramebuffer::with_font(&mut buffer, 8, 16, 32, PixelFormat::BGRX32, NOTO20).err(),
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
