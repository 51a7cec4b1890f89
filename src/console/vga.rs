//! The VGA text screen at 0xB8000 (80x25 cells), used on BIOS boots that
//! GRUB leaves in text mode: writes a [`TextGrid`]'s changed cells into the
//! text buffer.

use core::ptr;

use crate::display::{vga_text, Slot, TextGrid};

/// Physical (and identity-mapped) address of the VGA text buffer.
const VGA_TEXT: usize = 0xB8000;
/// Text columns of the screen.
pub const COLUMNS: usize = 80;
/// Text rows of the screen.
pub const ROWS: usize = 25;

/// The storage of the screen's grid, in the kernel image (zeros, so in
/// `.bss`): the screen comes up before any memory manager. Handed out once
/// by [`storage`], which leaks the guard.
static SLOTS: spin::Mutex<[Slot; COLUMNS * ROWS]> = spin::Mutex::new([Slot::EMPTY; COLUMNS * ROWS]);

/// The grid storage for the screen, the first time it is asked for; `None`
/// afterwards (it is in use for the rest of the kernel's life). Never spins.
pub fn storage() -> Option<&'static mut [Slot]> {
    SLOTS
        .try_lock()
        .map(|guard| spin::MutexGuard::leak(guard).as_mut_slice())
}

/// Draws a grid into the VGA text buffer.
pub struct VgaText {
    _mapped: (),
}

impl VgaText {
    /// Takes over the text screen; it changes on the first [`draw`](Self::draw).
    ///
    /// # Safety
    /// The VGA text buffer must be mapped at `VGA_TEXT` (identity-mapped low
    /// memory on a BIOS boot), and nothing else may write to it.
    pub unsafe fn new() -> Self {
        Self { _mapped: () }
    }

    /// Writes the cells of `grid` that changed since it was last drawn (the
    /// whole grid the first time). Cells outside 80x25 are not shown.
    pub fn draw(&mut self, grid: &mut TextGrid<'_>) {
        grid.drain_changes(|column, row, cell| {
            if column < COLUMNS && row < ROWS {
                let at = (VGA_TEXT as *mut u16).wrapping_add(row * COLUMNS + column);
                // SAFETY: row < ROWS and column < COLUMNS keep the entry
                // inside the 4000-byte text buffer, which `new`'s contract
                // says is mapped and ours alone.
                unsafe { ptr::write_volatile(at, vga_text::entry(cell)) };
            }
        });
    }
}
