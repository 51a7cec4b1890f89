//! The map's geometry, the per-cell classes, and whole maps of small
//! made-up machines.

use super::*;

const KIB: u64 = 1 << 10;

fn region(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion {
        start,
        len: end - start,
        kind,
    }
}

fn range(start: u64, end: u64) -> PhysRange {
    PhysRange { start, end }
}

fn reservation(start: u64, end: u64, kind: ReservationKind) -> Reservation {
    Reservation {
        range: range(start, end),
        kind,
    }
}

/// A PC-like layout: low RAM with the EBDA and the BIOS area above it,
/// RAM from 1 MiB to `top`, the kernel at 1 MiB, the PMM from 2 MiB.
fn regions(top: u64) -> [MemoryRegion; 3] {
    [
        region(0, 0x9_FC00, MemoryKind::Available),
        region(0xF_0000, 0x10_0000, MemoryKind::Reserved),
        region(0x10_0000, top, MemoryKind::Available),
    ]
}

#[test]
fn cell_classes_from_counts() {
    let counts = |free, used, reserved, kernel, module| CellCounts {
        free,
        used,
        reserved,
        kernel,
        module,
    };
    assert_eq!(counts(0, 0, 0, 0, 0).class(), Class::Absent);
    assert_eq!(counts(10, 1, 1, 4096, 0).class(), Class::Kernel);
    assert_eq!(counts(10, 1, 1, 0, 4096).class(), Class::Module);
    assert_eq!(counts(10, 1, 1, 4096, 4096).class(), Class::Kernel);
    assert_eq!(counts(10, 11, 1, 0, 0).class(), Class::Used);
    assert_eq!(counts(10, 1, 11, 0, 0).class(), Class::Reserved);
    assert_eq!(counts(10, 9, 9, 0, 0).class(), Class::Free);
    // Ties: used, then reserved, then free.
    assert_eq!(counts(5, 5, 5, 0, 0).class(), Class::Used);
    assert_eq!(counts(5, 0, 5, 0, 0).class(), Class::Reserved);
    assert_eq!(counts(1, 0, 0, 0, 0).class(), Class::Free);
}

#[test]
fn the_grid_fits_in_sixteen_rows() {
    let grid = Grid::covering(256 * MIB);
    assert_eq!((grid.cell_size(), grid.cells()), (MIB, 256));
    let grid = Grid::covering(1024 * MIB);
    assert_eq!((grid.cell_size(), grid.cells()), (MIB, MAX_CELLS));
    let grid = Grid::covering(1024 * MIB + 1);
    assert_eq!((grid.cell_size(), grid.cells()), (2 * MIB, 513));
    let grid = Grid::covering(12 << 30);
    assert_eq!((grid.cell_size(), grid.cells()), (16 * MIB, 768));
    let grid = Grid::covering(1 << 46);
    assert_eq!(grid.cells(), MAX_CELLS);
    // Less than a cell still gets one; nothing gets none.
    assert_eq!(Grid::covering(640 * KIB).cells(), 1);
    assert_eq!(Grid::covering(0).cells(), 0);
    assert_eq!(Grid::covering(3 * MIB).cell(2), range(2 * MIB, 3 * MIB));
}

#[test]
fn the_top_is_the_end_of_the_highest_ram() {
    let mut map = regions(48 * MIB).to_vec();
    map.push(region(0xFFFC_0000, 0x1_0000_0000, MemoryKind::Reserved));
    let memory = PhysicalMemory {
        regions: &map,
        managed: &[],
        reservations: &[],
    };
    assert_eq!(memory.top(), 48 * MIB);
    let none = PhysicalMemory {
        regions: &[],
        managed: &[],
        reservations: &[],
    };
    assert_eq!(none.top(), 0);
}

#[test]
fn counts_split_a_cell_by_what_each_byte_is() {
    let map = regions(8 * MIB);
    let managed = [range(2 * MIB, 8 * MIB)];
    let reservations = [
        // The kernel, 1 MiB to 2.5 MiB, unaligned at its end.
        reservation(MIB, 2 * MIB + 512 * KIB - 100, ReservationKind::KernelImage),
        reservation(3 * MIB, 3 * MIB + 8 * KIB, ReservationKind::PmmBitmap),
        reservation(4 * MIB, 4 * MIB + 320 * KIB, ReservationKind::BootModule),
    ];
    let memory = PhysicalMemory {
        regions: &map,
        managed: &managed,
        reservations: &reservations,
    };
    // Low memory: RAM the PMM leaves alone and the BIOS area are reserved,
    // the hole between them is absent.
    assert_eq!(
        memory.counts(range(0, MIB), 0),
        CellCounts {
            reserved: 0x9_FC00 + 0x1_0000,
            ..CellCounts::default()
        }
    );
    assert_eq!(
        memory.counts(range(2 * MIB, 3 * MIB), 0),
        CellCounts {
            kernel: 512 * KIB,
            used: 512 * KIB,
            ..CellCounts::default()
        }
    );
    assert_eq!(
        memory.counts(range(3 * MIB, 4 * MIB), 100 * PAGE_SIZE),
        CellCounts {
            reserved: 8 * KIB,
            free: 100 * PAGE_SIZE,
            used: MIB - 8 * KIB - 100 * PAGE_SIZE,
            ..CellCounts::default()
        }
    );
    assert_eq!(
        memory.counts(range(4 * MIB, 5 * MIB), MIB).module,
        320 * KIB
    );
    assert_eq!(
        memory.counts(range(4 * MIB, 5 * MIB), MIB).free,
        MIB - 320 * KIB
    );
    // Past the top: nothing.
    assert_eq!(
        memory.counts(range(8 * MIB, 9 * MIB), 0),
        CellCounts::default()
    );
}

#[test]
fn free_runs_are_spread_over_the_cells_they_cross() {
    let map = regions(8 * MIB);
    let managed = [range(2 * MIB, 8 * MIB)];
    let memory = PhysicalMemory {
        regions: &map,
        managed: &managed,
        reservations: &[],
    };
    let mut physmap = PhysMap::new(memory);
    physmap.add_free(range(3 * MIB - 3 * PAGE_SIZE, 5 * MIB + PAGE_SIZE));
    assert_eq!(physmap.counts(2).free, 3 * PAGE_SIZE);
    assert_eq!(physmap.counts(3).free, MIB);
    assert_eq!(physmap.counts(4).free, MIB);
    assert_eq!(physmap.counts(5).free, PAGE_SIZE);
    assert_eq!(physmap.counts(6).free, 0);
    // Past the map: ignored, not a crash.
    physmap.add_free(range(7 * MIB, 12 * MIB));
    assert_eq!(physmap.counts(7).free, MIB);
}

#[test]
fn draws_a_small_machine() {
    let map = regions(24 * MIB);
    let managed = [range(2 * MIB, 24 * MIB)];
    let reservations = [
        reservation(MIB, 2 * MIB + 4 * KIB, ReservationKind::KernelImage),
        reservation(9 * MIB, 9 * MIB + 4 * KIB, ReservationKind::BootModule),
    ];
    let memory = PhysicalMemory {
        regions: &map,
        managed: &managed,
        reservations: &reservations,
    };
    let mut physmap = PhysMap::new(memory);
    physmap.add_free(range(6 * MIB, 24 * MIB));
    // Used up to a frame past 6.5 MiB: cell 6 is mostly used.
    let mut physmap_used = PhysMap::new(memory);
    physmap_used.add_free(range(6 * MIB + 512 * KIB + PAGE_SIZE, 24 * MIB));
    let legend = ".=free #=used R=reserved/firmware K=kernel M=modules ' '=no RAM; \
                  cell=1 MiB, row=64 MiB\n";
    assert_eq!(
        physmap.to_string(),
        format!("0x00000000 |RKK###...M..............|\n{legend}")
    );
    assert_eq!(
        physmap_used.to_string(),
        format!("0x00000000 |RKK####..M..............|\n{legend}")
    );
}

#[test]
fn rows_of_sixty_four_with_wide_addresses_when_needed() {
    let map = [
        region(0x10_0000, 0xC000_0000, MemoryKind::Available),
        region(0x1_0000_0000, 0x1_4000_0000, MemoryKind::Available),
    ];
    let managed = [
        range(0x20_0000, 0xC000_0000),
        range(0x1_0000_0000, 0x1_4000_0000),
    ];
    let memory = PhysicalMemory {
        regions: &map,
        managed: &managed,
        reservations: &[],
    };
    let mut physmap = PhysMap::new(memory);
    for run in managed {
        physmap.add_free(run);
    }
    let text = physmap.to_string();
    let lines: Vec<&str> = text.lines().collect();
    // 5 GiB in 8 MiB cells: 640 cells, 10 rows, then the legend.
    assert_eq!(physmap.grid().cell_size(), 8 * MIB);
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0], format!("0x000000000 |.{}|", ".".repeat(63)));
    // The PCI hole, 3 GiB to 4 GiB: blank cells.
    assert_eq!(lines[6], format!("0x0c0000000 |{}|", " ".repeat(64)));
    assert_eq!(lines[9], format!("0x120000000 |{}|", ".".repeat(64)));
    assert!(lines[10].ends_with("cell=8 MiB, row=512 MiB"));
    // Low memory (0..1 MiB) is absent here, and RAM 1-2 MiB reserved;
    // the first cell is mostly free.
    assert_eq!(physmap.counts(0).class(), Class::Free);
}

#[test]
fn no_ram_no_map() {
    let memory = PhysicalMemory {
        regions: &[],
        managed: &[],
        reservations: &[],
    };
    assert_eq!(
        PhysMap::new(memory).to_string(),
        "no available RAM in the memory map\n"
    );
}
