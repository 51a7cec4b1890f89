//! Page-table benchmark over host memory standing in for RAM: map+unmap of
//! one 4 KiB page with its tables present, and mapping 64 MiB with 4 KiB
//! versus 2 MiB pages, side by side in one run.
//!
//! Run with `make bench` or `cargo host-bench --bench paging`.

use std::hint::black_box;
use std::time::Instant;

use mm::paging::{PageSize, NX, WRITABLE};
use mm::testing::FakeRam;
use x86_64::{PhysAddr, VirtAddr};

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    println!("paging benchmark: host memory as fake RAM, one run (medians of 7)");
    let flags = WRITABLE | NX;

    // map+unmap of one 4 KiB page; a neighbour keeps the tables alive.
    let pair = median(
        (0..7)
            .map(|_| {
                let mut ram = FakeRam::new(64);
                // SAFETY: `ram` outlives the mapper (both die with this
                // closure).
                let mut mapper = unsafe { ram.mapper(true) };
                let virt = VirtAddr::new(0x4000_0000_0000);
                // SAFETY: the tree lives in fake RAM and is loaded on no CPU,
                // so no mapping aliases anything and no TLB holds a
                // translation (the same holds for every unsafe block below).
                unsafe {
                    mapper
                        .map(
                            virt + 4096u64,
                            PhysAddr::new(0x1000),
                            PageSize::Size4KiB,
                            flags,
                            &mut ram,
                        )
                        .unwrap()
                        .ignore();
                }
                let rounds = 1_000_000;
                let start = Instant::now();
                for round in 0..rounds {
                    let phys = PhysAddr::new((round % 1024) * 4096);
                    // SAFETY: as above.
                    unsafe {
                        mapper
                            .map(black_box(virt), phys, PageSize::Size4KiB, flags, &mut ram)
                            .unwrap()
                            .ignore();
                        mapper.unmap(black_box(virt), &mut ram).unwrap().2.ignore();
                    }
                }
                start.elapsed().as_nanos() as f64 / rounds as f64
            })
            .collect(),
    );
    println!("map+unmap one 4 KiB page (tables present): {pair:.1} ns per pair");

    // 64 MiB with each page size.
    let len = 64u64 << 20;
    let mut results = Vec::new();
    for (name, small_only) in [("4 KiB pages", true), ("2 MiB pages", false)] {
        let mut tables = 0;
        let time = median(
            (0..7)
                .map(|_| {
                    let mut ram = FakeRam::new(128);

                    // SAFETY: `ram` outlives the mapper (both die with this
                    // closure).
                    let mut mapper = unsafe { ram.mapper(true) };
                    let virt = VirtAddr::new(0x4000_0000_0000);
                    let start = Instant::now();
                    // SAFETY: fake RAM, loaded on no CPU (see above).
                    unsafe {
                        mapper
                            .map_range(virt, PhysAddr::zero(), len, flags, small_only, &mut ram)
                            .unwrap()
                            .ignore();
                    }
                    let elapsed = start.elapsed().as_nanos() as f64 / 1000.0;
                    tables = ram.used();
                    let (_, flush) = mapper.unmap_range(virt, len, &mut ram).unwrap();
                    // SAFETY: as above.
                    unsafe { flush.ignore() };
                    assert_eq!(ram.used(), 0);
                    elapsed
                })
                .collect(),
        );
        println!("map 64 MiB with {name}: {time:.1} us, {tables} page-table frames");
        results.push(time);
    }
    println!(
        "2 MiB pages map 64 MiB {:.0}x faster than 4 KiB pages",
        results[0] / results[1]
    );
}
