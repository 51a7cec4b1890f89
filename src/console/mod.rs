//! The kernel console: every line goes to COM1 and, where one exists, the screen.
//!
//! `kprintln!` writes through an interrupt-safe lock; the `log` crate's
//! macros (`log::info!` and friends) go through [`logger`] to the same place.
//! Fatal paths (panic, fault reports, boot failures) write inside [`fatal`],
//! which may break the lock because it never returns: the code that held it
//! will never run again.
//!
//! What the screen shows lives in one [`TextGrid`](crate::display::TextGrid)
//! (cursor, wrapping, scrolling, colours); the VGA text screen and the
//! framebuffer console only draw the cells that changed, after each write
//! (see docs/console.md).

pub mod keyboard;
pub mod logger;
mod screen;
pub mod serial;
pub mod vga;

use core::fmt::{self, Write};

pub use crate::display::Color;
use crate::display::TextFramebuffer;
use crate::sync::IrqMutex;
pub use screen::AttachError;
use screen::Screen;
use serial::Serial;

/// The output devices the console writes to.
pub struct Console {
    serial: Option<Serial>,
    screen: Option<Screen>,
}

static CONSOLE: IrqMutex<Console> = IrqMutex::new(Console {
    serial: None,
    screen: None,
});

/// Brings up COM1. Call first thing at boot; safe to call again.
pub fn init_serial() {
    CONSOLE.lock().serial = Serial::com1();
}

/// Starts mirroring output to the VGA text screen, which it clears. Only
/// the first call attaches it (the screen's grid lives in the kernel image
/// and is handed out once); later calls change nothing.
///
/// # Safety
/// The machine must have a VGA text buffer at 0xB8000 (a BIOS boot in text
/// mode), mapped at that address.
pub unsafe fn attach_vga_text() {
    // SAFETY: forwarded from this function's contract.
    if let Some(screen) = unsafe { Screen::vga_text() } {
        CONSOLE.lock().screen = Some(screen);
    }
}

/// Starts mirroring output to a framebuffer text console, which it clears
/// (long lines break at words there). Needs the PMM and the direct map: the
/// text grid takes frames of its own, kept for good like the framebuffer.
pub fn attach_framebuffer(framebuffer: TextFramebuffer<'static>) -> Result<(), AttachError> {
    let screen = Screen::framebuffer(framebuffer)?;
    CONSOLE.lock().screen = Some(screen);
    Ok(())
}

/// Reads one byte from the serial port, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    CONSOLE.lock().serial.as_mut().and_then(Serial::try_read)
}

impl Console {
    fn write_colored(&mut self, color: Color, args: fmt::Arguments<'_>) {
        if let Some(serial) = self.serial.as_mut() {
            let _ = serial.write_fmt(args);
        }
        if let Some(screen) = self.screen.as_mut() {
            screen.write(color, args);
        }
    }
}

/// Writes formatted text in the given colour (colour matters on screens only).
pub fn print_colored(color: Color, args: fmt::Arguments<'_>) {
    CONSOLE.lock().write_colored(color, args);
}

/// Writes formatted text; used by `kprint!`.
pub fn print(args: fmt::Arguments<'_>) {
    print_colored(Color::Normal, args);
}

/// Writes to the serial port alone: the shell's line echo there moves a
/// terminal's cursor with escape sequences a screen would show as text.
pub fn print_serial(args: fmt::Arguments<'_>) {
    if let Some(serial) = CONSOLE.lock().serial.as_mut() {
        let _ = serial.write_fmt(args);
    }
}

/// Writes to the screen alone, in `color`: the shell's line echo there.
pub fn print_screen(color: Color, args: fmt::Arguments<'_>) {
    if let Some(screen) = CONSOLE.lock().screen.as_mut() {
        screen.write(color, args);
    }
}

/// The console on the fatal path: handed out only inside [`fatal`], which
/// never returns, so its writes may break a lock whose holder will never
/// run again.
pub struct Emergency {
    _only_in_fatal: (),
}

impl Emergency {
    /// Writes in the error colour, even if the failed code held the lock.
    pub fn print(&self, args: fmt::Arguments<'_>) {
        if CONSOLE.try_lock().is_none() {
            // SAFETY: an Emergency exists only inside `fatal`, with
            // interrupts off, and `fatal` never returns: whatever held the
            // lock on this CPU was interrupted for good, and `fatal` halted
            // every other CPU first (an NMI: `smp::stop_others`), so none
            // of them can still be inside the lock's critical section
            // writing; a CPU that ignored the NMI for 10 ms is the one gap
            // (docs/smp.md).
            unsafe { CONSOLE.force_unlock() };
        }
        CONSOLE.lock().write_colored(Color::Error, args);
    }
}

/// Reports through `report` and stops the kernel (halts, or exits QEMU in
/// test mode): the panic handler, fatal CPU exceptions, boot failures.
pub fn fatal(report: impl FnOnce(&Emergency)) -> ! {
    x86_64::instructions::interrupts::disable();
    crate::arch::x86_64::smp::stop_others();
    report(&Emergency { _only_in_fatal: () });
    crate::arch::x86_64::cpu::fatal_stop()
}

/// Prints to the console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => ($crate::console::print(format_args!($($arg)*)));
}

/// Prints a line to the console.
#[macro_export]
macro_rules! kprintln {
    () => ($crate::kprint!("\n"));
    ($($arg:tt)*) => ($crate::console::print(format_args!("{}\n", format_args!($($arg)*))));
}
