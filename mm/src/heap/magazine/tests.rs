//! Host tests of the magazines: paths one by one, a property test against
//! a model (several simulated CPUs in one thread), and std threads
//! hammering one heap through their own magazines with cross-thread frees
//! and racing double frees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use proptest::prelude::*;

use super::super::slab;
use super::super::tlsf::Tlsf;
use super::super::{bitmap_words, DebugChecks, Grow, Heap};
use super::*;
use crate::rng::XorShift;
use crate::testing;

const MIB: usize = 1 << 20;

/// A grow hook over the arena's reservation, counting its calls.
struct Reserve {
    limit: usize,
    calls: usize,
}

impl Grow for Reserve {
    fn grow(&mut self, end: usize, bytes: usize) -> bool {
        self.calls += 1;
        end + bytes <= self.limit
    }
}

/// A heap of up to `max` bytes with `cpus` CPUs' magazines.
struct World {
    memory: testing::Arena,
    bitmaps: Vec<u64>,
    states: Vec<AtomicU8>,
}

impl World {
    fn new(max: usize) -> Self {
        Self {
            memory: testing::Arena::new(max),
            bitmaps: vec![0; bitmap_words(max)],
            states: (0..state_bytes(max)).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// The heap (`initial` bytes mapped, growable to `grow_to`) and its
    /// state bytes.
    fn heap(
        &mut self,
        initial: usize,
        grow_to: usize,
        checks: DebugChecks,
    ) -> (Mutex<Heap<'_, Reserve>>, SlotStates<'_>) {
        let (memory, max) = (self.memory.base(), self.memory.len());
        let grow = Reserve {
            limit: memory.as_ptr().addr() + grow_to,
            calls: 0,
        };
        // SAFETY: the arena owns [base, base + max) for the heap's
        // lifetime (the heap borrows the world), 4096-aligned.
        let heap =
            unsafe { Heap::new(memory, initial, max, grow, &mut self.bitmaps, checks) }.unwrap();
        let states = SlotStates::new(&self.states, memory.as_ptr().addr());
        (Mutex::new(heap), states)
    }
}

/// CPU `me` of `cpus` around `heap`.
struct Host<'h, 'a> {
    heap: &'h Mutex<Heap<'a, Reserve>>,
    cpus: &'h [CpuMagazines],
    states: &'h SlotStates<'h>,
    me: usize,
    /// Times this CPU took the heap's lock.
    locks: AtomicUsize,
}

impl<'a> Machine<'a, Reserve> for Host<'_, 'a> {
    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<'a, Reserve>) -> R) -> R {
        self.locks.fetch_add(1, Ordering::Relaxed);
        f(&mut self.heap.lock().unwrap())
    }
    fn for_each_other(&self, mut f: impl FnMut(&CpuMagazines)) {
        for (index, cpu) in self.cpus.iter().enumerate() {
            if index != self.me {
                f(cpu);
            }
        }
    }
}

impl Host<'_, '_> {
    fn alloc(&self, size: usize) -> Result<*mut u8, MmError> {
        let layout = Layout::from_size_align(size, 16).unwrap();
        alloc(&self.cpus[self.me], self.states, self, layout).map(NonNull::as_ptr)
    }
    fn free(&self, pointer: *mut u8) -> Result<(), MmError> {
        free(&self.cpus[self.me], self.states, self, pointer).map(|_| ())
    }
}

/// The hosts of every CPU.
fn hosts<'h, 'a>(
    heap: &'h Mutex<Heap<'a, Reserve>>,
    cpus: &'h [CpuMagazines],
    states: &'h SlotStates<'h>,
) -> Vec<Host<'h, 'a>> {
    (0..cpus.len())
        .map(|me| Host {
            heap,
            cpus,
            states,
            me,
            locks: AtomicUsize::new(0),
        })
        .collect()
}

fn cpus(count: usize, checks: DebugChecks) -> Vec<CpuMagazines> {
    (0..count).map(|_| CpuMagazines::new(checks)).collect()
}

/// Drains every CPU's magazines and checks that nothing is left: no
/// magazine slot, no live allocation, `verify` passes.
fn drain_and_check_empty(
    heap: &Mutex<Heap<'_, Reserve>>,
    cpus: &[CpuMagazines],
    states: &SlotStates<'_>,
) {
    let mut heap = heap.lock().unwrap();
    for cpu in cpus {
        assert!(drain(&mut heap, cpu, states));
        assert_eq!(cpu.cached(), 0);
    }
    let stats = combined_stats(heap.stats(), cpus);
    assert_eq!((stats.used, stats.live_allocations), (0, 0));
    assert_eq!(heap.stats().used, 0, "a slot stranded outside the heap");
    heap.verify().unwrap();
}

/// Checks every CPU's magazines and the heap; returns the slots held.
fn verify_all(
    heap: &Mutex<Heap<'_, Reserve>>,
    cpus: &[CpuMagazines],
    states: &SlotStates<'_>,
) -> usize {
    let heap = heap.lock().unwrap();
    heap.verify().unwrap();
    cpus.iter()
        .map(|cpu| verify(&heap, cpu, states).unwrap().unwrap())
        .sum()
}

/// Every request size has the tightest class that holds it; every block
/// class's blocks map back to it; the slab classes are the slabs' own.
#[test]
fn classes_hold_their_requests_tightly_and_blocks_map_back() {
    for bytes in 1..=MAGAZINE_LIMIT {
        let class = class_of(bytes);
        assert!(class < CLASSES && class_size(class) >= bytes, "{bytes}");
        assert!(class == 0 || class_size(class - 1) < bytes, "{bytes}");
        if bytes <= SLAB_LIMIT {
            assert_eq!(class, slab::class_of(bytes));
            assert_eq!(class_size(class), slab::slot_size(class));
        }
    }
    assert_eq!(MAGAZINE_LIMIT, 1536);
    assert_eq!(class_of(1024 + DEBUG_OVERHEAD), class_of(1048));
    for class in SLAB_CLASSES..CLASSES {
        assert_eq!(class_of_block(block_size(class)), Some(class));
        assert_eq!(
            Tlsf::block_size_for(class_size(class)),
            Some(block_size(class)),
            "what the heap gives the class's largest request"
        );
    }
    assert_eq!(class_of_block(block_size(SLAB_CLASSES - 1)), None);
    assert_eq!(class_of_block(block_size(CLASSES - 1) + 2 * GRANULE), None);
}

#[test]
fn a_slot_freed_on_another_cpu_is_reused_there_without_the_lock() {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(256 * 1024, MIB, DebugChecks::Off);
    let cpus = cpus(2, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let (zero, one) = (&hosts[0], &hosts[1]);
    {
        let pointer = zero.alloc(40).unwrap();
        assert_eq!(cpus[0].cached(), BATCH - 1, "a refill brought a batch");
        one.free(pointer).unwrap();
        assert_eq!(cpus[1].cached(), 1);
        assert_eq!(one.alloc(33).unwrap(), pointer, "LIFO: the slot freed last");
        let stats = combined_stats(heap.lock().unwrap().stats(), &cpus);
        assert_eq!((stats.used, stats.live_allocations), (48, 1));
        assert_eq!(stats.total_allocations, 2);
        zero.free(pointer).unwrap();
        assert_eq!(verify_all(&heap, &cpus, &states), BATCH);
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

#[test]
fn freeing_a_slot_twice_is_a_double_free_in_a_magazine_and_after_it() {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(256 * 1024, MIB, DebugChecks::Off);
    let cpus = cpus(2, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let (zero, one) = (&hosts[0], &hosts[1]);
    {
        let pointer = zero.alloc(64).unwrap();
        zero.free(pointer).unwrap();
        let before = combined_stats(heap.lock().unwrap().stats(), &cpus);
        assert_eq!(zero.free(pointer), Err(MmError::DoubleFree));
        assert_eq!(one.free(pointer), Err(MmError::DoubleFree));
        // SAFETY: a pointer into the slot, for the interior-pointer check.
        let inside = unsafe { pointer.add(16) };
        assert_eq!(one.free(inside), Err(MmError::InvalidFree));
        assert_eq!(one.free(std::ptr::null_mut()), Err(MmError::InvalidFree));
        assert_eq!(combined_stats(heap.lock().unwrap().stats(), &cpus), before);
        // Out of the magazines, the heap's own check says the same.
        drain(&mut heap.lock().unwrap(), &cpus[0], &states);
        assert_eq!(one.free(pointer), Err(MmError::DoubleFree));
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

#[test]
fn full_magazines_flush_a_batch_and_requests_they_do_not_serve_take_the_lock() {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(512 * 1024, MIB, DebugChecks::Off);
    let cpus = cpus(1, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let zero = &hosts[0];
    {
        let pointers: Vec<_> = (0..3 * ROUNDS).map(|_| zero.alloc(16).unwrap()).collect();
        let big = zero.alloc(2000).unwrap();
        for &pointer in &pointers {
            zero.free(pointer).unwrap();
            assert!(cpus[0].cached() <= ROUNDS);
        }
        assert!(cpus[0].cached() > ROUNDS - BATCH);
        zero.free(big).unwrap();
        assert_eq!(zero.free(big), Err(MmError::DoubleFree));
        verify_all(&heap, &cpus, &states);
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

/// Blocks CPUs 1 and 2 leave in their magazines in the exhaustion test.
const LEFT_BEHIND: [usize; 2] = [64, 200];

#[test]
fn exhaustion_drains_every_magazine_so_every_byte_is_usable() {
    const SIZE: usize = 256 * 1024;
    // The same allocations straight from a heap without magazines, all
    // freed again, then 64-byte blocks until the first failure.
    let plain = {
        let mut world = World::new(SIZE);
        let (heap, _) = world.heap(SIZE, SIZE, DebugChecks::Off);
        let mut heap = heap.lock().unwrap();
        let mut pointers = Vec::new();
        for _cpu in 1..3 {
            for size in LEFT_BEHIND {
                pointers.extend((0..ROUNDS).map(|_| heap.kmalloc(size).unwrap()));
            }
        }
        pointers
            .into_iter()
            .for_each(|p| heap.free(p.as_ptr()).unwrap());
        std::iter::from_fn(|| heap.kmalloc(64).ok()).count()
    };
    let mut world = World::new(SIZE);
    let (heap, states) = world.heap(SIZE, SIZE, DebugChecks::Off);
    let cpus = cpus(3, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let mut pointers = Vec::new();
    for host in &hosts[1..] {
        for size in LEFT_BEHIND {
            pointers.extend((0..ROUNDS).map(|_| (host, host.alloc(size).unwrap())));
        }
    }
    pointers
        .into_iter()
        .for_each(|(host, p)| host.free(p).unwrap());
    assert_eq!(cpus[1].cached() + cpus[2].cached(), 4 * ROUNDS);
    let mut taken = Vec::new();
    while let Ok(pointer) = hosts[0].alloc(64) {
        taken.push(pointer);
    }
    assert_eq!(taken.len(), plain, "as many blocks as without magazines");
    assert_eq!(cpus[1].cached() + cpus[2].cached(), 0);
    let stats = combined_stats(heap.lock().unwrap().stats(), &cpus);
    assert_eq!(stats.failed_allocations, 1);
    taken.into_iter().for_each(|p| hosts[2].free(p).unwrap());
    drain_and_check_empty(&heap, &cpus, &states);
}

#[test]
fn magazines_are_drained_before_the_heap_grows() {
    let mut world = World::new(4 * MIB);
    let (heap, states) = world.heap(64 * 1024, 4 * MIB, DebugChecks::Off);
    let cpus = cpus(2, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let (zero, one) = (&hosts[0], &hosts[1]);
    let pointers: Vec<_> = (0..ROUNDS).map(|_| one.alloc(240).unwrap()).collect();
    pointers.into_iter().for_each(|p| one.free(p).unwrap());
    assert_eq!(cpus[1].cached(), ROUNDS);
    let grows = || heap.lock().unwrap().grow.calls;
    let mut big = Vec::new();
    while grows() == 0 {
        big.push(zero.alloc(2000).unwrap());
    }
    assert_eq!(
        cpus[1].cached(),
        0,
        "the heap grew before the magazines were drained"
    );
    big.into_iter().for_each(|p| one.free(p).unwrap());
    drain_and_check_empty(&heap, &cpus, &states);
}

/// An overrun of one byte into the red zone of an allocation of `size`
/// bytes from a magazine, freed on another CPU: counted and the memory
/// poisoned; a clean one freed through the heap (the magazines busy) is
/// no violation.
fn an_overrun_is_caught(size: usize) {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(256 * 1024, MIB, DebugChecks::On);
    let cpus = cpus(2, DebugChecks::On);
    let hosts = hosts(&heap, &cpus, &states);
    let (zero, one) = (&hosts[0], &hosts[1]);
    {
        let pointer = zero.alloc(size).unwrap();
        // SAFETY: `size` bytes are ours; the next is the red zone's
        // first, inside the slot or block (writing it is the overrun
        // under test).
        unsafe { pointer.add(size).write(0) };
        assert_eq!(free(&cpus[1], &states, one, pointer), Ok(true));
        assert_eq!(cpus[1].cached(), 1, "into CPU 1's magazine");
        let stats = combined_stats(heap.lock().unwrap().stats(), &cpus);
        assert_eq!(stats.red_zone_violations, 1);
        // SAFETY: it is in CPU 1's magazine, untouched: readable.
        assert_eq!(unsafe { pointer.read() }, 0xDD, "poisoned");
        let clean = zero.alloc(size).unwrap();
        let through_heap = cpus[1].try_with(|_| one.free(clean));
        assert_eq!(through_heap, Some(Ok(())));
        let stats = combined_stats(heap.lock().unwrap().stats(), &cpus);
        assert_eq!(stats.red_zone_violations, 1);
        verify_all(&heap, &cpus, &states);
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

#[test]
fn debug_checks_catch_an_overrun_of_a_magazine_slot_and_poison_it() {
    an_overrun_is_caught(40);
}

#[test]
fn debug_checks_catch_an_overrun_of_a_magazine_block() {
    an_overrun_is_caught(600);
}

#[test]
fn kernel_object_blocks_go_through_the_magazines_without_the_lock() {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(256 * 1024, MIB, DebugChecks::Off);
    let cpus = cpus(2, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let (zero, one) = (&hosts[0], &hosts[1]);
    {
        let pointer = zero.alloc(1024).unwrap();
        let locks = zero.locks.load(Ordering::Relaxed);
        assert_eq!(locks, 1, "one refill");
        assert_eq!(
            cpus[0].cached(),
            batch(class_of(1024)) - 1,
            "a refill brought a batch"
        );
        for _ in 0..1000 {
            zero.free(zero.alloc(1024).unwrap()).unwrap();
            zero.free(zero.alloc(512).unwrap()).unwrap();
        }
        assert_eq!(
            zero.locks.load(Ordering::Relaxed),
            locks + 1,
            "pairs take the lock only for the 512-byte class's refill"
        );
        // Freed on another CPU: into that CPU's magazine, reused there.
        one.free(pointer).unwrap();
        assert_eq!(
            (one.locks.load(Ordering::Relaxed), cpus[1].cached()),
            (0, 1)
        );
        assert_eq!(
            one.alloc(1010).unwrap(),
            pointer,
            "LIFO: the block freed last"
        );
        // In a magazine, a second free is a double free on any CPU, and
        // in the heap after a drain as well.
        one.free(pointer).unwrap();
        let before = combined_stats(heap.lock().unwrap().stats(), &cpus);
        assert_eq!(zero.free(pointer), Err(MmError::DoubleFree));
        assert_eq!(one.free(pointer), Err(MmError::DoubleFree));
        assert_eq!(combined_stats(heap.lock().unwrap().stats(), &cpus), before);
        assert_eq!(before.live_allocations, 0);
        verify_all(&heap, &cpus, &states);
        drain(&mut heap.lock().unwrap(), &cpus[1], &states);
        assert_eq!(zero.free(pointer), Err(MmError::DoubleFree));
        // Beyond the limit, the lock.
        let locks = zero.locks.load(Ordering::Relaxed);
        zero.free(zero.alloc(MAGAZINE_LIMIT + 1).unwrap()).unwrap();
        assert_eq!(zero.locks.load(Ordering::Relaxed), locks + 2);
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

#[test]
fn a_block_sixteen_bytes_too_big_serves_the_next_class() {
    let mut world = World::new(MIB);
    let (heap, states) = world.heap(256 * 1024, MIB, DebugChecks::Off);
    let cpus = cpus(1, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let zero = &hosts[0];
    // Class 18 (requests of 289-304 bytes) holds blocks of 320 bytes.
    // Leave a free block of 336 between used ones, in the TLSF lists.
    let (class, odd) = (18, {
        let mut heap = heap.lock().unwrap();
        let blocks: Vec<_> = (0..3)
            .map(|_| heap.kmalloc(320).unwrap().as_ptr())
            .collect();
        heap.free(blocks[1]).unwrap();
        heap.trim();
        blocks[1]
    });
    assert_eq!(block_size(class), 320);
    assert_eq!(class_of_block(336), Some(class + 1));
    let first = zero.alloc(300).unwrap();
    assert_ne!(first, odd, "a block of 336 is not one of class 18");
    assert_eq!(
        zero.alloc(310).unwrap(),
        odd,
        "it waits in class 19's magazine"
    );
    assert_eq!(verify_all(&heap, &cpus, &states), batch(class) - 1);
    zero.free(first).unwrap();
    zero.free(odd).unwrap();
    let mut heap_now = heap.lock().unwrap();
    assert!(drain(&mut heap_now, &cpus[0], &states));
    // The three blocks made directly, two of them still live.
    assert_eq!(heap_now.stats().live_allocations, 2);
}

#[test]
fn the_blocks_in_one_cpus_magazines_stay_within_the_budget() {
    let mut world = World::new(4 * MIB);
    let (heap, states) = world.heap(256 * 1024, 4 * MIB, DebugChecks::Off);
    let cpus = cpus(1, DebugChecks::Off);
    let hosts = hosts(&heap, &cpus, &states);
    let zero = &hosts[0];
    {
        // 30 blocks of each of 12 block classes: 230 KiB.
        let sizes = (0..12).map(|i| 300 + 60 * i);
        let pointers: Vec<_> = sizes
            .flat_map(|size| (0..30).map(move |_| size))
            .map(|size| zero.alloc(size).unwrap())
            .collect();
        let budget = BLOCK_BUDGET + (SLAB_CLASSES..CLASSES).map(block_size).sum::<usize>();
        for pointer in pointers {
            zero.free(pointer).unwrap();
            assert!(cpus[0].block_bytes.load(Ordering::Relaxed) <= budget);
        }
        let held = cpus[0].block_bytes.load(Ordering::Relaxed);
        assert!(held <= BLOCK_BUDGET, "frees keep the budget: {held}");
        assert!(held > BLOCK_BUDGET / 2, "and fill it: {held}");
        verify_all(&heap, &cpus, &states);
    }
    drain_and_check_empty(&heap, &cpus, &states);
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Alloc {
        cpu: usize,
        size: usize,
    },
    Free {
        cpu: usize,
        which: prop::sample::Index,
    },
    FreeAgain {
        cpu: usize,
        which: prop::sample::Index,
    },
    Drain {
        cpu: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..300usize).prop_map(|(cpu, size)| Op::Alloc { cpu, size }),
        2 => (0..3usize, 250..1700usize).prop_map(|(cpu, size)| Op::Alloc { cpu, size }),
        4 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(cpu, which)| Op::Free { cpu, which }),
        1 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(cpu, which)| Op::FreeAgain { cpu, which }),
        1 => (0..3usize).prop_map(|cpu| Op::Drain { cpu }),
    ]
}

proptest! {
    #![proptest_config(testing::cases(64))]

    /// Three CPUs allocate, free each other's blocks, free some twice and
    /// drain, on a heap small enough to run out; against a model of the
    /// live blocks: none handed out twice (contents and ranges checked),
    /// every double free refused with nothing changed, counters equal to
    /// the model's, and nothing stranded once every magazine is drained.
    #[test]
    fn magazines_agree_with_a_model(
        ops in proptest::collection::vec(op(), 1..400),
        debug_checks in any::<bool>(),
    ) {
        let checks = if debug_checks { DebugChecks::On } else { DebugChecks::Off };
        let mut world = World::new(512 * 1024);
        let (heap, states) = world.heap(64 * 1024, 192 * 1024, checks);
        let cpus = cpus(3, checks);
        let hosts = hosts(&heap, &cpus, &states);
        // address -> (pointer, size, fill byte)
        let mut live: BTreeMap<usize, (*mut u8, usize, u8)> = BTreeMap::new();
        let mut freed: Vec<*mut u8> = Vec::new();
        let mut fill = 0u8;
        for op in ops {
            match op {
                Op::Alloc { cpu, size } => {
                    let Ok(pointer) = hosts[cpu].alloc(size) else { continue };
                    let address = pointer.addr();
                    if let Some((&below, &(_, length, _))) = live.range(..=address).next_back() {
                        assert!(below + length <= address, "overlaps a live block");
                    }
                    if let Some((&above, _)) = live.range(address..).next() {
                        assert!(address + size <= above, "overlaps a live block");
                    }
                    fill = fill.wrapping_add(1);
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { pointer.write_bytes(fill, size) };
                    live.insert(address, (pointer, size, fill));
                    freed.retain(|&p| p.addr() != address);
                }
                Op::Free { cpu, which } => {
                    if live.is_empty() { continue }
                    let address = *live.keys().nth(which.index(live.len())).unwrap();
                    let (pointer, size, byte) = live.remove(&address).unwrap();
                    // SAFETY: a live block of `size` bytes.
                    let contents = unsafe { std::slice::from_raw_parts(pointer, size) };
                    assert!(contents.iter().all(|&b| b == byte), "a live block was overwritten");
                    hosts[cpu].free(pointer).unwrap();
                    freed.push(pointer);
                }
                Op::FreeAgain { cpu, which } => {
                    if freed.is_empty() { continue }
                    let pointer = freed[which.index(freed.len())];
                    let before = combined_stats(heap.lock().unwrap().stats(), &cpus);
                    // In a magazine: DoubleFree; back in the heap, whose
                    // verdict on a reused slot may be either.
                    let refused = hosts[cpu].free(pointer);
                    assert!(matches!(refused, Err(MmError::DoubleFree | MmError::InvalidFree)));
                    assert_eq!(combined_stats(heap.lock().unwrap().stats(), &cpus), before);
                }
                Op::Drain { cpu } => {
                    assert!(drain(&mut heap.lock().unwrap(), &cpus[cpu], &states));
                }
            }
            let stats = combined_stats(heap.lock().unwrap().stats(), &cpus);
            assert_eq!(stats.live_allocations, live.len());
            assert_eq!(stats.used + stats.free + stats.overhead, stats.mapped);
        }
        verify_all(&heap, &cpus, &states);
        for (pointer, _, _) in live.into_values() {
            hosts[0].free(pointer).unwrap();
        }
        drain_and_check_empty(&heap, &cpus, &states);
    }
}

/// A block passed between threads, with its size.
struct Sent(*mut u8, usize);

// SAFETY: the block is heap memory, passed from one thread to the next
// through a mutex; only the receiver uses it afterwards.
unsafe impl Send for Sent {}

/// Four threads, each with its own magazines over one heap, allocate
/// slots and blocks, stamp them, pass half of them to the next thread
/// through a shared box (of at most `BOX_LIMIT`) and free what they get
/// from the previous one (so most frees are cross-thread); every block's stamp is checked before it is
/// freed (a block handed out twice would carry another thread's stamp).
/// Then a race: all threads free the same blocks at once; exactly one
/// free of each succeeds.
#[test]
fn threads_hammer_the_magazines_with_cross_thread_frees() {
    const THREADS: usize = 4;
    const STEPS: usize = 20_000;
    /// Blocks a box holds at most.
    const BOX_LIMIT: usize = 256;
    let mut world = World::new(8 * MIB);
    let (heap, states) = world.heap(256 * 1024, 8 * MIB, DebugChecks::Off);
    let cpus = cpus(THREADS, DebugChecks::Off);
    let boxes: Vec<Mutex<Vec<Sent>>> = (0..THREADS).map(|_| Mutex::new(Vec::new())).collect();
    let barrier = Barrier::new(THREADS);
    let won = AtomicUsize::new(0);
    let racers: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for me in 0..THREADS {
            let (heap, cpus, states, boxes) = (&heap, &cpus[..], &states, &boxes);
            let (barrier, won, racers) = (&barrier, &won, &racers);
            scope.spawn(move || {
                let host = Host {
                    heap,
                    cpus,
                    states,
                    me,
                    locks: AtomicUsize::new(0),
                };
                let mut rng = XorShift::new(0xC0FFEE + me as u64);
                let mut mine: Vec<(*mut u8, usize)> = Vec::new();
                let stamp = |pointer: *mut u8, size: usize, value: u8| {
                    // SAFETY: a live block of `size` bytes, ours.
                    unsafe { pointer.write_bytes(value, size) };
                };
                let check = |pointer: *mut u8, size: usize, value: u8| {
                    // SAFETY: as above.
                    let bytes = unsafe { std::slice::from_raw_parts(pointer, size) };
                    assert!(bytes.iter().all(|&b| b == value), "block handed out twice");
                };
                for step in 0..STEPS {
                    // Slab slots mostly, blocks of the block classes and
                    // beyond them the rest.
                    let size = match rng.below(8) {
                        0 | 1 => 257 + rng.below(1400) as usize,
                        _ => 1 + rng.below(256) as usize,
                    };
                    let pointer = host.alloc(size).unwrap();
                    stamp(pointer, size, me as u8);
                    // Every other block goes to the next thread, unless
                    // its box is full: with 4 threads on fewer cores one
                    // may not run for a while, and an unbounded box once
                    // held several MiB and exhausted the 8 MiB heap.
                    let sent = step % 2 == 0 && {
                        let mut next = boxes[(me + 1) % THREADS].lock().unwrap();
                        let room = next.len() < BOX_LIMIT;
                        if room {
                            next.push(Sent(pointer, size));
                        }
                        room
                    };
                    if !sent {
                        mine.push((pointer, size));
                    }
                    if rng.below(2) == 0 {
                        let received = boxes[me].lock().unwrap().pop();
                        if let Some(Sent(pointer, size)) = received {
                            check(pointer, size, ((me + THREADS - 1) % THREADS) as u8);
                            host.free(pointer).unwrap();
                        }
                    }
                    if mine.len() > 300 {
                        let index = rng.below(mine.len() as u64) as usize;
                        let (pointer, size) = mine.swap_remove(index);
                        check(pointer, size, me as u8);
                        host.free(pointer).unwrap();
                    }
                }
                for (pointer, size) in mine.drain(..) {
                    check(pointer, size, me as u8);
                    host.free(pointer).unwrap();
                }
                barrier.wait();
                let received: Vec<Sent> = boxes[me].lock().unwrap().drain(..).collect();
                for Sent(pointer, _) in received {
                    host.free(pointer).unwrap();
                }
                // The race: thread 0 allocates, everyone frees each block
                // (a slab slot, then a block of a block class).
                for round in 0..200 {
                    if me == 0 {
                        let size = if round % 2 == 0 { 48 } else { 600 };
                        let pointer = host.alloc(size).unwrap();
                        racers.lock().unwrap().push(Sent(pointer, size));
                    }
                    barrier.wait();
                    let pointer = racers.lock().unwrap().last().unwrap().0;
                    match host.free(pointer) {
                        Ok(()) => {
                            won.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => assert_eq!(error, MmError::DoubleFree),
                    }
                    barrier.wait();
                }
            });
        }
    });
    assert_eq!(
        won.load(Ordering::Relaxed),
        200,
        "each racing block freed exactly once"
    );
    verify_all(&heap, &cpus, &states);
    drain_and_check_empty(&heap, &cpus, &states);
}
