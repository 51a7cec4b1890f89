//! The TLB shootdown protocol between CPUs, as a plain type over atomics,
//! so that the kernel and a host test with threads run the same code.
//!
//! One shootdown is in flight at a time. The initiator takes the board
//! ([`Board::try_begin`]), publishes its batch ([`Board::publish`]: a new
//! generation), asks each target ([`Board::request`]; the kernel then
//! sends an IPI), and waits until every target [`Board::done`] that
//! generation, serving requests aimed at itself meanwhile. A target
//! [`Board::serve`]s: if its requested generation is newer than its done
//! one, it applies the published batch to its TLB, then records the
//! generation as done (release). Invariants: the request changes only
//! while the board is taken and after every target of the previous
//! generation acknowledged; a target acknowledges only after applying.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use x86_64::VirtAddr;

use super::{Tlb, TlbBatch, BATCH_PAGES};

/// The shared state for up to `N` CPUs.
pub struct Board<const N: usize> {
    busy: AtomicBool,
    generation: AtomicU64,
    all: AtomicBool,
    len: AtomicUsize,
    pages: [AtomicU64; BATCH_PAGES],
    requested: [AtomicU64; N],
    done: [AtomicU64; N],
}

impl<const N: usize> Board<N> {
    /// A board with nothing in flight.
    pub const fn new() -> Self {
        Self {
            busy: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            all: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            pages: [const { AtomicU64::new(0) }; BATCH_PAGES],
            requested: [const { AtomicU64::new(0) }; N],
            done: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Takes the board for one shootdown; `false` if another CPU has it
    /// (serve, then try again).
    pub fn try_begin(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Publishes `batch` (the board must be taken) and returns its
    /// generation.
    pub fn publish(&self, batch: &TlbBatch) -> u64 {
        self.all.store(batch.is_all(), Ordering::Relaxed);
        self.len.store(batch.pages().len(), Ordering::Relaxed);
        for (slot, page) in self.pages.iter().zip(batch.pages()) {
            slot.store(page.as_u64(), Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Asks CPU `cpu` to apply generation `generation`.
    pub fn request(&self, cpu: usize, generation: u64) {
        self.requested[cpu].store(generation, Ordering::Release);
    }

    /// Whether CPU `cpu` has applied `generation`.
    pub fn done(&self, cpu: usize, generation: u64) -> bool {
        self.done[cpu].load(Ordering::Acquire) >= generation
    }

    /// Gives the board back (every target is done).
    pub fn end(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// On CPU `cpu`: applies the request aimed at it to `tlb`, if one is
    /// waiting; whether it did.
    pub fn serve(&self, cpu: usize, tlb: &mut impl Tlb) -> bool {
        let wanted = self.requested[cpu].load(Ordering::Acquire);
        if wanted <= self.done[cpu].load(Ordering::Relaxed) {
            return false;
        }
        if self.all.load(Ordering::Relaxed) {
            tlb.flush_all();
        } else {
            let len = self.len.load(Ordering::Relaxed).min(BATCH_PAGES);
            for slot in &self.pages[..len] {
                tlb.flush_page(VirtAddr::new(slot.load(Ordering::Relaxed)));
            }
        }
        self.done[cpu].store(wanted, Ordering::Release);
        true
    }
}

impl<const N: usize> Default for Board<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    const CPUS: usize = 4;

    /// A CPU's TLB as a set of cached pages (shared, so that an initiator
    /// can check every CPU's after its shootdown): filled by "reads",
    /// emptied by flushes.
    #[derive(Clone, Default)]
    struct FakeTlb {
        cached: Arc<Mutex<Vec<u64>>>,
    }

    impl Tlb for FakeTlb {
        fn flush_page(&mut self, virt: VirtAddr) {
            self.cached
                .lock()
                .unwrap()
                .retain(|&page| page != virt.as_u64());
        }
        fn flush_all(&mut self) {
            self.cached.lock().unwrap().clear();
        }
    }

    /// The initiator's side, serving requests aimed at itself while it
    /// waits (as the kernel does).
    fn shoot(board: &Board<CPUS>, me: usize, tlb: &mut FakeTlb, batch: &TlbBatch) {
        batch.apply(tlb);
        while !board.try_begin() {
            board.serve(me, tlb);
            std::thread::yield_now();
        }
        let generation = board.publish(batch);
        for cpu in (0..CPUS).filter(|&cpu| cpu != me) {
            board.request(cpu, generation);
        }
        for cpu in (0..CPUS).filter(|&cpu| cpu != me) {
            while !board.done(cpu, generation) {
                board.serve(me, tlb);
                // More threads than host cores: let the target run.
                std::thread::yield_now();
            }
        }
        board.end();
    }

    /// Every CPU, all at once and over and over: every CPU "reads" a page
    /// of this CPU's own (it lands in every TLB), then this CPU shoots it
    /// down. Each shootdown must finish (no deadlock with several
    /// initiators: the test ends) and, when it returns, the page must be
    /// gone from every CPU's TLB.
    #[test]
    fn concurrent_shootdowns_all_finish_and_reach_every_cpu() {
        let board = Arc::new(Board::<CPUS>::new());
        let tlbs: Vec<FakeTlb> = (0..CPUS).map(|_| FakeTlb::default()).collect();
        let finished = Arc::new(AtomicUsize::new(0));
        let rounds = 300u64;
        let threads: Vec<_> = (0..CPUS)
            .map(|me| {
                let (board, finished) = (board.clone(), finished.clone());
                let tlbs = tlbs.clone();
                std::thread::spawn(move || {
                    let mut mine = tlbs[me].clone();
                    for round in 0..rounds {
                        let page = ((me as u64 + 1) << 20) + (round % 8) * 4096;
                        for tlb in &tlbs {
                            tlb.cached.lock().unwrap().push(page);
                        }
                        let mut batch = TlbBatch::new();
                        if round % 50 == 49 {
                            batch.flush_all();
                        } else {
                            batch.flush_page(VirtAddr::new(page));
                        }
                        shoot(&board, me, &mut mine, &batch);
                        for (cpu, tlb) in tlbs.iter().enumerate() {
                            assert!(
                                !tlb.cached.lock().unwrap().contains(&page),
                                "CPU {cpu} still caches {page:#x} after CPU {me}'s shootdown"
                            );
                        }
                    }
                    finished.fetch_add(1, Ordering::AcqRel);
                    // Keep serving until everyone is finished.
                    while finished.load(Ordering::Acquire) < CPUS {
                        board.serve(me, &mut mine);
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(
            board.generation.load(Ordering::Relaxed),
            rounds * CPUS as u64
        );
    }

    #[test]
    fn a_target_applies_the_batch_before_it_acknowledges() {
        let board = Board::<2>::new();
        assert!(board.try_begin());
        assert!(!board.try_begin(), "one shootdown in flight at a time");
        let mut batch = TlbBatch::new();
        batch.flush_page(VirtAddr::new(0x5000));
        let generation = board.publish(&batch);
        board.request(1, generation);
        assert!(!board.done(1, generation));
        let mut tlb = FakeTlb::default();
        tlb.cached.lock().unwrap().extend([0x5000, 0x6000]);
        assert!(board.serve(1, &mut tlb));
        assert_eq!(*tlb.cached.lock().unwrap(), [0x6000]);
        assert!(board.done(1, generation));
        assert!(!board.serve(1, &mut tlb), "served once");
        board.end();
        assert!(board.try_begin());
        let mut all = TlbBatch::new();
        all.flush_all();
        let generation = board.publish(&all);
        board.request(1, generation);
        board.serve(1, &mut tlb);
        assert!(tlb.cached.lock().unwrap().is_empty());
    }
}
