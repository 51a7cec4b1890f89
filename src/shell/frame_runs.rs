//! What `frames N` got, as runs of physically contiguous frames:
//! `0x200000-0x210000 (16 frames, 64 KiB)`, a line a run.
#![forbid(unsafe_code)]

use core::fmt;

use arrayvec::ArrayVec;

use crate::units::HumanSize;
use mm::layout::PAGE_SIZE;
use mm::pmm::PhysRange;

/// Runs of physically contiguous frames, in the order the frames came:
/// the first [`FrameRuns::SHOWN`] kept for printing, the others counted.
#[derive(Clone, Debug, Default)]
pub struct FrameRuns {
    shown: ArrayVec<PhysRange, { FrameRuns::SHOWN }>,
    current: Option<PhysRange>,
    more: usize,
}

impl FrameRuns {
    /// Runs printed in full; the others are summed up in one line.
    pub const SHOWN: usize = 16;

    /// No frame yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the frame at `address`: it extends the current run if it
    /// starts where that run ends or ends where it starts (a frame cache
    /// hands out the newest frame first, so runs also come downwards),
    /// else it starts a new one.
    pub fn add(&mut self, address: u64) {
        let frame = PhysRange::from_len(address, PAGE_SIZE);
        match &mut self.current {
            Some(run) if run.end == frame.start => run.end = frame.end,
            Some(run) if frame.end == run.start => run.start = frame.start,
            _ => {
                self.finish_current();
                self.current = Some(frame);
            }
        }
    }

    /// How many runs there are.
    pub fn count(&self) -> usize {
        self.shown.len() + self.more + usize::from(self.current.is_some())
    }

    fn finish_current(&mut self) {
        if let Some(run) = self.current.take() {
            if self.shown.try_push(run).is_err() {
                self.more += 1;
            }
        }
    }
}

impl fmt::Display for FrameRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut runs = self.clone();
        runs.finish_current();
        for run in &runs.shown {
            writeln!(
                f,
                "  {:#x}-{:#x} ({} frame{}, {})",
                run.start,
                run.end,
                run.len() / PAGE_SIZE,
                if run.len() == PAGE_SIZE { "" } else { "s" },
                HumanSize(run.len())
            )?;
        }
        if runs.more > 0 {
            writeln!(f, "  ... and {} more runs", runs.more)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FrameRuns;

    #[test]
    fn contiguous_frames_make_one_run() {
        let mut runs = FrameRuns::new();
        for frame in 0..16 {
            runs.add(0x20_0000 + frame * 0x1000);
        }
        assert_eq!(runs.count(), 1);
        assert_eq!(
            runs.to_string(),
            "  0x200000-0x210000 (16 frames, 64 KiB)\n"
        );
    }

    #[test]
    fn a_gap_starts_a_run_and_runs_grow_both_ways() {
        let mut runs = FrameRuns::new();
        for address in [
            0x30_0000, 0x30_1000, 0x30_5000, 0x30_4000, 0x30_3000, 0x30_7000,
        ] {
            runs.add(address);
        }
        assert_eq!(runs.count(), 3);
        assert_eq!(
            runs.to_string(),
            concat!(
                "  0x300000-0x302000 (2 frames, 8 KiB)\n",
                "  0x303000-0x306000 (3 frames, 12 KiB)\n",
                "  0x307000-0x308000 (1 frame, 4 KiB)\n",
            )
        );
    }

    #[test]
    fn runs_past_the_shown_ones_are_counted() {
        let mut runs = FrameRuns::new();
        for run in 0..20u64 {
            runs.add(0x100_0000 + run * 0x2000);
        }
        assert_eq!(runs.count(), 20);
        let text = runs.to_string();
        assert_eq!(text.lines().count(), FrameRuns::SHOWN + 1);
        assert!(text.ends_with("  ... and 4 more runs\n"), "{text}");
    }

    #[test]
    fn no_frame_no_run() {
        assert_eq!(FrameRuns::new().count(), 0);
        assert_eq!(FrameRuns::new().to_string(), "");
    }
}
