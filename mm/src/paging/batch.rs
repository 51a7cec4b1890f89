//! A TLB flush batch: the pages whose translations changed in one
//! operation, collected so that every CPU can be told at once (one IPI
//! round per batch), or "everything" past a threshold.
#![forbid(unsafe_code)]

use arrayvec::ArrayVec;
use x86_64::VirtAddr;

use super::Tlb;

/// Pages a batch lists before it turns into a full flush (Asterinas and
/// Linux use thresholds of the same order: 32-33 pages).
pub const BATCH_PAGES: usize = 32;

/// What to invalidate: some pages, or all translations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlbBatch {
    pages: ArrayVec<VirtAddr, BATCH_PAGES>,
    all: bool,
}

impl TlbBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            pages: ArrayVec::new_const(),
            all: false,
        }
    }

    /// Whether nothing is to be invalidated.
    pub fn is_empty(&self) -> bool {
        !self.all && self.pages.is_empty()
    }

    /// Whether the batch became a full flush.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// The pages listed (empty for a full flush).
    pub fn pages(&self) -> &[VirtAddr] {
        if self.all {
            &[]
        } else {
            &self.pages
        }
    }

    /// Applies the batch to `tlb`.
    pub fn apply(&self, tlb: &mut impl Tlb) {
        if self.all {
            tlb.flush_all();
        } else {
            for &page in &self.pages {
                tlb.flush_page(page);
            }
        }
    }
}

/// A batch collects what a mapper's flush tokens would invalidate.
impl Tlb for TlbBatch {
    fn flush_page(&mut self, virt: VirtAddr) {
        if self.all || self.pages.contains(&virt) {
            return;
        }
        if self.pages.try_push(virt).is_err() {
            self.all = true;
            self.pages.clear();
        }
    }

    fn flush_all(&mut self) {
        self.all = true;
        self.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        pages: std::vec::Vec<u64>,
        all: usize,
    }

    impl Tlb for Recorder {
        fn flush_page(&mut self, virt: VirtAddr) {
            self.pages.push(virt.as_u64());
        }
        fn flush_all(&mut self) {
            self.all += 1;
        }
    }

    #[test]
    fn pages_are_collected_once_and_applied() {
        let mut batch = TlbBatch::new();
        assert!(batch.is_empty());
        for page in [0x1000u64, 0x2000, 0x1000] {
            batch.flush_page(VirtAddr::new(page));
        }
        assert_eq!(batch.pages().len(), 2);
        let mut tlb = Recorder::default();
        batch.apply(&mut tlb);
        assert_eq!((tlb.pages, tlb.all), (vec![0x1000, 0x2000], 0));
    }

    #[test]
    fn past_the_threshold_a_batch_flushes_everything() {
        let mut batch = TlbBatch::new();
        for page in 0..BATCH_PAGES as u64 {
            batch.flush_page(VirtAddr::new(page << 12));
        }
        assert!(!batch.is_all());
        batch.flush_page(VirtAddr::new(0x7777_0000));
        assert!(batch.is_all() && batch.pages().is_empty());
        batch.flush_page(VirtAddr::new(0x1000));
        let mut tlb = Recorder::default();
        batch.apply(&mut tlb);
        assert_eq!((tlb.pages.len(), tlb.all), (0, 1));
        let mut all = TlbBatch::new();
        all.flush_all();
        assert!(all.is_all() && !all.is_empty());
    }
}
