//! `physmap`: physical memory as a map of characters, one cell per N MiB,
//! 64 cells a row, N the smallest power of two that keeps the map within
//! 16 rows. Each cell shows what most of its bytes are; the kernel image
//! and the boot modules, small but worth finding, show wherever they are.
//!
//! ```text
//! 0x00000000 |RKK#############################............................|
//! 0x04000000 |................................................................|
//! .=free #=used R=reserved/firmware K=kernel M=modules ' '=no RAM; cell=1 MiB, row=64 MiB
//! ```
//!
//! What is where comes from the firmware memory map, the PMM's usable
//! ranges and its reservations ([`PhysicalMemory`]); which frames are free
//! is counted into a [`PhysMap`] by the caller (the kernel takes it from
//! the PMM). The rest of the PMM's frames are used.
#![forbid(unsafe_code)]

use core::fmt;

use crate::boot::{MemoryKind, MemoryRegion};
use crate::units::HumanSize;
use mm::layout::PAGE_SIZE;
use mm::pmm::allocator::outward_to_pages;
use mm::pmm::{PhysRange, Reservation, ReservationKind};

/// Cells in a row of the map.
pub const ROW_CELLS: usize = 64;
/// Most rows the map takes.
pub const MAX_ROWS: usize = 16;
/// Most cells the map has.
pub const MAX_CELLS: usize = ROW_CELLS * MAX_ROWS;
/// The smallest cell.
const MIB: u64 = 1 << 20;

/// What a cell shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Frames the PMM can hand out.
    Free,
    /// Frames the PMM handed out.
    Used,
    /// Firmware-reserved memory, RAM the PMM does not manage (below 4 MiB,
    /// past `pmm.max`), and the PMM's reservations other than the two below.
    Reserved,
    /// The kernel image.
    Kernel,
    /// Boot modules.
    Module,
    /// Nothing in the memory map: no RAM, no device the firmware names.
    Absent,
}

impl Class {
    /// Every class, in the legend's order.
    pub const ALL: [Class; 6] = [
        Class::Free,
        Class::Used,
        Class::Reserved,
        Class::Kernel,
        Class::Module,
        Class::Absent,
    ];

    /// The character the map draws.
    pub const fn symbol(self) -> char {
        match self {
            Class::Free => '.',
            Class::Used => '#',
            Class::Reserved => 'R',
            Class::Kernel => 'K',
            Class::Module => 'M',
            Class::Absent => ' ',
        }
    }

    /// What the legend says it is.
    pub const fn meaning(self) -> &'static str {
        match self {
            Class::Free => "free",
            Class::Used => "used",
            Class::Reserved => "reserved/firmware",
            Class::Kernel => "kernel",
            Class::Module => "modules",
            Class::Absent => "no RAM",
        }
    }
}

/// The bytes of one cell in each class (the rest of the cell is absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellCounts {
    /// Free frames.
    pub free: u64,
    /// Frames the PMM manages that are not free.
    pub used: u64,
    /// Reserved or firmware memory.
    pub reserved: u64,
    /// The kernel image.
    pub kernel: u64,
    /// Boot modules.
    pub module: u64,
}

impl CellCounts {
    /// What the cell shows: the kernel image or a module if any of it lies
    /// here; otherwise the class with the most bytes (ties: used, then
    /// reserved, then free); absent if the cell holds nothing at all.
    pub fn class(&self) -> Class {
        if self.kernel > 0 {
            return Class::Kernel;
        }
        if self.module > 0 {
            return Class::Module;
        }
        let mut shown = (0, Class::Absent);
        for candidate in [
            (self.used, Class::Used),
            (self.reserved, Class::Reserved),
            (self.free, Class::Free),
        ] {
            if candidate.0 > shown.0 {
                shown = candidate;
            }
        }
        shown.1
    }
}

/// The map's geometry: cells of a power-of-two number of MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    cell_size: u64,
    cells: usize,
}

impl Grid {
    /// The finest grid of at most [`MAX_CELLS`] cells, each at least 1 MiB,
    /// that reaches `top` (exclusive).
    pub fn covering(top: u64) -> Self {
        let mut cell_size = MIB;
        while top.div_ceil(cell_size) > MAX_CELLS as u64 {
            cell_size *= 2;
        }
        Self {
            cell_size,
            cells: top.div_ceil(cell_size) as usize,
        }
    }

    /// Bytes per cell.
    pub fn cell_size(&self) -> u64 {
        self.cell_size
    }

    /// How many cells.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// The bytes cell `index` stands for.
    pub fn cell(&self, index: usize) -> PhysRange {
        PhysRange::from_len(index as u64 * self.cell_size, self.cell_size)
    }

    /// The cells a range touches.
    fn cells_of(&self, range: PhysRange) -> core::ops::Range<usize> {
        if range.is_empty() {
            return 0..0;
        }
        let first = range.start / self.cell_size;
        let last = (range.end - 1) / self.cell_size;
        let clamp = |cell: u64| cell.min(self.cells as u64) as usize;
        clamp(first)..clamp(last + 1)
    }
}

/// What the firmware and the PMM say about physical memory, besides
/// which frames are free.
#[derive(Clone, Copy, Debug)]
pub struct PhysicalMemory<'a> {
    /// The firmware memory map.
    pub regions: &'a [MemoryRegion],
    /// The PMM's usable ranges (what it manages).
    pub managed: &'a [PhysRange],
    /// The PMM's reservations (applied rounded outward to whole pages).
    pub reservations: &'a [Reservation],
}

/// What a byte is before the free frames are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kernel,
    Module,
    Reserved,
    /// Managed by the PMM and reserved by nothing: free or used.
    Allocatable,
    Absent,
}

impl PhysicalMemory<'_> {
    /// The end of the highest available RAM: where the map stops.
    pub fn top(&self) -> u64 {
        self.regions
            .iter()
            .filter(|region| region.kind == MemoryKind::Available)
            .map(|region| region.range().end)
            .max()
            .unwrap_or(0)
    }

    /// Every range that decides what a byte is.
    fn boundaries(&self) -> impl Iterator<Item = PhysRange> + '_ {
        let reservations = self
            .reservations
            .iter()
            .map(|reservation| outward_to_pages(reservation.range));
        let regions = self.regions.iter().map(MemoryRegion::range);
        reservations
            .chain(self.managed.iter().copied())
            .chain(regions)
    }

    /// What the byte at `address` is.
    fn kind_at(&self, address: u64) -> Kind {
        let mut kind = None;
        for reservation in self.reservations {
            if outward_to_pages(reservation.range).contains(address) {
                kind = match (kind, reservation.kind) {
                    (_, ReservationKind::KernelImage) => Some(Kind::Kernel),
                    (Some(Kind::Kernel), _) => kind,
                    (_, ReservationKind::BootModule) => Some(Kind::Module),
                    (Some(Kind::Module), _) => kind,
                    _ => Some(Kind::Reserved),
                };
            }
        }
        if let Some(kind) = kind {
            return kind;
        }
        if self.managed.iter().any(|range| range.contains(address)) {
            return Kind::Allocatable;
        }
        if self
            .regions
            .iter()
            .any(|region| region.range().contains(address))
        {
            return Kind::Reserved;
        }
        Kind::Absent
    }

    /// The bytes of `cell` in each class, `free` of them counted free.
    pub fn counts(&self, cell: PhysRange, free: u64) -> CellCounts {
        let mut counts = CellCounts::default();
        let mut allocatable = 0;
        let mut address = cell.start;
        while address < cell.end {
            // Up to the next place where any range starts or ends.
            let next = self
                .boundaries()
                .flat_map(|range| [range.start, range.end])
                .filter(|&boundary| boundary > address)
                .fold(cell.end, u64::min);
            let bytes = next - address;
            match self.kind_at(address) {
                Kind::Kernel => counts.kernel += bytes,
                Kind::Module => counts.module += bytes,
                Kind::Reserved => counts.reserved += bytes,
                Kind::Allocatable => allocatable += bytes,
                Kind::Absent => {}
            }
            address = next;
        }
        counts.free = free.min(allocatable);
        counts.used = allocatable - counts.free;
        counts
    }
}

/// The map being built: the geometry, and the free frames of each cell.
pub struct PhysMap<'a> {
    memory: PhysicalMemory<'a>,
    grid: Grid,
    /// Free frames per cell.
    free: [u32; MAX_CELLS],
}

impl<'a> PhysMap<'a> {
    /// A map of `memory` up to its top, no frame counted free yet.
    pub fn new(memory: PhysicalMemory<'a>) -> Self {
        Self {
            grid: Grid::covering(memory.top()),
            memory,
            free: [0; MAX_CELLS],
        }
    }

    /// The geometry.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Counts the frames of `run` as free.
    pub fn add_free(&mut self, run: PhysRange) {
        for index in self.grid.cells_of(run) {
            let frames = run.intersect(&self.grid.cell(index)).len() / PAGE_SIZE;
            self.free[index] = self.free[index].saturating_add(frames as u32);
        }
    }

    /// The bytes of cell `index` in each class.
    pub fn counts(&self, index: usize) -> CellCounts {
        let free = u64::from(self.free[index]) * PAGE_SIZE;
        self.memory.counts(self.grid.cell(index), free)
    }
}

impl fmt::Display for PhysMap<'_> {
    /// The rows, each after its first address, then the legend.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grid = self.grid;
        if grid.cells == 0 {
            return writeln!(f, "no available RAM in the memory map");
        }
        let end = grid.cells as u64 * grid.cell_size;
        let digits = (end - 1).checked_ilog(16).unwrap_or(0) as usize + 1;
        let width = digits.max(8) + 2;
        for row in (0..grid.cells).step_by(ROW_CELLS) {
            let start = grid.cell(row).start;
            write!(f, "{start:#0width$x} |")?;
            for index in row..(row + ROW_CELLS).min(grid.cells) {
                write!(f, "{}", self.counts(index).class().symbol())?;
            }
            writeln!(f, "|")?;
        }
        for (index, class) in Class::ALL.into_iter().enumerate() {
            let separator = if index == 0 { "" } else { " " };
            match class.symbol() {
                ' ' => write!(f, "{separator}' '={}", class.meaning())?,
                symbol => write!(f, "{separator}{symbol}={}", class.meaning())?,
            }
        }
        writeln!(
            f,
            "; cell={}, row={}",
            HumanSize(grid.cell_size),
            HumanSize(grid.cell_size * ROW_CELLS as u64)
        )
    }
}

#[cfg(test)]
mod tests;
