//! The shell's input loop: keys from the serial port and the PS/2
//! keyboard into the line editor, its state echoed on the serial terminal
//! (VT100) and on the screen, each line run once Enter is pressed.

use core::fmt;

use super::commands;
use super::echo::{ScreenEcho, Style, TerminalEcho};
use super::editor::{LineEditor, Outcome};
use super::line::LINE_MAX;
use crate::arch::x86_64::nmi;
use crate::boot::BootInfo;
use crate::console::{self, keyboard::Keyboard, Color};
use crate::input::{Key, SerialDecoder};
use crate::{kprint, kprintln};

/// What the shell prints before each command.
const PROMPT: &str = "incroos> ";

/// Both input devices, each with its decoder.
struct Input {
    serial: SerialDecoder,
    keyboard: Keyboard,
}

impl Input {
    /// The next key from either device, if one is complete.
    fn poll(&mut self) -> Option<Key> {
        match console::try_read_byte() {
            Some(byte) => self.serial.feed(byte),
            None => self.keyboard.poll(),
        }
    }
}

/// The serial port as a `fmt::Write` for the terminal echo.
struct SerialOut;

impl fmt::Write for SerialOut {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        console::print_serial(format_args!("{text}"));
        Ok(())
    }
}

/// Draws the screen echo's pieces; the cursor cell in the console's
/// white-on-red (the screens have no cursor of their own; at the end of
/// the line it is a blank cell in those colours).
fn draw_on_screen(text: &str, style: Style) {
    let color = match style {
        Style::Plain => Color::Normal,
        Style::Cursor => Color::Error,
    };
    console::print_screen(color, format_args!("{text}"));
}

/// The line's echo on both outputs.
struct Echo {
    terminal: TerminalEcho,
    screen: ScreenEcho,
}

impl Echo {
    /// Shows the editor's line and cursor.
    fn show(&mut self, editor: &LineEditor) {
        let _ = self
            .terminal
            .show(editor.line(), editor.cursor(), &mut SerialOut);
        self.screen
            .show(editor.line(), editor.cursor(), &mut draw_on_screen);
    }

    /// Leaves the line followed by `note` and goes to a new line.
    fn finish(&mut self, note: &str) {
        let _ = self.terminal.finish(note, &mut SerialOut);
        self.screen.finish(note, &mut draw_on_screen);
    }
}

/// Runs the shell forever (until `shutdown` or `reboot`).
pub fn run(info: &BootInfo<'_>) -> ! {
    kprintln!("IncroOS memory debug shell. Type 'help' for commands.");
    let mut input = Input {
        serial: SerialDecoder::new(),
        keyboard: Keyboard::new(),
    };
    let mut editor = LineEditor::new();
    let mut echo = Echo {
        terminal: TerminalEcho::new(),
        screen: ScreenEcho::new(),
    };
    loop {
        kprint!("{PROMPT}");
        // The cursor after the prompt on the screen (the terminal has its own).
        echo.show(&editor);
        let line = loop {
            let Some(key) = input.poll() else {
                nmi::report_pending(|report| {
                    // The report on its own lines, then the prompt and the
                    // line as it was.
                    echo.finish("");
                    kprint!("{report}\n{PROMPT}");
                    echo.show(&editor);
                });
                core::hint::spin_loop();
                continue;
            };
            match editor.handle(key) {
                Outcome::Editing => echo.show(&editor),
                Outcome::Submitted(line) => {
                    echo.finish("");
                    break Some(line);
                }
                Outcome::TooLong { typed } => {
                    echo.finish("");
                    kprintln!(
                        "line too long: {typed} characters, at most {LINE_MAX}; nothing was run"
                    );
                    break None;
                }
                Outcome::Cancelled => {
                    echo.finish("^C");
                    break None;
                }
            }
        };
        if let Some(line) = line {
            commands::execute(line.as_str(), info);
        }
    }
}
