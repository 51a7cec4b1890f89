//! In-kernel tests of the per-CPU frame caches on every CPU at once:
//! frames handed between CPUs and freed where they were not allocated,
//! and exhaustion that collects every other CPU's cache, so every frame
//! of the machine is handed out exactly once.

use core::ptr;

use arrayvec::ArrayVec;
use x86_64::PhysAddr;

use super::smp_tests::{on_all_cpus, LockStep};
use super::{Context, Expect, Test, TestResult};
use crate::arch::x86_64::smp;
use crate::kernel_mm::{frame_cache, phys_to_virt, pmm};
use crate::sync::IrqMutex;
use crate::{kassert, kassert_eq, kprintln};

/// The frame-cache tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "frames::cpus_free_each_others_frames_through_their_caches",
        run: cpus_free_each_others_frames,
        expects: Expect::NOTHING,
    },
    Test {
        name: "frames::exhaustion_collects_every_cpus_cache",
        run: exhaustion_collects_every_cache,
        expects: Expect::NOTHING,
    },
];

/// Frames each CPU passes on per round.
const PER_CPU: usize = 16;
/// Rounds of the exchange.
const ROUNDS: usize = 20;
/// Each CPU's frames of the current round, freed by the next CPU.
static SLOTS: [IrqMutex<ArrayVec<u64, PER_CPU>>; smp::MAX_CPUS] =
    [const { IrqMutex::new(ArrayVec::new_const()) }; smp::MAX_CPUS];
/// The rounds' barrier.
static STEPS: LockStep = LockStep::new();

/// Every CPU allocates frames and stamps them with its number; after all
/// have, each frees the frames of the next CPU (checking the stamps: a
/// frame handed out twice would carry the wrong one); then the next
/// round. So every frame is freed by a CPU that did not allocate it (with
/// more than one CPU), into that CPU's cache. At the end the counters are
/// as before.
fn cpus_free_each_others_frames(_: &Context<'_>) -> TestResult {
    let before = pmm::stats();
    for slot in &SLOTS {
        slot.lock().clear();
    }
    STEPS.reset();
    let result = on_all_cpus(exchange_rounds);
    for slot in &SLOTS {
        while let Some(address) = slot.lock().pop() {
            let _ = pmm::free_page(PhysAddr::new(address));
        }
    }
    result?;
    kprintln!(
        "    {} CPUs, {} frames freed by another CPU, {} frames in caches now",
        smp::online(),
        STEPS.crossed(),
        frame_cache::cached_frames()
    );
    STEPS.check_all_crossed(ROUNDS, PER_CPU)?;
    kassert_eq!(pmm::stats(), before);
    Ok(())
}

fn exchange_rounds(index: usize) -> TestResult {
    let next = (index + 1) % smp::online();
    let fill = |round: usize| {
        for _ in 0..PER_CPU {
            let frame = pmm::alloc_page();
            kassert!(frame.is_some(), "no frame");
            let address = frame.map_or(0, |f| f.start_address().as_u64());
            let word = phys_to_virt(PhysAddr::new(address)).as_mut_ptr::<u64>();
            // SAFETY: the frame is ours until freed, direct-mapped.
            unsafe { ptr::write_volatile(word, stamp(index, address, round as u64)) };
            let pushed = SLOTS[index].lock().try_push(address).is_ok();
            kassert!(pushed, "slot full");
        }
        Ok(())
    };
    let drain = |round: usize| {
        while let Some(address) = SLOTS[next].lock().pop() {
            let word = phys_to_virt(PhysAddr::new(address)).as_ptr::<u64>();
            // SAFETY: the slot held the frame: nobody else has it.
            let seen = unsafe { ptr::read_volatile(word) };
            kassert_eq!(seen, stamp(next, address, round as u64));
            STEPS.handed(next, index);
            kassert_eq!(pmm::free_page(PhysAddr::new(address)), Ok(()));
        }
        Ok(())
    };
    STEPS.run(ROUNDS, fill, drain)
}

fn stamp(cpu: usize, address: u64, round: u64) -> u64 {
    (cpu as u64) << 48 | (address >> 12) << 4 | round
}

/// Fills every CPU's cache, then allocates on this CPU until nothing is
/// left: the count must be every free frame (the other caches collected
/// on the way), each frame once; then all come back.
fn exhaustion_collects_every_cache(_: &Context<'_>) -> TestResult {
    on_all_cpus(|_| {
        let mut held: ArrayVec<u64, PER_CPU> = ArrayVec::new();
        while let (false, Some(frame)) = (held.is_full(), pmm::alloc_page()) {
            held.push(frame.start_address().as_u64());
        }
        for address in held {
            kassert_eq!(pmm::free_page(PhysAddr::new(address)), Ok(()));
        }
        Ok(())
    })?;
    let initial = pmm::stats();
    let cached = frame_cache::cached_frames();
    kprintln!(
        "    {} frames sit in CPU caches before the exhaustion",
        cached
    );
    kassert!(
        smp::online() == 1 || cached > 0,
        "no frames cached on any CPU"
    );
    let mut head = 0u64;
    let mut count = 0u64;
    while let Some(frame) = pmm::alloc_page() {
        let address = frame.start_address();
        let words = phys_to_virt(address).as_mut_ptr::<u64>();
        // SAFETY: the frame is RAM we own until freed, direct-mapped.
        unsafe {
            ptr::write_volatile(words, head);
            ptr::write_volatile(words.add(1), !address.as_u64());
        }
        head = address.as_u64();
        count += 1;
    }
    kassert_eq!(count, initial.free);
    kassert_eq!(frame_cache::cached_frames(), 0);
    kassert_eq!(pmm::stats().free, 0);
    while head != 0 {
        let address = PhysAddr::new(head);
        let words = phys_to_virt(address).as_ptr::<u64>();
        // SAFETY: `head` is a frame this test allocated and chained.
        let (next, check) =
            unsafe { (ptr::read_volatile(words), ptr::read_volatile(words.add(1))) };
        kassert_eq!(check, !head);
        kassert_eq!(pmm::free_page(address), Ok(()));
        head = next;
    }
    kassert_eq!(pmm::stats(), initial);
    Ok(())
}
