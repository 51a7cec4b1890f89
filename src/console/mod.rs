//! The kernel console: every line goes to COM1 and, where one exists, the screen.
//!
//! `kprintln!` writes through an interrupt-safe lock; the `log` crate's
//! macros (`log::info!` and friends) go through [`logger`] to the same place.
//! Fatal paths (panic, fault reports, boot failures) write inside [`fatal`],
//! which may break the lock because it never returns: the code that held it
//! will never run again.

pub mod keyboard;
pub mod logger;
pub mod serial;
pub mod vga;

use core::fmt::{self, Write};

use crate::display::{Rgb, TextFramebuffer};
use crate::sync::IrqMutex;
use serial::Serial;
pub use vga::Color;
use vga::VgaText;

/// A screen the console mirrors its output to.
pub enum Screen {
    /// VGA text mode (BIOS boots).
    VgaText(VgaText),
    /// A linear framebuffer with a bitmap font (UEFI boots).
    Framebuffer(TextFramebuffer<'static>),
}

impl Screen {
    fn set_color(&mut self, color: Color) {
        match self {
            Screen::VgaText(vga) => vga.set_color(color),
            Screen::Framebuffer(framebuffer) => {
                let (foreground, background) = match color {
                    Color::Normal => (Rgb(0xC0, 0xC0, 0xC0), Rgb(0, 0, 0)),
                    Color::Warning => (Rgb(0xFF, 0xFF, 0x55), Rgb(0, 0, 0)),
                    Color::Error => (Rgb(0xFF, 0xFF, 0xFF), Rgb(0xAA, 0, 0)),
                    Color::Good => (Rgb(0x55, 0xFF, 0x55), Rgb(0, 0, 0)),
                };
                framebuffer.set_color(foreground, background);
            }
        }
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        match self {
            Screen::VgaText(vga) => vga.write_fmt(args),
            Screen::Framebuffer(framebuffer) => framebuffer.write_fmt(args),
        }
    }
}

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

/// Starts mirroring output to the VGA text screen.
///
/// # Safety
/// The machine must have a VGA text buffer at 0xB8000 (a BIOS boot in text
/// mode), mapped at that address.
pub unsafe fn attach_vga_text() {
    // SAFETY: forwarded from this function's contract.
    CONSOLE.lock().screen = Some(Screen::VgaText(unsafe { VgaText::new() }));
}

/// Starts mirroring output to a framebuffer text console.
pub fn attach_framebuffer(framebuffer: TextFramebuffer<'static>) {
    CONSOLE.lock().screen = Some(Screen::Framebuffer(framebuffer));
}

/// Whether a screen is attached.
pub fn has_screen() -> bool {
    CONSOLE.lock().screen.is_some()
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
            screen.set_color(color);
            let _ = screen.write_fmt(args);
            screen.set_color(Color::Normal);
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
            // interrupts off, on the kernel's one running CPU (the others
            // stay parked), and `fatal` never returns: whatever held the
            // lock was interrupted for good and will not touch it again.
            unsafe { CONSOLE.force_unlock() };
        }
        CONSOLE.lock().write_colored(Color::Error, args);
    }
}

/// Reports through `report` and stops the kernel (halts, or exits QEMU in
/// test mode): the panic handler, fatal CPU exceptions, boot failures.
pub fn fatal(report: impl FnOnce(&Emergency)) -> ! {
    x86_64::instructions::interrupts::disable();
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
