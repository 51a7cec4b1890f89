//! Debug views of a page-table tree: the walk of one address through each
//! level, and the present mappings of a range merged into runs.
#![forbid(unsafe_code)]

use core::fmt;

use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::flags::{describe, HUGE, PRESENT};
use super::mapper::{index, Mapper, PageSize, PhysMem};

/// One level of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The table's level (PML4 = `Four` .. PT = `One`).
    pub level: PageTableLevel,
    /// Index of the entry in its table.
    pub index: usize,
    /// The raw entry.
    pub raw: u64,
    /// Its flags.
    pub flags: PageTableFlags,
}

/// The walk of one virtual address from the PML4 to its leaf (or to the
/// first entry that is not present).
#[derive(Clone, Copy, Debug)]
pub struct Walk {
    /// The address walked.
    pub virt: VirtAddr,
    steps: [Option<Step>; 4],
    /// Physical address it translates to, if mapped.
    pub phys: Option<PhysAddr>,
    /// Page size of the leaf, if mapped.
    pub size: Option<PageSize>,
}

impl Walk {
    /// The levels visited, PML4 first.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().flatten()
    }
}

/// The usual name of a table of `level`.
pub const fn level_name(level: PageTableLevel) -> &'static str {
    match level {
        PageTableLevel::Four => "PML4",
        PageTableLevel::Three => "PDPT",
        PageTableLevel::Two => "PD",
        PageTableLevel::One => "PT",
    }
}

/// Whether an entry at `level` with `flags` maps a page (rather than
/// pointing to a table).
fn is_leaf(level: PageTableLevel, flags: PageTableFlags) -> bool {
    level == PageTableLevel::One || flags.contains(HUGE)
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "walk {:#018x}:", self.virt.as_u64())?;
        for step in self.steps() {
            let name = level_name(step.level);
            write!(f, "  {name:<4}[{:>3}] = {:#018x}  ", step.index, step.raw)?;
            if !step.flags.contains(PRESENT) {
                writeln!(f, "not present")?;
            } else if is_leaf(step.level, step.flags) {
                let size = PageSize::of_leaf(step.level).name();
                writeln!(f, "{}  -> {size} page", describe(step.flags))?;
            } else {
                writeln!(f, "{}  -> table", describe(step.flags))?;
            }
        }
        match self.phys {
            Some(phys) => writeln!(f, "  => physical {:#x}", phys.as_u64()),
            None => writeln!(f, "  => not mapped"),
        }
    }
}

/// A run of mappings: contiguous virtual and physical pages of one size
/// with the same flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First virtual address.
    pub virt: VirtAddr,
    /// First physical address.
    pub phys: PhysAddr,
    /// Bytes covered.
    pub len: u64,
    /// Page size of every page in the run.
    pub size: PageSize,
    /// Leaf flags (accessed/dirty ignored when merging).
    pub flags: PageTableFlags,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#018x}-{:#018x} -> {:#014x}  {:>4} x {}  {}",
            self.virt.as_u64(),
            self.virt.as_u64().wrapping_add(self.len),
            self.phys.as_u64(),
            self.len / self.size.bytes(),
            self.size.short_name(),
            describe(self.flags)
        )
    }
}

impl<M: PhysMem> Mapper<M> {
    /// Walks `virt` through every level.
    pub fn walk(&self, virt: VirtAddr) -> Walk {
        let mut walk = Walk {
            virt,
            steps: [None; 4],
            phys: None,
            size: None,
        };
        let mut frame = self.pml4();
        let mut level = PageTableLevel::Four;
        for slot in walk.steps.iter_mut() {
            let index = index(virt, level);
            let entry = &self.table(frame)[index];
            let flags = entry.flags();
            *slot = Some(Step {
                level,
                index,
                raw: entry.addr().as_u64() | flags.bits(),
                flags,
            });
            if !flags.contains(PRESENT) {
                break;
            }
            if is_leaf(level, flags) {
                let size = PageSize::of_leaf(level);
                walk.size = Some(size);
                walk.phys = Some(entry.addr() + virt.as_u64() % size.bytes());
                break;
            }
            let Some(lower) = level.next_lower_level() else {
                break;
            };
            frame = PhysFrame::containing_address(entry.addr());
            level = lower;
        }
        walk
    }

    /// Calls `visit` with the present mappings that overlap
    /// `[first, last]` (both inclusive, so a range can end at the top of
    /// the address space), in address order, merged into runs.
    pub fn mappings(&self, first: VirtAddr, last: VirtAddr, mut visit: impl FnMut(Run)) {
        let mut current: Option<Run> = None;
        let bounds = (first.as_u64(), last.as_u64());
        self.visit_leaves(self.pml4(), PageTableLevel::Four, 0, bounds, &mut |run| {
            let ignore = PageTableFlags::ACCESSED | PageTableFlags::DIRTY;
            match current.as_mut() {
                Some(open)
                    if open.size == run.size
                        && open.flags & !ignore == run.flags & !ignore
                        && open.virt.as_u64().wrapping_add(open.len) == run.virt.as_u64()
                        && open.phys + open.len == run.phys =>
                {
                    open.len += run.len;
                }
                _ => {
                    if let Some(done) = current.replace(run) {
                        visit(done);
                    }
                }
            }
        });
        if let Some(done) = current {
            visit(done);
        }
    }

    /// Visits the leaves below the table in `frame` (at `level`, covering
    /// the 48-bit addresses from `base`) that overlap `bounds`.
    fn visit_leaves(
        &self,
        frame: PhysFrame,
        level: PageTableLevel,
        base: u64,
        bounds: (u64, u64),
        visit: &mut impl FnMut(Run),
    ) {
        let span = level.entry_address_space_alignment();
        for (slot, entry) in self.table(frame).iter().enumerate() {
            let start = base + slot as u64 * span;
            let virt = VirtAddr::new_truncate(start);
            let flags = entry.flags();
            // Skip entries whose whole span lies outside the bounds.
            let (first, last) = bounds;
            if !flags.contains(PRESENT)
                || virt.as_u64().wrapping_add(span - 1) < first
                || virt.as_u64() > last
            {
                continue;
            }
            match level.next_lower_level() {
                Some(lower) if !is_leaf(level, flags) => {
                    let child = PhysFrame::containing_address(entry.addr());
                    self.visit_leaves(child, lower, start, bounds, visit);
                }
                _ => visit(Run {
                    virt,
                    phys: entry.addr(),
                    len: span,
                    size: PageSize::of_leaf(level),
                    flags,
                }),
            }
        }
    }
}
