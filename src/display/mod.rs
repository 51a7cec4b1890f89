//! Pure display logic: text rendering into a linear framebuffer.

pub mod text_framebuffer;

pub use text_framebuffer::{PixelFormat, Rgb, TextFramebuffer};
