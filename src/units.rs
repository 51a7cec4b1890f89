//! Numbers for people: `HumanSize(3 << 20)` prints `3 MiB`,
//! `ExactSize(3 << 20)` `3 MiB (3145728 B)`, and [`parse_number`] reads
//! `4096`, `0x1000`, `4K`, `16M`.
#![forbid(unsafe_code)]

use core::fmt;

/// A byte count shown in the largest binary unit that keeps the number
/// at or above 1, with at least three significant digits (`1.04 MiB`,
/// `63.9 KiB`, `254.8 MiB`), so that a change of 1 % shows. Digits are cut,
/// never rounded up (1023.99 KiB is `1023.9 KiB`, not `1024 KiB`), and
/// trailing zeros dropped (`1 MiB`, `1.5 KiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut unit = 0;
        while unit + 1 < UNITS.len() && self.0 >> (10 * (unit + 1)) > 0 {
            unit += 1;
        }
        let whole = self.0 >> (10 * unit);
        // The fraction in hundredths (two decimals below 10, else one).
        let remainder = self.0 - (whole << (10 * unit));
        let hundredths = ((u128::from(remainder) * 100) >> (10 * unit)) as u64;
        let mut fraction = if whole < 10 {
            hundredths
        } else {
            hundredths / 10 * 10
        };
        let mut decimals = if fraction == 0 {
            0
        } else if fraction % 10 == 0 {
            fraction /= 10;
            1
        } else {
            2
        };
        if unit == 0 {
            decimals = 0;
        }
        // Pad manually so `{:>10}` works on the whole string.
        let digits = whole.checked_ilog10().unwrap_or(0) as usize + 1;
        let fraction_len = if decimals == 0 { 0 } else { decimals + 1 };
        let len = digits + fraction_len + 1 + UNITS[unit].len();
        if let Some(width) = f.width() {
            for _ in len..width {
                f.write_str(" ")?;
            }
        }
        match decimals {
            0 => write!(f, "{whole} {}", UNITS[unit]),
            1 => write!(f, "{whole}.{fraction} {}", UNITS[unit]),
            _ => write!(f, "{whole}.{fraction:02} {}", UNITS[unit]),
        }
    }
}

/// A byte count as [`HumanSize`] followed by the exact count where the two
/// differ: `1 MiB (1048576 B)`, `480 B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactSize(pub u64);

impl fmt::Display for ExactSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1024 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{} ({} B)", HumanSize(self.0), self.0)
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
    use super::{parse_number, ExactSize, HumanSize};

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
        assert_eq!(HumanSize(u64::MAX).to_string(), "16383.9 PiB");
    }

    #[test]
    fn keeps_three_significant_digits() {
        // 1 MiB and 40 KiB: growth of 4 % shows.
        assert_eq!(HumanSize((1 << 20) + (40 << 10)).to_string(), "1.03 MiB");
        assert_eq!(HumanSize((1 << 20) + 1).to_string(), "1 MiB");
        assert_eq!(HumanSize(6963).to_string(), "6.79 KiB");
        assert_eq!(HumanSize(1100).to_string(), "1.07 KiB");
        assert_eq!(HumanSize(65434).to_string(), "63.9 KiB");
        assert_eq!(HumanSize(1_048_575).to_string(), "1023.9 KiB");
        assert_eq!(HumanSize(267_173_888).to_string(), "254.7 MiB");
        // Trailing zeros go: 1.10 is 1.1, 2.50 is 2.5.
        assert_eq!(HumanSize(1126).to_string(), "1.09 KiB");
        assert_eq!(HumanSize(1127).to_string(), "1.1 KiB");
        assert_eq!(HumanSize(2560).to_string(), "2.5 KiB");
    }

    #[test]
    fn exact_sizes_add_the_bytes_where_rounded() {
        assert_eq!(ExactSize(480).to_string(), "480 B");
        assert_eq!(ExactSize(1 << 20).to_string(), "1 MiB (1048576 B)");
        assert_eq!(ExactSize(1_047_568).to_string(), "1023 KiB (1047568 B)");
    }

    #[test]
    fn pads_to_the_requested_width() {
        assert_eq!(format!("{:>8}", HumanSize(1024)), "   1 KiB");
        assert_eq!(format!("{:>3}", HumanSize(1024)), "1 KiB");
        assert_eq!(format!("{:>10}", HumanSize(1100)), "  1.07 KiB");
    }
}
