//! Tests of the per-CPU frame caches: the LIFO and its watermark, the
//! state bytes, a model-based test of several caches in front of one
//! allocator, and threads hammering them at once.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::*;
use crate::pmm::ranges::{usable_ranges, MapEntry};
use crate::pmm::{FrameAllocator, PhysRange, Reservation, ReservationKind, Stats};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn allocator(storage: &mut Vec<u64>, bytes: u64) -> FrameAllocator<'_> {
    let usable = usable_ranges(
        core::iter::once(MapEntry {
            range: PhysRange::from_len(2 * MIB, bytes),
            usable: true,
        }),
        PhysRange {
            start: 0,
            end: u64::MAX,
        },
    )
    .unwrap();
    storage.resize(FrameAllocator::storage_words_for(&usable), 0);
    let reservations = [Reservation {
        range: PhysRange::from_len(2 * MIB + 0x5000, 0x2000),
        kind: ReservationKind::Other,
    }];
    FrameAllocator::new(usable, &reservations, storage).unwrap()
}

/// State bytes for `bytes` of frames from address 0, on a cache line.
fn states_for(bytes: u64) -> &'static [AtomicU8] {
    crate::testing::line_aligned_states((bytes / PAGE_SIZE) as usize)
}

#[test]
fn the_cache_is_a_lifo_that_drains_its_oldest_frames() {
    let mut cache = FrameCache::new(4, 2);
    for frame in 1..=4 {
        assert_eq!(cache.push(frame * PAGE_SIZE), Ok(false));
    }
    assert_eq!(cache.push(5 * PAGE_SIZE), Ok(true), "above the watermark");
    let mut drained = Vec::new();
    cache.drain(cache.batch(), |frame| drained.push(frame / PAGE_SIZE));
    assert_eq!(drained, [1, 2]);
    assert_eq!(cache.pop(), Some(5 * PAGE_SIZE));
    assert_eq!(cache.len(), 2);
    let mut next = 10;
    assert_eq!(
        cache.refill(|| {
            next += 1;
            Some(next * PAGE_SIZE)
        }),
        2
    );
    assert_eq!(cache.pop(), Some(12 * PAGE_SIZE));
    // Clamped: a drain always makes room, a batch is never empty.
    let clamped = FrameCache::new(1000, 0);
    assert_eq!((clamped.high, clamped.batch), (CACHE_CAPACITY - 1, 1));
}

#[test]
fn state_bytes_catch_a_double_free_of_a_cached_frame() {
    let bytes = 8 * MIB;
    let mut storage = Vec::new();
    let mut pmm = allocator(&mut storage, bytes);
    let raw = states_for(bytes + 4 * MIB);
    let states = FrameStates::new(raw, 0).unwrap();
    let mut cache = FrameCache::new(16, 8);
    let mut source = Near {
        allocator: &mut pmm,
        node: 0,
    };
    assert_eq!(refill(&mut cache, &states, &mut source), 8);
    let frame = take(&mut cache, &states).unwrap();
    assert_eq!(give(&mut cache, &states, frame), Ok(Given::Cached(false)));
    assert_eq!(
        give(&mut cache, &states, frame),
        Err(MmError::FrameAlreadyFree)
    );
    assert_eq!(
        give(&mut cache, &states, frame + 1),
        Err(MmError::Misaligned)
    );
    assert_eq!(
        give(&mut cache, &states, 64 * MIB),
        Err(MmError::OutOfRange)
    );
    // A frame the allocator handed out directly goes to it.
    let direct = source.take_frame().unwrap();
    assert_eq!(give(&mut cache, &states, direct), Ok(Given::ToAllocator));
    assert_eq!(source.give_frame(direct), Ok(()));
    assert_eq!(cache.len(), 8);
    drain(&mut cache, &states, &mut source, CACHE_CAPACITY);
    assert_eq!(pmm.stats().used, 0);
}

#[test]
fn state_bytes_must_put_each_aligned_run_on_a_line_of_its_own() {
    let states = states_for(4 * MIB);
    // Off a cache line, or a base off a 64-frame boundary: refused.
    assert!(matches!(
        FrameStates::new(&states[1..], 0),
        Err(MmError::Misaligned)
    ));
    assert!(matches!(
        FrameStates::new(states, PAGE_SIZE),
        Err(MmError::Misaligned)
    ));
    let base = FRAMES_PER_LINE as u64 * PAGE_SIZE;
    let states = FrameStates::new(states, base).unwrap();
    let address = |frame: u64| {
        let state = states.state(base + frame * PAGE_SIZE).unwrap();
        (state as *const AtomicU8).addr()
    };
    let run = 1u64 << REFILL_RUN_ORDER;
    for first in [0, run, 5 * run] {
        assert!(address(first).is_multiple_of(64), "a run starts a line");
        assert_eq!(address(first + run - 1) - address(first), run as usize - 1);
    }
    assert!(states.state(0).is_none(), "below the base");
}

/// One CPU of the model: its cache and its donation slot.
struct Cpu {
    cache: FrameCache,
    donation: Donation,
}

/// The kernel's allocation path over the pieces: cache, refill, then
/// every other CPU's cache, then exhaustion.
fn alloc(
    cpus: &mut [Cpu],
    me: usize,
    states: &FrameStates<'_>,
    pmm: &mut FrameAllocator<'_>,
) -> Option<u64> {
    if let Some(frame) = take(&mut cpus[me].cache, states) {
        return Some(frame);
    }
    let mut source = Near {
        allocator: pmm,
        node: 0,
    };
    if refill(&mut cpus[me].cache, states, &mut source) == 0 {
        // Collect the others' caches (each serves at once in the model).
        for other in (0..cpus.len()).filter(|&o| o != me) {
            assert!(cpus[other].donation.request());
            let Cpu { cache, donation } = &mut cpus[other];
            donation.serve(cache);
            donation.collect(|frame| {
                states.returned(frame);
                source.give_frame(frame).unwrap();
            });
        }
        refill(&mut cpus[me].cache, states, &mut source);
    }
    take(&mut cpus[me].cache, states)
}

fn free(
    cpus: &mut [Cpu],
    me: usize,
    states: &FrameStates<'_>,
    pmm: &mut FrameAllocator<'_>,
    frame: u64,
) -> Result<(), MmError> {
    let cache = &mut cpus[me].cache;
    let mut source = Near {
        allocator: pmm,
        node: 0,
    };
    match give(cache, states, frame)? {
        Given::Cached(false) => Ok(()),
        Given::Cached(true) => {
            let batch = cache.batch();
            drain(cache, states, &mut source, batch);
            Ok(())
        }
        Given::ToAllocator => source.give_frame(frame),
    }
}

/// Every cached frame back in the allocator.
fn drain_all(cpus: &mut [Cpu], states: &FrameStates<'_>, pmm: &mut FrameAllocator<'_>) {
    let mut source = Near {
        allocator: pmm,
        node: 0,
    };
    for cpu in cpus.iter_mut() {
        drain(&mut cpu.cache, states, &mut source, CACHE_CAPACITY);
    }
}

fn cached(cpus: &[Cpu]) -> u64 {
    cpus.iter().map(|cpu| cpu.cache.len() as u64).sum()
}

proptest! {
    #![proptest_config(crate::testing::cases(128))]

    /// Four caches in front of one allocator: no frame handed out twice,
    /// double frees refused without a change, cross-CPU frees, exhaustion
    /// through the caches hands out every frame, counters consistent
    /// (cached frames count as free), nothing stranded after the drain.
    #[test]
    fn caches_match_a_model(
        ops in proptest::collection::vec((0usize..4, 0u8..10, any::<prop::sample::Index>()), 1..600),
    ) {
        let bytes = 4 * MIB;
        let mut storage = Vec::new();
        let mut pmm = allocator(&mut storage, bytes);
        let initial = pmm.stats();
        let raw = states_for(bytes + 4 * MIB);
        let states = FrameStates::new(raw, 0).unwrap();
        // Two CPUs refill single frames, two take aligned runs of 64.
        let mut cpus: Vec<Cpu> = [(12, 6), (12, 6), (96, 64), (96, 64)]
            .into_iter()
            .map(|(high, batch)| Cpu { cache: FrameCache::new(high, batch), donation: Donation::new() })
            .collect();
        let mut owned: BTreeSet<u64> = BTreeSet::new();
        let mut freed: Vec<u64> = Vec::new();
        for (me, action, which) in ops {
            match action {
                0..=4 => match alloc(&mut cpus, me, &states, &mut pmm) {
                    Some(frame) => prop_assert!(owned.insert(frame), "{:#x} handed out twice", frame),
                    None => {
                        // Exhausted: nothing is free anywhere, not even in a cache.
                        prop_assert_eq!(pmm.stats().free + cached(&cpus), 0);
                    }
                },
                5..=8 if !owned.is_empty() => {
                    let frame = *owned.iter().nth(which.index(owned.len())).unwrap();
                    owned.remove(&frame);
                    // Any CPU may free it, not only the one that took it.
                    prop_assert_eq!(free(&mut cpus, me, &states, &mut pmm, frame), Ok(()));
                    freed.push(frame);
                }
                9 if !freed.is_empty() => {
                    let frame = freed[which.index(freed.len())];
                    if !owned.contains(&frame) {
                        let before = (pmm.stats(), cached(&cpus));
                        prop_assert!(free(&mut cpus, me, &states, &mut pmm, frame).is_err(), "double free of {:#x} accepted", frame);
                        prop_assert_eq!((pmm.stats(), cached(&cpus)), before);
                    }
                }
                _ => {}
            }
            let stats = pmm.stats();
            let free_frames = stats.free + cached(&cpus);
            prop_assert_eq!(stats.used - cached(&cpus), owned.len() as u64);
            prop_assert_eq!(free_frames + owned.len() as u64 + stats.reserved, stats.total);
        }
        for frame in std::mem::take(&mut owned) {
            prop_assert_eq!(free(&mut cpus, 0, &states, &mut pmm, frame), Ok(()));
        }
        drain_all(&mut cpus, &states, &mut pmm);
        prop_assert_eq!(pmm.stats(), initial);
    }
}

/// Four threads, each with its own cache, allocating and freeing at
/// random around one locked allocator, freeing frames other threads
/// allocated, and serving each other's donation requests; one thread at
/// the end exhausts everything through the caches.
#[test]
fn threads_hammering_their_caches_never_share_a_frame() {
    const THREADS: usize = 4;
    let bytes = 16 * MIB;
    let storage: &'static mut Vec<u64> = Box::leak(Box::default());
    let pmm: &'static Mutex<FrameAllocator<'static>> =
        Box::leak(Box::new(Mutex::new(allocator(storage, bytes))));
    let initial: Stats = pmm.lock().unwrap().stats();
    let raw = states_for(bytes + 4 * MIB);
    let states: &'static FrameStates<'static> =
        Box::leak(Box::new(FrameStates::new(raw, 0).unwrap()));
    let owned: &'static [AtomicBool] = Box::leak(
        (0..(bytes + 4 * MIB) / PAGE_SIZE)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let donations: &'static [Donation] = Box::leak((0..THREADS).map(|_| Donation::new()).collect());
    let handoff: Arc<Mutex<Vec<u64>>> = Arc::default();
    let caches: Arc<Mutex<Vec<FrameCache>>> = Arc::default();
    let claim = move |frame: u64| {
        assert!(
            !owned[(frame / PAGE_SIZE) as usize].swap(true, Ordering::SeqCst),
            "{frame:#x} handed out twice"
        );
    };
    let release = move |frame: u64| {
        assert!(
            owned[(frame / PAGE_SIZE) as usize].swap(false, Ordering::SeqCst),
            "{frame:#x} freed but not owned"
        );
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|me| {
            let handoff = Arc::clone(&handoff);
            let caches = Arc::clone(&caches);
            std::thread::spawn(move || {
                let mut cache = if me % 2 == 0 {
                    FrameCache::new(24, 12)
                } else {
                    FrameCache::new(96, 64)
                };
                let mut rng = crate::rng::XorShift::new(0x1234_5678 + me as u64);
                let mut mine: Vec<u64> = Vec::new();
                for _ in 0..20_000 {
                    donations[me].serve(&mut cache);
                    match rng.below(10) {
                        0..=4 => {
                            let frame = take(&mut cache, states).or_else(|| {
                                let mut pmm = pmm.lock().unwrap();
                                let mut source = Near {
                                    allocator: &mut pmm,
                                    node: 0,
                                };
                                refill(&mut cache, states, &mut source);
                                drop(pmm);
                                take(&mut cache, states)
                            });
                            if let Some(frame) = frame {
                                claim(frame);
                                mine.push(frame);
                            }
                        }
                        5..=6 => {
                            // Hand a frame to another thread to free.
                            if let Some(frame) = mine.pop() {
                                handoff.lock().unwrap().push(frame);
                            }
                        }
                        _ => {
                            let frame = if rng.below(2) == 0 {
                                mine.pop()
                            } else {
                                handoff.lock().unwrap().pop()
                            };
                            if let Some(frame) = frame {
                                release(frame);
                                match give(&mut cache, states, frame).unwrap() {
                                    Given::Cached(false) => {}
                                    Given::Cached(true) => {
                                        let mut pmm = pmm.lock().unwrap();
                                        let mut source = Near {
                                            allocator: &mut pmm,
                                            node: 0,
                                        };
                                        let batch = cache.batch();
                                        drain(&mut cache, states, &mut source, batch);
                                    }
                                    Given::ToAllocator => {
                                        panic!("a cached frame went to the allocator")
                                    }
                                }
                            }
                        }
                    }
                }
                handoff.lock().unwrap().extend(mine);
                caches.lock().unwrap().push(cache);
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    // Exhaustion through the caches: collect every cache, then take every
    // frame in the machine exactly once.
    let mut caches = std::mem::take(&mut *caches.lock().unwrap());
    let mut pmm = pmm.lock().unwrap();
    let mut source = Near {
        allocator: &mut pmm,
        node: 0,
    };
    for frame in std::mem::take(&mut *handoff.lock().unwrap()) {
        release(frame);
        source.give_frame(frame).unwrap();
        states.returned(frame);
    }
    for (index, cache) in caches.iter_mut().enumerate() {
        assert!(donations[index].request());
        donations[index].serve(cache);
        donations[index].collect(|frame| {
            states.returned(frame);
            source.give_frame(frame).unwrap();
        });
    }
    assert_eq!(source.allocator.stats(), initial);
    let mut cache = FrameCache::new(24, 12);
    let mut taken = 0;
    loop {
        if let Some(frame) = take(&mut cache, states) {
            claim(frame);
            taken += 1;
        } else if refill(&mut cache, states, &mut source) == 0 {
            break;
        }
    }
    assert_eq!(taken, initial.free);
}
