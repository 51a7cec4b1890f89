//! TLB flush tokens: every page-table change returns one, and dropping it
//! unused is a compiler warning (`#[must_use]`).
#![forbid(unsafe_code)]

/// How the caller flushes the TLB (the kernel: `invlpg` / CR3 reload;
/// tests: a recorder).
pub trait Tlb {
    /// Invalidates the translation of the page containing `virt`.
    fn flush_page(&mut self, virt: u64);
    /// Invalidates all (non-global) translations.
    fn flush_all(&mut self);
}

/// A single page whose translation changed.
#[must_use = "the TLB may still hold the old translation: call flush()"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    virt: u64,
}

impl Flush {
    pub(crate) fn new(virt: u64) -> Self {
        Self { virt }
    }

    /// The page's address.
    pub fn address(&self) -> u64 {
        self.virt
    }

    /// Invalidates the page's translation.
    pub fn flush(self, tlb: &mut impl Tlb) {
        tlb.flush_page(self.virt);
    }

    /// Drops the token without flushing: only correct when the page cannot
    /// be in any TLB (an address space not loaded anywhere, or host tests).
    pub fn ignore(self) {}
}

/// Above this many pages a range flush reloads CR3 instead of `invlpg`s.
pub const FULL_FLUSH_PAGES: usize = 32;

/// The pages of a range operation whose translations changed: up to
/// [`FULL_FLUSH_PAGES`] addresses (one per page, whatever its size), or
/// "everything" beyond that.
#[must_use = "the TLB may still hold old translations: call flush()"]
#[derive(Debug, PartialEq, Eq)]
pub struct FlushRange {
    pages: [u64; FULL_FLUSH_PAGES],
    count: usize,
    everything: bool,
}

impl FlushRange {
    pub(crate) fn new() -> Self {
        Self {
            pages: [0; FULL_FLUSH_PAGES],
            count: 0,
            everything: false,
        }
    }

    /// Adds the page starting at `virt`.
    pub(crate) fn push(&mut self, virt: u64) {
        if self.count == FULL_FLUSH_PAGES {
            self.everything = true;
        } else {
            self.pages[self.count] = virt;
            self.count += 1;
        }
    }

    /// Invalidates the pages: one by one, or all at once when many.
    pub fn flush(self, tlb: &mut impl Tlb) {
        if self.everything {
            tlb.flush_all();
            return;
        }
        for &virt in &self.pages[..self.count] {
            tlb.flush_page(virt);
        }
    }

    /// Drops the token without flushing (see [`Flush::ignore`]).
    pub fn ignore(self) {}
}
