//! A start line that benchmark threads spin at, and the wall time of
//! their runs as each worker read it (the heap's and the PMM's
//! two-thread runs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// When a worker started (right after the start line) and ended, each
/// read by the worker itself.
pub type Span = (Instant, Instant);

/// A start line the workers spin at, so that each is running on a CPU
/// when they go. (With a sleeping barrier the last to arrive wakes the
/// others, and a woken one may get a CPU only when the scheduler
/// preempts someone, milliseconds later: the runs then overlap less than
/// they seem to.)
pub struct SpinBarrier {
    arrived: AtomicUsize,
    threads: usize,
}

impl SpinBarrier {
    /// A start line for `threads` workers.
    pub fn new(threads: usize) -> Self {
        Self {
            arrived: AtomicUsize::new(0),
            threads,
        }
    }

    /// Waits until all `threads` have arrived.
    pub fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.threads {
            std::hint::spin_loop();
        }
    }
}

/// Wall time of a run: from the first worker's start to the last one's
/// end, each read by the worker itself. (Timing from the main thread
/// after it passed the same start line made runs look faster than they
/// were: woken while the workers held both CPUs, it got one only
/// milliseconds later, so short two-thread runs were timed from well
/// after their start.)
pub fn wall(spans: impl Iterator<Item = Span>) -> Duration {
    let (began, ended) = spans
        .reduce(|(b1, e1), (b2, e2)| (b1.min(b2), e1.max(e2)))
        .expect("at least one worker");
    ended - began
}
