//! The memory debug shell, on the serial port and (where there is one) the
//! PS/2 keyboard and screen. One line, one command; bad input gets a usage
//! line, never a crash.

mod commands;

use crate::arch::x86_64::nmi;
use crate::boot::BootInfo;
use crate::console::{self, keyboard::Keyboard};
use crate::{kprint, kprintln};

/// Longest command line.
const LINE_MAX: usize = 128;
/// What the shell prints before each command.
const PROMPT: &str = "incroos> ";

/// A line longer than [`LINE_MAX`]: refused whole, since running its
/// first part could do something else than what was typed.
struct LineTooLong {
    typed: usize,
}

/// Reads a line into `line`, echoing what fits; returns its length.
fn read_line(line: &mut [u8; LINE_MAX], keyboard: &mut Keyboard) -> Result<usize, LineTooLong> {
    let mut len = 0;
    // Printable characters typed past the buffer (not stored, not echoed).
    let mut dropped = 0;
    loop {
        let Some(byte) = console::try_read_byte().or_else(|| keyboard.poll()) else {
            nmi::report_pending(|report| {
                // The report, then the prompt and what was typed so far.
                let typed = core::str::from_utf8(&line[..len]).unwrap_or("");
                kprint!("\n{report}\n{PROMPT}{typed}");
            });
            core::hint::spin_loop();
            continue;
        };
        match byte {
            b'\r' | b'\n' => {
                kprintln!();
                if dropped > 0 {
                    return Err(LineTooLong {
                        typed: len + dropped,
                    });
                }
                return Ok(len);
            }
            0x08 | 0x7F if dropped > 0 => dropped -= 1,
            0x08 | 0x7F if len > 0 => {
                len -= 1;
                kprint!("\u{8} \u{8}");
            }
            0x20..0x7F if len < LINE_MAX => {
                line[len] = byte;
                len += 1;
                kprint!("{}", byte as char);
            }
            0x20..0x7F => dropped += 1,
            _ => {}
        }
    }
}

/// Runs the shell forever (until `shutdown` or `reboot`).
pub fn run(info: &BootInfo<'_>) -> ! {
    kprintln!("IncroOS memory debug shell. Type 'help' for commands.");
    let mut keyboard = Keyboard::new();
    let mut line = [0u8; LINE_MAX];
    loop {
        kprint!("{PROMPT}");
        let len = match read_line(&mut line, &mut keyboard) {
            Ok(len) => len,
            Err(LineTooLong { typed }) => {
                kprintln!("line too long: {typed} characters, at most {LINE_MAX}; nothing was run");
                continue;
            }
        };
        // Only printable ASCII is stored, so this cannot fail.
        let text = core::str::from_utf8(&line[..len]).unwrap_or("");
        commands::execute(text, info);
    }
}
