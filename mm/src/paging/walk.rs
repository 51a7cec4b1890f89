//! Debug views of a page-table tree: the walk of one address through each
//! level, and the present mappings of a range merged into runs.
#![forbid(unsafe_code)]

use core::fmt;

use x86_64::structures::paging::{PageTableFlags, PhysFrame};

use super::flags::{describe, HUGE, PRESENT};
use super::mapper::{index, is_canonical, Mapper, PageSize, PhysMem};

/// One level of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT.
    pub level: usize,
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
    pub virt: u64,
    steps: [Option<Step>; 4],
    /// Physical address it translates to, if mapped.
    pub phys: Option<u64>,
    /// Page size of the leaf, if mapped.
    pub size: Option<PageSize>,
}

impl Walk {
    /// The levels visited, PML4 first.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().flatten()
    }
}

const LEVEL_NAMES: [&str; 5] = ["", "PT", "PD", "PDPT", "PML4"];

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "walk {:#018x}:", self.virt)?;
        if !is_canonical(self.virt) {
            return writeln!(f, "  not canonical (bits 48-63 must copy bit 47)");
        }
        for step in self.steps() {
            let name = LEVEL_NAMES[step.level];
            write!(f, "  {name:<4}[{:>3}] = {:#018x}  ", step.index, step.raw)?;
            if !step.flags.contains(PRESENT) {
                writeln!(f, "not present")?;
            } else if step.level == 1 || step.flags.contains(HUGE) {
                let size = match step.level {
                    3 => "1 GiB",
                    2 => "2 MiB",
                    _ => "4 KiB",
                };
                writeln!(f, "{}  -> {size} page", describe(step.flags))?;
            } else {
                writeln!(f, "{}  -> table", describe(step.flags))?;
            }
        }
        match self.phys {
            Some(phys) => writeln!(f, "  => physical {phys:#x}"),
            None => writeln!(f, "  => not mapped"),
        }
    }
}

/// A run of mappings: contiguous virtual and physical pages of one size
/// with the same flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First virtual address.
    pub virt: u64,
    /// First physical address.
    pub phys: u64,
    /// Bytes covered.
    pub len: u64,
    /// Page size of every page in the run.
    pub size: PageSize,
    /// Leaf flags (accessed/dirty ignored when merging).
    pub flags: PageTableFlags,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = match self.size {
            PageSize::Size4KiB => "4K",
            PageSize::Size2MiB => "2M",
            PageSize::Size1GiB => "1G",
        };
        write!(
            f,
            "{:#018x}-{:#018x} -> {:#014x}  {:>4} x {}  {}",
            self.virt,
            self.virt.wrapping_add(self.len),
            self.phys,
            self.len / self.size.bytes(),
            size,
            describe(self.flags)
        )
    }
}

/// Sign-extends a 48-bit address.
const fn canonical(virt: u64) -> u64 {
    if virt & (1 << 47) != 0 {
        virt | 0xFFFF_0000_0000_0000
    } else {
        virt & 0x0000_FFFF_FFFF_FFFF
    }
}

impl<M: PhysMem> Mapper<M> {
    /// Walks `virt` through every level.
    pub fn walk(&self, virt: u64) -> Walk {
        let mut walk = Walk {
            virt,
            steps: [None; 4],
            phys: None,
            size: None,
        };
        if !is_canonical(virt) {
            return walk;
        }
        let mut frame = self.pml4();
        for level in (1..=4).rev() {
            let entry = &self.table_ref(frame)[index(virt, level)];
            let flags = entry.flags();
            walk.steps[4 - level] = Some(Step {
                level,
                index: index(virt, level),
                raw: entry.addr().as_u64() | flags.bits(),
                flags,
            });
            if !flags.contains(PRESENT) {
                break;
            }
            if level == 1 || flags.contains(HUGE) {
                let size = match level {
                    3 => PageSize::Size1GiB,
                    2 => PageSize::Size2MiB,
                    _ => PageSize::Size4KiB,
                };
                walk.size = Some(size);
                walk.phys = Some(entry.addr().as_u64() + virt % size.bytes());
                break;
            }
            frame = PhysFrame::containing_address(entry.addr());
        }
        walk
    }

    /// Calls `visit` with the present mappings that start in
    /// `[start, end)`, in address order, merged into runs.
    pub fn mappings(&self, start: u64, end: u64, mut visit: impl FnMut(Run)) {
        let mut current: Option<Run> = None;
        self.visit_leaves(self.pml4(), 4, 0, start, end, &mut |run| {
            let ignore = PageTableFlags::ACCESSED | PageTableFlags::DIRTY;
            match current.as_mut() {
                Some(open)
                    if open.size == run.size
                        && open.flags & !ignore == run.flags & !ignore
                        && open.virt.wrapping_add(open.len) == run.virt
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

    fn visit_leaves(
        &self,
        frame: PhysFrame,
        level: usize,
        base: u64,
        start: u64,
        end: u64,
        visit: &mut impl FnMut(Run),
    ) {
        let span = 1u64 << (12 + 9 * (level - 1));
        for (slot, entry) in self.table_ref(frame).iter().enumerate() {
            let virt = canonical(base + slot as u64 * span);
            let flags = entry.flags();
            // Skip entries whose whole span lies outside [start, end).
            if !flags.contains(PRESENT) || virt.wrapping_add(span - 1) < start || virt >= end {
                continue;
            }
            if level == 1 || flags.contains(HUGE) {
                visit(Run {
                    virt,
                    phys: entry.addr().as_u64(),
                    len: span,
                    size: match level {
                        3 => PageSize::Size1GiB,
                        2 => PageSize::Size2MiB,
                        _ => PageSize::Size4KiB,
                    },
                    flags,
                });
            } else {
                let child = PhysFrame::containing_address(entry.addr());
                self.visit_leaves(
                    child,
                    level - 1,
                    virt & 0x0000_FFFF_FFFF_FFFF,
                    start,
                    end,
                    visit,
                );
            }
        }
    }
}
