//! Page-table benchmark over host memory standing in for RAM: map+unmap of
//! one 4 KiB page with its tables present, and mapping 64 MiB with 4 KiB
//! versus 2 MiB pages, side by side in one run.
//!
//! Run with `make bench` or `cargo host-bench --bench paging`. Progress
//! goes to stderr, tables to stdout, every figure to
//! `build/bench/paging.csv` (`support`).

use std::hint::black_box;
use std::time::Instant;

mod support;
use support::{median, Report, Row};

use mm::paging::{PageSize, NX, WRITABLE};
use mm::testing::FakeRam;
use x86_64::{PhysAddr, VirtAddr};

fn main() {
    println!("paging benchmark: host memory as fake RAM, one run (medians of 7)");
    let flags = WRITABLE | NX;
    let mut report = Report::new("paging", 3);

    report.step("map-unmap-4k", "7 runs of 1,000,000 pairs");

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
    report.record(Row::mean("map-unmap-4k", "this-mapper", "ns/pair", pair));
    report.table(
        "map-unmap-4k",
        "map+unmap of one 4 KiB page, its tables present (a neighbour keeps them)",
        "mapper",
    );

    // 64 MiB with each page size.
    let len = 64u64 << 20;
    let mut results = Vec::new();
    for (name, small_only) in [("4k-pages", true), ("2m-pages", false)] {
        report.step("map-64m", format_args!("{name}, 7 runs"));
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
        results.push((name, time, tables));
    }
    // The 2 MiB pages are the baseline: the ratio reads "4 KiB pages take
    // 280x as long".
    let large = results[1].1;
    for (name, time, tables) in results {
        let row = Row::new("map-64m", name, "time", "us", time);
        report.record(if name == "2m-pages" {
            row.baseline()
        } else {
            row.against("2m-pages", time / large)
        });
        report.record(Row::new(
            "map-64m",
            name,
            "page-table-frames",
            "frames",
            tables as f64,
        ));
    }
    report.table(
        "map-64m",
        "map 64 MiB with one page size, then unmap it (the map alone timed)",
        "page size",
    );
    report.finish();
}
