//! Pure display logic: the text grid both screen consoles show, and how
//! its cells are drawn into a linear framebuffer (in a font chosen for the
//! screen's size) or encoded for VGA text mode.

pub mod font;
pub mod text_framebuffer;
pub mod text_grid;
pub mod vga_text;

pub use font::Font;
pub use text_framebuffer::{PixelFormat, Rgb, TextFramebuffer};
pub use text_grid::{Cell, Color, GridError, Slot, TextGrid, Wrap};
