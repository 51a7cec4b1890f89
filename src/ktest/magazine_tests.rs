//! In-kernel tests of the heap's per-CPU magazines on every CPU at once:
//! small objects allocated on one CPU and freed on another, the lock left
//! alone by the common case, double frees of slots in magazines refused,
//! and exhaustion that drains every CPU's magazines so every slot is
//! handed out.

use core::hint::black_box;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use arrayvec::ArrayVec;

use super::smp_tests::{on_all_cpus, LockStep};
use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::smp;
use crate::kernel_mm::heap;
use crate::sync::IrqMutex;
use crate::{kassert, kassert_eq, kprintln};
use mm::heap::magazine::ROUNDS;
use mm::layout::HEAP_MAX_SIZE;
use mm::MmError;

/// The magazine tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "heap::magazines_serve_objects_up_to_1536_bytes_without_the_lock",
        run: objects_take_no_lock,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::cpus_free_each_others_small_objects",
        run: cpus_free_each_others_objects,
        expects: Expect::NOTHING,
    },
    Test {
        name: "heap::freeing_a_slot_in_a_magazine_again_is_a_double_free",
        run: double_free_in_a_magazine,
        expects: Expect::BAD_FREES,
    },
    Test {
        name: "heap::exhaustion_drains_every_cpus_magazines",
        run: exhaustion_drains_every_magazine,
        expects: Expect::NOTHING,
    },
];

/// Whether the magazines are on; when they are off (a machine near the
/// kernel's minimum memory), says so: the tests then check the same
/// through the heap lock, and what is about magazines alone holds
/// trivially (a skip would fail the minimum-memory boot).
fn magazines_on() -> bool {
    let on = heap::magazines_on();
    if !on {
        kprintln!("    magazines off on this machine: every request takes the lock");
    }
    on
}

/// Sizes of [`objects_take_no_lock`]: a slab slot and blocks of the
/// magazines' block classes, 16 and 32 bytes apart (debug checks
/// included, 1,400 bytes is within their 1,536).
const NO_LOCK_SIZES: [usize; 4] = [40, 512, 1024, 1400];

/// Allocations and frees of a slab size and two block sizes repeated on
/// this CPU: after the first refill of each, none of them takes the heap
/// lock.
fn objects_take_no_lock(_: &Context<'_>) -> TestResult {
    let on = magazines_on();
    let before = heap::stats();
    for size in NO_LOCK_SIZES {
        let warm = heap::kmalloc(size);
        kassert!(!warm.is_null());
        kassert_eq!(heap::kfree(warm), Ok(()));
    }
    let locks = heap::magazine_locks();
    let (ops, _) = heap::magazine_stats();
    for round in 0..1000 {
        for size in NO_LOCK_SIZES {
            let pointer = heap::kmalloc(black_box(size));
            kassert!(!pointer.is_null());
            // SAFETY: a fresh block of `size` bytes.
            unsafe { pointer.add(size - 1).write_volatile(round as u8) };
            kassert_eq!(heap::kfree(black_box(pointer)), Ok(()));
        }
    }
    let pairs = 1000 * NO_LOCK_SIZES.len() as u64;
    if on {
        kassert_eq!(heap::magazine_locks(), locks);
        // Every request and free counted, none of them a miss.
        kassert_eq!(heap::magazine_stats(), (ops + 2 * pairs, locks));
    }
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.live_allocations, before.live_allocations);
    kassert_eq!(
        after.total_allocations,
        before.total_allocations + pairs + NO_LOCK_SIZES.len() as u64
    );
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// Objects each CPU passes on per round.
const PER_CPU: usize = 48;
/// Rounds of the exchange.
const ROUNDS_OF_EXCHANGE: usize = 30;
/// Each CPU's objects of the current round (address, size), freed by the
/// next CPU.
static SLOTS: [IrqMutex<ArrayVec<(usize, usize), PER_CPU>>; smp::MAX_CPUS] =
    [const { IrqMutex::new(ArrayVec::new_const()) }; smp::MAX_CPUS];
/// The rounds' barrier.
static STEPS: LockStep = LockStep::new();

/// Every CPU allocates small objects of many sizes and fills them with a
/// stamp of its own; once all have, each checks and frees the next CPU's
/// (an object handed out twice would carry another stamp), so every free
/// is cross-CPU; then the next round. Afterwards the counters are as
/// before and every magazine checks out.
fn cpus_free_each_others_objects(_: &Context<'_>) -> TestResult {
    magazines_on();
    let before = heap::stats();
    for slot in &SLOTS {
        slot.lock().clear();
    }
    STEPS.reset();
    let result = on_all_cpus(exchange_rounds);
    for slot in &SLOTS {
        while let Some((address, _)) = slot.lock().pop() {
            let _ = heap::kfree(ptr::with_exposed_provenance_mut(address));
        }
    }
    result?;
    kprintln!(
        "    {} CPUs, {} objects freed by another CPU, {} slots in magazines now",
        smp::online(),
        STEPS.crossed(),
        heap::cached_slots()
    );
    STEPS.check_all_crossed(ROUNDS_OF_EXCHANGE, PER_CPU)?;
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.live_allocations, before.live_allocations);
    kassert_eq!(after.used + after.free + after.overhead, after.mapped);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// The byte CPU `cpu` fills its objects of `round` with.
fn stamp(cpu: usize, round: usize) -> u8 {
    (cpu * 31 + round) as u8
}

fn exchange_rounds(index: usize) -> TestResult {
    let next = (index + 1) % smp::online();
    let fill = |round: usize| {
        for object in 0..PER_CPU {
            // One in four a block of the magazines' block classes.
            let mix = object * 37 + round * 11 + index * 5;
            let size = if object % 4 == 0 {
                257 + mix % 1200
            } else {
                1 + mix % 240
            };
            let pointer = heap::kmalloc(size);
            kassert!(!pointer.is_null(), "no memory for a small object");
            // SAFETY: a fresh block of `size` bytes, ours.
            unsafe { ptr::write_bytes(pointer, stamp(index, round), size) };
            let pushed = SLOTS[index]
                .lock()
                .try_push((pointer.expose_provenance(), size))
                .is_ok();
            kassert!(pushed, "slot full");
        }
        Ok(())
    };
    let drain = |round: usize| {
        while let Some((address, size)) = SLOTS[next].lock().pop() {
            let pointer = ptr::with_exposed_provenance_mut::<u8>(address);
            // SAFETY: the slot held the object: nobody else has it.
            let bytes = unsafe { core::slice::from_raw_parts(pointer, size) };
            kassert!(
                bytes.iter().all(|&b| b == stamp(next, round)),
                "an object was handed out twice"
            );
            STEPS.handed(next, index);
            kassert_eq!(heap::kfree(pointer), Ok(()));
        }
        Ok(())
    };
    STEPS.run(ROUNDS_OF_EXCHANGE, fill, drain)
}

/// A slot freed into a magazine, here and on another CPU, freed again:
/// `DoubleFree` both times, nothing changed.
fn double_free_in_a_magazine(_: &Context<'_>) -> TestResult {
    magazines_on();
    let pointer = heap::kmalloc(72);
    kassert!(!pointer.is_null());
    kassert_eq!(heap::kfree(pointer), Ok(()));
    let before = heap::stats();
    kassert_eq!(heap::kfree(pointer), Err(MmError::DoubleFree));
    DOUBLE.store(pointer.expose_provenance(), Ordering::SeqCst);
    on_all_cpus(|_| {
        let pointer = ptr::with_exposed_provenance_mut(DOUBLE.load(Ordering::SeqCst));
        kassert_eq!(heap::kfree(pointer), Err(MmError::DoubleFree));
        Ok(())
    })?;
    // (Running on every CPU allocates and frees a little: compare what
    // that leaves as it was.)
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.free, before.free);
    kassert_eq!(after.live_allocations, before.live_allocations);
    kassert_eq!(after.red_zone_violations, before.red_zone_violations);
    kassert_eq!(heap::verify(), Ok(()));
    Ok(())
}

/// The slot `double_free_in_a_magazine` frees again on every CPU.
static DOUBLE: AtomicUsize = AtomicUsize::new(0);

/// Object size the exhaustion uses.
const EXHAUST: usize = 64;

/// Every CPU leaves full magazines behind; then this CPU allocates
/// 64-byte objects until the heap, grown to its cap, has none left: by
/// then every CPU's magazines were drained (the slots in them handed out
/// here), and freeing everything restores the counters.
fn exhaustion_drains_every_magazine(_: &Context<'_>) -> TestResult {
    // Without magazines there is nothing to drain, and filling the heap
    // here would change what the later tests find of the PMM on the
    // small machines where magazines are off.
    if !magazines_on() {
        return Ok(());
    }
    on_all_cpus(|_| {
        for size in [EXHAUST, 200, 600] {
            let mut held: ArrayVec<usize, ROUNDS> = ArrayVec::new();
            while !held.is_full() {
                let pointer = heap::kmalloc(size);
                kassert!(!pointer.is_null());
                held.push(pointer.expose_provenance());
            }
            for address in held {
                kassert_eq!(
                    heap::kfree(ptr::with_exposed_provenance_mut(address)),
                    Ok(())
                );
            }
        }
        Ok(())
    })?;
    let before = heap::stats();
    let cached = heap::cached_slots();
    kprintln!("    {cached} slots sit in CPU magazines before the exhaustion");
    kassert!(
        cached >= 2 * ROUNDS * smp::online(),
        "magazines were not filled"
    );
    // A chain through the objects themselves: word 0 the previous one,
    // word 1 its own address inverted.
    let mut head = 0usize;
    let mut count = 0usize;
    loop {
        let pointer = heap::kmalloc(EXHAUST);
        if pointer.is_null() {
            break;
        }
        let words = pointer.cast::<usize>();
        // SAFETY: a fresh block of 64 bytes, ours.
        unsafe {
            words.write(head);
            words.add(1).write(!pointer.expose_provenance());
        }
        head = pointer.expose_provenance();
        count += 1;
    }
    let full = heap::stats();
    let left = heap::cached_slots();
    kprintln!(
        "    {count} objects of {EXHAUST} B until kmalloc returned null; mapped {} KiB, {left} slots left in magazines",
        full.mapped >> 10
    );
    kprintln!(
        "    then: used {} KiB, free {} KiB (in slab slots {} KiB), overhead {} KiB, largest free block {} B",
        full.used >> 10,
        full.free >> 10,
        full.slab_free >> 10,
        full.overhead >> 10,
        heap::largest_free_block()
    );
    let checked = (|| {
        kassert_eq!(left, 0);
        kassert_eq!(full.failed_allocations, before.failed_allocations + 1);
        kassert_eq!(full.mapped, HEAP_MAX_SIZE as usize);
        Ok(())
    })();
    // Freed also when a check failed: a test that kept the whole heap
    // would fail every later one.
    while head != 0 {
        let pointer = ptr::with_exposed_provenance_mut::<usize>(head);
        // SAFETY: `head` is an object this test allocated and chained.
        let (next, check) = unsafe { (pointer.read(), pointer.add(1).read()) };
        kassert_eq!(check, !head);
        kassert_eq!(heap::kfree(pointer.cast()), Ok(()));
        head = next;
    }
    checked?;
    let after = heap::stats();
    kassert_eq!(after.used, before.used);
    kassert_eq!(after.live_allocations, before.live_allocations);
    kassert_eq!(heap::verify(), Ok(()));
    // The heap gives its 16 MiB back once the caches pinning its end
    // (a spare slab page, recent slots, magazines) are emptied.
    heap::drain_magazines();
    let drained = heap::stats();
    kprintln!(
        "    mapped {} KiB after the frees and a drain",
        drained.mapped >> 10
    );
    kassert!(
        drained.mapped < HEAP_MAX_SIZE as usize / 2,
        "the heap kept its memory"
    );
    Ok(())
}
