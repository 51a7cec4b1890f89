//! TLB flush tokens: every page-table change returns one, and dropping it
//! unused is a compiler warning (`#[must_use]`); dropping it on purpose
//! (`ignore`) is `unsafe`, since a stale translation lets a CPU reach a
//! frame that has been handed to someone else.

use arrayvec::ArrayVec;
use x86_64::VirtAddr;

/// How the caller flushes the TLB (the kernel: `invlpg` / a full flush;
/// tests: a recorder).
pub trait Tlb {
    /// Invalidates the translation of the page containing `virt`.
    fn flush_page(&mut self, virt: VirtAddr);
    /// Invalidates all translations.
    fn flush_all(&mut self);
}

/// A single page whose translation changed.
#[must_use = "the TLB may still hold the old translation: call flush()"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    virt: VirtAddr,
}

impl Flush {
    pub(crate) fn new(virt: VirtAddr) -> Self {
        Self { virt }
    }

    /// The page's address.
    pub fn address(&self) -> VirtAddr {
        self.virt
    }

    /// Invalidates the page's translation.
    pub fn flush(self, tlb: &mut impl Tlb) {
        tlb.flush_page(self.virt);
    }

    /// Drops the token without flushing.
    ///
    /// # Safety
    /// No TLB may hold a translation of the page: the tree is loaded on no
    /// CPU (a host test, an address space never activated), or the entry
    /// was empty before and no CPU could have cached it.
    pub unsafe fn ignore(self) {}
}

/// Above this many pages a range flush flushes everything instead of
/// one `invlpg` per page.
pub const FULL_FLUSH_PAGES: usize = 32;

/// The pages of a range operation whose translations changed: up to
/// [`FULL_FLUSH_PAGES`] addresses (one per page, whatever its size), or
/// "everything" beyond that.
#[must_use = "the TLB may still hold old translations: call flush()"]
#[derive(Debug, PartialEq, Eq)]
pub struct FlushRange {
    pages: ArrayVec<VirtAddr, FULL_FLUSH_PAGES>,
    everything: bool,
}

impl FlushRange {
    pub(crate) fn new() -> Self {
        Self {
            pages: ArrayVec::new_const(),
            everything: false,
        }
    }

    /// Takes over a page's token: its flush becomes part of this one.
    pub(crate) fn fold(&mut self, page: Flush) {
        if self.pages.try_push(page.virt).is_err() {
            self.everything = true;
        }
    }

    /// Drops the token on a range operation's error path, whose contract
    /// tells the caller to flush the whole range itself.
    pub(crate) fn forget_for_error(self) {}

    /// Invalidates the pages: one by one, or all at once when many.
    pub fn flush(self, tlb: &mut impl Tlb) {
        if self.everything {
            tlb.flush_all();
            return;
        }
        for &virt in &self.pages {
            tlb.flush_page(virt);
        }
    }

    /// Drops the token without flushing.
    ///
    /// # Safety
    /// As for [`Flush::ignore`], for every page of the range.
    pub unsafe fn ignore(self) {}
}
