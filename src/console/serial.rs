//! COM1 serial output (and input, for the debug shell) through `uart_16550`.

use core::fmt;

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// The legacy I/O port base of COM1.
const COM1_PORT: u16 = 0x3F8;

/// An initialised COM1 port that writes terminal newlines (`\r\n`).
pub struct Serial {
    uart: Uart16550<PioBackend>,
}

impl Serial {
    /// Initialises COM1 at 115200 8N1. Returns `None` when no UART answers
    /// (common on modern PCs without a serial header).
    pub fn com1() -> Option<Self> {
        // SAFETY: 0x3F8..0x3FF are the COM1 registers on every PC-compatible
        // machine, and the console owns this port exclusively.
        let mut uart = unsafe { Uart16550::new_port(COM1_PORT) }.ok()?;
        uart.init(Config::default()).ok()?;
        Some(Self { uart })
    }

    /// Reads one byte if one is waiting.
    pub fn try_read(&mut self) -> Option<u8> {
        self.uart.try_receive_byte().ok()
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for line in text.split_inclusive('\n') {
            match line.strip_suffix('\n') {
                Some(body) => {
                    self.uart.send_bytes_exact(body.as_bytes());
                    self.uart.send_bytes_exact(b"\r\n");
                }
                None => self.uart.send_bytes_exact(line.as_bytes()),
            }
        }
        Ok(())
    }
}
