//! The screen the console mirrors its output to: one text grid, and the
//! device (VGA text mode or a framebuffer) that draws its changed cells
//! after each write.

use core::fmt::{self, Write};
use core::slice;

use super::vga::{self, VgaText};
use crate::display::{Color, GridError, Slot, TextFramebuffer, TextGrid, Wrap};
use crate::kernel_mm::{phys_to_virt, pmm};
use mm::layout::PAGE_SIZE;
use mm::MmError;

/// The device that shows a screen's grid.
#[allow(
    clippy::large_enum_variant,
    reason = "the one screen is built once and lives in the console's static; \
              the framebuffer's 4 KiB of blended colours make each glyph pixel a lookup"
)]
enum Output {
    /// VGA text mode (BIOS boots in text mode).
    VgaText(VgaText),
    /// A linear framebuffer with a font sized for it (UEFI boots, or
    /// GRUB's graphics mode).
    Framebuffer(TextFramebuffer<'static>),
}

/// A text grid and the device that shows it.
pub(super) struct Screen {
    grid: TextGrid<'static>,
    output: Output,
}

/// Why a framebuffer console could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// No frames for the text grid.
    Memory(MmError),
    /// The framebuffer's text size makes no grid.
    Grid(GridError),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Memory(error) => write!(f, "no memory for its text grid: {error}"),
            AttachError::Grid(error) => write!(f, "no text grid: {error:?}"),
        }
    }
}

impl Screen {
    /// The VGA text screen, cleared, breaking lines at the last column.
    /// `None` if its grid was handed out before (it lives in the kernel
    /// image, once).
    ///
    /// # Safety
    /// As for [`VgaText::new`]: the VGA text buffer is mapped at 0xB8000
    /// and nothing else writes to it.
    pub(super) unsafe fn vga_text() -> Option<Self> {
        let grid = TextGrid::new(vga::storage()?, vga::COLUMNS, vga::ROWS, Wrap::AtColumn).ok()?;
        // SAFETY: forwarded from this function's contract.
        let vga = unsafe { VgaText::new() };
        Some(Self::new(grid, Output::VgaText(vga)))
    }

    /// A framebuffer console, cleared, breaking long lines at words.
    pub(super) fn framebuffer(framebuffer: TextFramebuffer<'static>) -> Result<Self, AttachError> {
        let (columns, rows) = framebuffer.size();
        let slots = grid_storage(columns.saturating_mul(rows))?;
        // Cannot fail: a framebuffer console has at least one cell, and the
        // storage is exactly its size.
        let grid = TextGrid::new(slots, columns, rows, Wrap::AtWord).map_err(AttachError::Grid)?;
        Ok(Self::new(grid, Output::Framebuffer(framebuffer)))
    }

    /// Shows `grid` on `output`, drawn (which clears the screen) at once.
    fn new(grid: TextGrid<'static>, output: Output) -> Self {
        let mut screen = Self { grid, output };
        screen.draw();
        screen
    }

    /// Writes `args` in `color`, then draws what changed.
    pub(super) fn write(&mut self, color: Color, args: fmt::Arguments<'_>) {
        self.grid.set_color(color);
        let _ = self.grid.write_fmt(args);
        self.grid.set_color(Color::Normal);
        self.draw();
    }

    fn draw(&mut self) {
        match &mut self.output {
            Output::VgaText(vga) => vga.draw(&mut self.grid),
            Output::Framebuffer(framebuffer) => framebuffer.draw(&mut self.grid),
        }
    }
}

/// Storage for a grid of `cells` cells in frames of its own, kept for the
/// rest of the kernel's life like the framebuffer. Not on the heap: the heap
/// stays empty at boot, as the boot report shows and the memory tests assume.
fn grid_storage(cells: usize) -> Result<&'static mut [Slot], AttachError> {
    let bytes = cells
        .checked_mul(size_of::<Slot>())
        .ok_or(AttachError::Memory(MmError::InvalidArgument))?;
    let frames = bytes.div_ceil(PAGE_SIZE as usize);
    let run = pmm::alloc_contiguous(frames, 1).map_err(AttachError::Memory)?;
    let first = phys_to_virt(run.start_address()).as_mut_ptr::<Slot>();
    for index in 0..cells {
        // SAFETY: the run of `frames` frames at `first` was just allocated
        // for this grid alone and is RAM in the direct map; index < cells
        // keeps the write inside it.
        unsafe { first.add(index).write(Slot::EMPTY) };
    }
    // SAFETY: 1. the run is this grid's alone and never freed, so the slice
    // may live forever; 2. it is mapped RAM, page-aligned (a slot needs 4);
    // 3. all `cells` slots were initialised just above.
    Ok(unsafe { slice::from_raw_parts_mut(first, cells) })
}
