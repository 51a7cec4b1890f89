//! The shell's commands.

use arrayvec::ArrayVec;
use x86_64::{PhysAddr, VirtAddr};

use super::frame_runs::FrameRuns;
use super::physmap::{PhysMap, PhysicalMemory};
use crate::arch::x86_64::cpu;
use crate::boot::BootInfo;
use crate::kernel_mm::{heap, pmm, slab, vmm};
use crate::units::{parse_number, ExactSize, HumanSize};
use crate::{kprintln, ktest, report};
use mm::layout::PAGE_SIZE;
use mm::pmm::{PhysRange, Reservation, MAX_RANGES, MAX_RESERVATIONS};

const HELP: &[(&str, &str)] = &[
    ("help", "this list"),
    ("meminfo", "PMM, VMM, heap and object-cache statistics"),
    (
        "slabinfo",
        "every object cache: object size, objects in use/total, slabs, pages",
    ),
    ("mmap", "the firmware memory map"),
    (
        "walk <vaddr>",
        "each page-table level's entry for an address",
    ),
    ("maps [start [end]]", "present mappings, merged into runs"),
    ("alloc <size>", "kmalloc(size), prints the address"),
    ("free <addr>", "kfree(addr), errors shown"),
    (
        "frames <n>",
        "allocate n frames, list them as runs, free them",
    ),
    (
        "physmap",
        "physical memory as a map: free, used, reserved, kernel, modules",
    ),
    ("cpus", "every CPU: APIC id, work IPIs, shootdowns served"),
    (
        "run <program> [arg]",
        "a user program: hello, touch <size>, read <addr>, exec-data, write-code, spin <n>",
    ),
    ("test [filter]", "run the in-kernel test suite"),
    ("bench", "in-kernel micro-benchmarks (TSC cycles)"),
    (
        "reboot",
        "reset the machine; QEMU started with -no-reboot (make run, cargo run) exits instead",
    ),
    ("shutdown", "power off (exits QEMU)"),
];

fn usage(command: &str) {
    match HELP
        .iter()
        .find(|(name, _)| name.split(' ').next() == Some(command))
    {
        Some((name, what)) => kprintln!("usage: {name}  ({what})"),
        None => kprintln!("unknown command {command:?}; type 'help'"),
    }
}

/// Runs one command line.
pub fn execute(line: &str, info: &BootInfo<'_>) {
    let mut words = line.split_ascii_whitespace();
    let Some(command) = words.next() else {
        return;
    };
    let args: [Option<&str>; 3] = [words.next(), words.next(), words.next()];
    let number = |index: usize| args[index].map(parse_number);
    match (command, args) {
        ("help", _) => {
            for (name, what) in HELP {
                kprintln!("  {name:<20} {what}");
            }
        }
        ("meminfo", [None, ..]) => meminfo(),
        ("slabinfo", [None, ..]) => slabinfo(),
        ("mmap", [None, ..]) => report::memory_map(info),
        ("walk", [Some(_), None, _]) => match number(0).flatten() {
            Some(address) => match mm::checked_virt(address) {
                Ok(virt) => match vmm::walk(virt) {
                    Some(walk) => crate::kprint!("{walk}"),
                    None => kprintln!("the VMM is not running"),
                },
                Err(_) => {
                    kprintln!("walk {address:#018x}: not canonical (bits 48-63 must copy bit 47)")
                }
            },
            None => usage(command),
        },
        ("maps", [_, _, None]) => {
            let start = number(0).unwrap_or(Some(0));
            let end = number(1).unwrap_or(Some(u64::MAX));
            // `[start, end)` as typed; canonical bounds for the walk.
            let bounds = start
                .zip(end)
                .filter(|(start, end)| start < end)
                .map(|(start, end)| {
                    (
                        VirtAddr::new_truncate(start),
                        VirtAddr::new_truncate(end - 1),
                    )
                });
            match bounds {
                Some((first, last)) => {
                    let mut runs = 0;
                    vmm::mappings(first, last, |run| {
                        runs += 1;
                        kprintln!("  {run}");
                    });
                    kprintln!("{runs} runs");
                }
                None => usage(command),
            }
        }
        ("alloc", [Some(_), None, _]) => match number(0).flatten() {
            Some(size) => {
                let pointer = heap::kmalloc(size as usize);
                if pointer.is_null() {
                    kprintln!(
                        "kmalloc({size}) failed: heap exhausted ({} used of {} mapped, cap {})",
                        HumanSize(heap::used() as u64),
                        HumanSize(heap::stats().mapped as u64),
                        HumanSize(mm::layout::HEAP_MAX_SIZE)
                    );
                } else {
                    kprintln!("kmalloc({size}) = {pointer:p}");
                }
            }
            None => usage(command),
        },
        ("free", [Some(_), None, _]) => match number(0).flatten() {
            Some(address) => match heap::kfree(address as *mut u8) {
                Ok(()) => kprintln!("kfree({address:#x}) ok"),
                Err(error) => kprintln!("kfree({address:#x}) failed: {error}"),
            },
            None => usage(command),
        },
        ("frames", [Some(_), None, _]) => match number(0).flatten() {
            Some(count) if count > 0 && count <= 1 << 20 => frames(count),
            _ => usage(command),
        },
        ("physmap", [None, ..]) => physmap(info),
        ("cpus", [None, ..]) => cpus(),
        ("run", [Some(program), _, None]) => match number(1) {
            Some(None) => usage(command),
            arg => run_program(program, arg.flatten()),
        },
        ("test", [_, None, _]) => {
            let context = ktest::Context { boot_info: info };
            ktest::run_suite(&context, args[0]);
        }
        ("bench", [None, ..]) => bench(),
        ("reboot", [None, ..]) => reboot(),
        ("shutdown", [None, ..]) => shutdown(),
        (known, _)
            if HELP
                .iter()
                .any(|(name, _)| name.split(' ').next() == Some(known)) =>
        {
            usage(known)
        }
        (unknown, _) => usage(unknown),
    }
}

fn meminfo() {
    let frames = pmm::stats();
    let size = |frames: u64| HumanSize(frames * PAGE_SIZE);
    kprintln!(
        "PMM:  {} frames total ({}), {} free ({}), {} used ({}), {} reserved ({})",
        frames.total,
        size(frames.total),
        frames.free,
        size(frames.free),
        frames.used,
        size(frames.used),
        frames.reserved,
        size(frames.reserved)
    );
    if let Some(run) = pmm::with(|p| p.largest_free_run()) {
        kprintln!("      largest free run {run} frames ({})", size(run));
    }
    crate::report::numa_nodes();
    kprintln!(
        "      {} frames in per-CPU caches (counted free); the heap gave back {} pages since boot",
        crate::kernel_mm::frame_cache::cached_frames(),
        heap::pages_released()
    );
    let tables = vmm::table_count() as u64;
    kprintln!(
        "VMM:  PML4 at {:#x}, {tables} page tables ({})",
        vmm::current_cr3().start_address().as_u64(),
        size(tables)
    );
    let stats = heap::stats();
    let largest = heap::largest_free_block();
    // Of the free blocks (slab slots are counted apart). A free block may
    // hold pages the heap gave back, which `free` leaves out: the largest
    // block can then be larger than the mapped free bytes.
    let fragmentation = (largest * 100)
        .checked_div(stats.free - stats.slab_free)
        .map_or(0, |share| 100usize.saturating_sub(share));
    let exact = |bytes: usize| ExactSize(bytes as u64);
    kprintln!(
        "heap: {} mapped, {} used, {} free, peak {}; {} live / {} total allocations, {} failed",
        exact(stats.mapped),
        exact(stats.used),
        exact(stats.free),
        exact(stats.peak_used),
        stats.live_allocations,
        stats.total_allocations,
        stats.failed_allocations
    );
    kprintln!(
        "      of the free bytes {} are slab slots; {} overhead (slab slack, heap ends)",
        HumanSize(stats.slab_free as u64),
        HumanSize(stats.overhead as u64)
    );
    kprintln!(
        "      largest free block {} (given-back pages in it included), fragmentation {fragmentation}%, verify: {}",
        HumanSize(largest as u64),
        match heap::verify() {
            Ok(()) => "ok",
            Err(problem) => problem,
        }
    );
    let (ops, locked) = heap::magazine_stats();
    let (reclaims, reclaimed) = crate::kernel_mm::reclaim::stats();
    if heap::magazines_on() {
        kprintln!(
            "      magazines: {ops} requests and frees, {locked} took the heap lock (hit rate {}%), {} slots cached; {reclaims} reclaims gave back {reclaimed} pages",
            (ops.saturating_sub(locked) * 100).checked_div(ops).unwrap_or(100),
            heap::cached_slots()
        );
    } else {
        kprintln!(
            "      magazines: off (too little memory for their state bytes); {reclaims} reclaims gave back {reclaimed} pages"
        );
    }
    let spaces = crate::user::space::stats();
    kprintln!(
        "user: {} alive ({} since boot), {} resident ({}); faults: {} demand-zero, {} copied, {} taken over; {} ended by the kernel",
        Counted(spaces.live as usize, "address space"),
        spaces.created,
        Counted(spaces.resident as usize, "page"),
        HumanSize(spaces.resident * PAGE_SIZE),
        spaces.demand_zero,
        spaces.cow_copied,
        spaces.cow_taken,
        Counted(crate::user::fault::killed() as usize, "program")
    );
    let caches = slab::totals();
    kprintln!(
        "slab: {}, {} of {} objects in use ({}), {} in magazines, {} in {} ({})",
        Counted(caches.caches, "cache"),
        caches.in_use,
        caches.total,
        HumanSize(caches.bytes_in_use as u64),
        caches.in_magazines,
        Counted(caches.slabs, "slab"),
        Counted(caches.pages, "page"),
        HumanSize(caches.pages as u64 * PAGE_SIZE)
    );
}

/// Loads the probe program and runs one of its behaviours.
fn run_program(name: &str, arg: Option<u64>) {
    use crate::user::programs::{self, probe};
    use mm::layout::USER_START;
    let scratch = USER_START + 0x1_0000_0000;
    // The data address is the image's; 0 stands for it until it is loaded.
    let args = match (name, arg) {
        ("hello", None) => [probe::HELLO, 0, 0],
        ("touch", Some(size)) => [probe::TOUCH, scratch, size.next_multiple_of(PAGE_SIZE)],
        ("read", Some(address)) => [probe::READ, address, 0],
        ("exec-data", None) => [probe::CALL, 0, 0],
        ("write-code", None) => [probe::WRITE_CODE, 0, 0],
        ("spin", Some(count)) => [probe::SPIN, count, 0],
        _ => return usage("run"),
    };
    let program = match programs::load(programs::probe_image()) {
        Ok(program) => program,
        Err(error) => {
            kprintln!("run: cannot load the program: {error}");
            return;
        }
    };
    let mut args = args;
    if name == "exec-data" {
        args[1] = program.data().as_u64();
    }
    let before = crate::user::space::stats();
    let exit = program.run(args);
    let after = crate::user::space::stats();
    kprintln!(
        "program {exit}; {} resident, {} filled on demand",
        Counted(program.space.resident_pages() as usize, "page"),
        after.demand_zero - before.demand_zero
    );
}

/// A count and its noun, plural unless it is 1: "1 slab", "3 slabs".
struct Counted(usize, &'static str);

impl core::fmt::Display for Counted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let plural = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} {}{plural}", self.0, self.1)
    }
}

/// One line per object cache, then the totals. "cached" counts the free
/// objects waiting in the CPUs' magazines, "hit" the share of allocations
/// and frees a magazine served without the cache's lock.
fn slabinfo() {
    kprintln!(
        "{:<16} {:>5} {:>5} {:>13} {:>6} {:>5} {:>4} {:>5} {:>8} {:>8} {:>4} {:>4} {:>4}",
        "cache",
        "size",
        "align",
        "in use/total",
        "cached",
        "slabs",
        "slab",
        "pages",
        "allocs",
        "frees",
        "hit",
        "fail",
        "bad"
    );
    slab::for_each(|info| {
        let stats = &info.stats;
        let mut ratio = arrayvec::ArrayString::<24>::new();
        let _ = core::fmt::write(&mut ratio, format_args!("{}/{}", stats.in_use, stats.total));
        let mut hit = arrayvec::ArrayString::<8>::new();
        let _ = match stats.magazine_hit_percent() {
            Some(percent) => core::fmt::write(&mut hit, format_args!("{percent}%")),
            None => core::fmt::write(&mut hit, format_args!("-")),
        };
        kprintln!(
            "{:<16} {:>5} {:>5} {:>13} {:>6} {:>5} {:>3}K {:>5} {:>8} {:>8} {:>4} {:>4} {:>4}",
            info.name.as_str(),
            stats.object_size,
            stats.align,
            ratio.as_str(),
            stats.in_magazines,
            stats.slabs,
            (PAGE_SIZE >> 10) << stats.slab_order,
            stats.pages(),
            stats.allocations,
            stats.frees,
            hit.as_str(),
            stats.failed,
            stats.refused_frees
        );
    });
    let totals = slab::totals();
    kprintln!(
        "{} (of {}): {} of {} objects in use, {}, {} ({})",
        Counted(totals.caches, "cache"),
        slab::MAX_CACHES,
        totals.in_use,
        totals.total,
        Counted(totals.slabs, "slab"),
        Counted(totals.pages, "page"),
        HumanSize(totals.pages as u64 * PAGE_SIZE)
    );
}

fn frames(count: u64) {
    let before = pmm::stats();
    let mut runs = FrameRuns::new();
    let mut got = 0;
    // Chain the frames through their first word so they can be freed.
    let mut head = 0u64;
    while got < count {
        let Some(frame) = pmm::alloc_page() else {
            kprintln!("out of frames after {got}");
            break;
        };
        let address = frame.start_address();
        runs.add(address.as_u64());
        // SAFETY: the frame is ours until freed below; direct-mapped.
        unsafe { *crate::kernel_mm::phys_to_virt(address).as_mut_ptr::<u64>() = head };
        head = address.as_u64();
        got += 1;
    }
    if got > 0 {
        let count = runs.count();
        kprintln!(
            "allocated {got} frame{} ({}) in {count} run{}:",
            if got == 1 { "" } else { "s" },
            HumanSize(got * PAGE_SIZE),
            if count == 1 { "" } else { "s" }
        );
        crate::kprint!("{runs}");
    }
    while head != 0 {
        let address = PhysAddr::new(head);
        // SAFETY: written above for each frame we own.
        head = unsafe { *crate::kernel_mm::phys_to_virt(address).as_ptr::<u64>() };
        let _ = pmm::free_page(address);
    }
    let after = pmm::stats();
    kprintln!(
        "freed them again: {} free before, {} after{}",
        before.free,
        after.free,
        if before == after { "" } else { " (MISMATCH)" }
    );
}

/// Draws physical memory: the firmware map and the PMM's ranges and
/// reservations as they stand, the free frames counted by a sweep.
fn cpus() {
    use crate::arch::x86_64::smp;
    let (shootdowns, shootdown_ipis) = smp::shootdown_counts();
    kprintln!(
        "{} CPUs online; {} work IPIs sent, {} shootdowns reached other CPUs ({} IPIs)",
        smp::online(),
        smp::ipis_sent(),
        shootdowns,
        shootdown_ipis
    );
    for index in 0..smp::MAX_CPUS {
        let Some(cpu) = smp::cpu(index) else {
            continue;
        };
        kprintln!(
            "  CPU {index}: APIC id {}, {} work IPIs received, {} shootdowns served",
            cpu.apic_id(),
            cpu.ipis_received
                .load(core::sync::atomic::Ordering::Relaxed),
            cpu.shootdowns_served
                .load(core::sync::atomic::Ordering::Relaxed)
        );
    }
}

fn physmap(info: &BootInfo<'_>) {
    let layout = pmm::with(|pmm| {
        let managed: ArrayVec<PhysRange, MAX_RANGES> = pmm.usable().iter().copied().collect();
        let reservations: ArrayVec<Reservation, MAX_RESERVATIONS> =
            pmm.reservations().copied().collect();
        (managed, reservations)
    });
    let Some((managed, reservations)) = layout else {
        kprintln!("physmap: the PMM is not running");
        return;
    };
    let mut map = PhysMap::new(PhysicalMemory {
        regions: info.memory_map(),
        managed: &managed,
        reservations: &reservations,
    });
    match pmm::free_runs(|run| map.add_free(run)) {
        Some(_) => crate::kprint!("{map}"),
        None => kprintln!("physmap: the PMM is not running"),
    }
}

/// Cycles per operation of `op`, the median of 5 batches.
fn cycles_per_op(mut op: impl FnMut()) -> u64 {
    let mut samples = [0u64; 5];
    for sample in &mut samples {
        let start = cpu::rdtsc();
        for _ in 0..1000 {
            op();
        }
        *sample = (cpu::rdtsc() - start) / 1000;
    }
    samples.sort_unstable();
    samples[2]
}

fn bench() {
    kprintln!(
        "TSC cycles per operation (median of 5 x 1000; under QEMU TCG only ratios mean anything):"
    );
    let pmm_pair = cycles_per_op(|| {
        if let Some(frame) = pmm::alloc_page() {
            let _ = pmm::free_page(frame.start_address());
        }
    });
    kprintln!("  PMM alloc+free frame    {pmm_pair:>8}");
    let frame = pmm::alloc_page();
    let vmm_pair = cycles_per_op(|| {
        if let Some(frame) = frame {
            let virt = VirtAddr::new(0x0000_6000_0000_0000);
            let phys = frame.start_address();
            // SAFETY: the frame was allocated for this benchmark alone and
            // is mapped read-only, NX, in an unused lower-half window, then
            // unmapped; nothing refers to the page.
            unsafe {
                if vmm::map(virt, phys, mm::paging::PageSize::Size4KiB, mm::paging::NX).is_ok() {
                    let _ = vmm::unmap(virt);
                }
            }
        }
    });
    if let Some(frame) = frame {
        let _ = pmm::free_page(frame.start_address());
    }
    kprintln!("  VMM map+unmap 4 KiB     {vmm_pair:>8}");
    let heap_pair = cycles_per_op(|| {
        let pointer = heap::kmalloc(core::hint::black_box(64));
        let _ = heap::kfree(pointer);
    });
    kprintln!("  kmalloc+kfree 64 B      {heap_pair:>8}");
    // An object cache's pair (its first call takes a slab from the PMM,
    // kept afterwards as the cache's reserve).
    static BENCH_OBJECTS: slab::ObjectCache<[u64; 8]> = slab::ObjectCache::new("bench-64");
    let mut refused = 0u32;
    let cache_pair = cycles_per_op(
        || match BENCH_OBJECTS.alloc(core::hint::black_box([0; 8])) {
            Ok(object) => drop(core::hint::black_box(object)),
            Err(_) => refused += 1,
        },
    );
    if refused > 0 {
        kprintln!("  cache alloc+free 64 B    out of memory ({refused} of 5000 refused)");
    } else {
        kprintln!("  cache alloc+free 64 B   {cache_pair:>8}");
    }
    // Rust's allocator interface (what Box::new calls), through its
    // fallible entry point: Box::new itself would take the kernel down on
    // a full heap.
    let layout = core::alloc::Layout::new::<[u8; 256]>();
    let mut refused = 0u32;
    let global = cycles_per_op(|| {
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc::alloc::alloc(core::hint::black_box(layout)) };
        if pointer.is_null() {
            refused += 1;
        } else {
            // SAFETY: allocated just above with this layout, freed once.
            unsafe { alloc::alloc::dealloc(pointer, layout) };
        }
    });
    if refused > 0 {
        kprintln!("  alloc+dealloc 256 B      out of memory ({refused} of 5000 refused)");
    } else {
        kprintln!("  alloc+dealloc 256 B     {global:>8}");
    }
}

fn reboot() -> ! {
    if cpu::features().hypervisor {
        // What the scripts start: QEMU with -no-reboot turns a reset into
        // its exit; other virtual machines restart.
        kprintln!("rebooting (a QEMU started with -no-reboot exits instead)...");
    } else {
        kprintln!("rebooting...");
    }
    let mut port = x86_64::instructions::port::Port::<u8>::new(0x64);
    // SAFETY: 0xFE on the 8042 command port pulses the CPU reset line.
    unsafe { port.write(0xFE) };
    // If the controller did not reset us, a triple fault will.
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::zero(),
    };
    // SAFETY: loading an empty IDT and trapping is the intended reset.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    cpu::halt_forever()
}

fn shutdown() -> ! {
    kprintln!("shutting down...");
    crate::firmware::shut_down()
}
