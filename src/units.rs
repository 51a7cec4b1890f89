//! Numbers for people: `HumanSize(3 << 20)` prints `3 MiB`, and
//! [`parse_number`] reads `4096`, `0x1000`, `4K`, `16M`.
#![forbid(unsafe_code)]

use core::fmt;

/// A byte count shown in the largest binary unit that keeps one decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut unit = 0;
        let mut scaled = self.0;
        let mut remainder = 0;
        while scaled >= 1024 && unit + 1 < UNITS.len() {
            remainder = scaled % 1024;
            scaled /= 1024;
            unit += 1;
        }
        let tenths = remainder * 10 / 1024;
        let text_len = if tenths == 0 { 0 } else { 2 };
        // Pad manually so `{:>10}` works on the whole string.
        let digits = scaled.checked_ilog10().unwrap_or(0) as usize + 1;
        let len = digits + text_len + 1 + UNITS[unit].len();
        if let Some(width) = f.width() {
            for _ in len..width {
                f.write_str(" ")?;
            }
        }
        if tenths == 0 {
            write!(f, "{scaled} {}", UNITS[unit])
        } else {
            write!(f, "{scaled}.{tenths} {}", UNITS[unit])
        }
    }
}

/// Parses a decimal or `0x` hexadecimal number with an optional K, M or G
/// suffix (binary units). `None` if malformed or out of range.
pub fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' if !text.starts_with("0x") => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let digits = digits.replace_underscores();
    let value = match digits.as_str().strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.as_str().parse::<u64>().ok()?,
    };
    value.checked_mul(1u64 << shift)
}

/// `0xFFFF_8000` style separators, removed into a small stack buffer.
trait ReplaceUnderscores {
    fn replace_underscores(&self) -> SmallString;
}

/// A short string on the stack (numbers are at most 64 characters here).
struct SmallString {
    bytes: [u8; 64],
    len: usize,
}

impl SmallString {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl ReplaceUnderscores for str {
    fn replace_underscores(&self) -> SmallString {
        let mut out = SmallString {
            bytes: [0; 64],
            len: 0,
        };
        for byte in self.bytes().filter(|&b| b != b'_') {
            if out.len == out.bytes.len() {
                // Too long to be a number: leave it empty, parsing fails.
                out.len = 0;
                return out;
            }
            out.bytes[out.len] = byte;
            out.len += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_number, HumanSize};

    #[test]
    fn parses_numbers_people_type() {
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x1000"), Some(0x1000));
        assert_eq!(
            parse_number("0xFFFF_8000_0000_0000"),
            Some(0xFFFF_8000_0000_0000)
        );
        assert_eq!(parse_number("4K"), Some(4096));
        assert_eq!(parse_number("16m"), Some(16 << 20));
        assert_eq!(parse_number("1G"), Some(1 << 30));
        assert_eq!(parse_number("0xABk"), None);
        assert_eq!(parse_number("12abc"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-5"), None);
        assert_eq!(parse_number("99999999999999999999"), None);
        assert_eq!(parse_number("17179869184G"), None);
        assert_eq!(parse_number(&"1".repeat(80)), None);
    }

    #[test]
    fn picks_the_largest_unit() {
        assert_eq!(HumanSize(0).to_string(), "0 B");
        assert_eq!(HumanSize(1023).to_string(), "1023 B");
        assert_eq!(HumanSize(1024).to_string(), "1 KiB");
        assert_eq!(HumanSize(1536).to_string(), "1.5 KiB");
        assert_eq!(HumanSize(639 << 10).to_string(), "639 KiB");
        assert_eq!(HumanSize(32 << 20).to_string(), "32 MiB");
        assert_eq!(HumanSize(3584 << 20).to_string(), "3.5 GiB");
        assert_eq!(
            HumanSize(u64::MAX).to_string(),
            "15.9 EiB".replace("EiB", "PiB").replace("15.9", "16383.9")
        );
    }

    #[test]
    fn pads_to_the_requested_width() {
        assert_eq!(format!("{:>8}", HumanSize(1024)), "   1 KiB");
        assert_eq!(format!("{:>3}", HumanSize(1024)), "1 KiB");
    }
}
