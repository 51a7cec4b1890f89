//! The original design's page-table flag names, as `PageTableFlags`.
#![forbid(unsafe_code)]

use x86_64::structures::paging::PageTableFlags;

/// The entry is valid.
pub const PRESENT: PageTableFlags = PageTableFlags::PRESENT;
/// Writes allowed (with CR0.WP, also for the kernel).
pub const WRITABLE: PageTableFlags = PageTableFlags::WRITABLE;
/// Ring 3 may access it.
pub const USER: PageTableFlags = PageTableFlags::USER_ACCESSIBLE;
/// Write-through caching.
pub const WRITETHROUGH: PageTableFlags = PageTableFlags::WRITE_THROUGH;
/// Caching disabled.
pub const NOCACHE: PageTableFlags = PageTableFlags::NO_CACHE;
/// Set by the CPU on access.
pub const ACCESSED: PageTableFlags = PageTableFlags::ACCESSED;
/// Set by the CPU on write.
pub const DIRTY: PageTableFlags = PageTableFlags::DIRTY;
/// A 2 MiB (PD) or 1 GiB (PDPT) page rather than a table pointer.
pub const HUGE: PageTableFlags = PageTableFlags::HUGE_PAGE;
/// Kept in the TLB across CR3 loads (with CR4.PGE).
pub const GLOBAL: PageTableFlags = PageTableFlags::GLOBAL;
/// Instruction fetches fault (with EFER.NXE).
pub const NX: PageTableFlags = PageTableFlags::NO_EXECUTE;

// The hardware bit of each flag (Intel SDM Vol. 3, 4.5).
const _: () = assert!(PRESENT.bits() == 1 << 0);
const _: () = assert!(WRITABLE.bits() == 1 << 1);
const _: () = assert!(USER.bits() == 1 << 2);
const _: () = assert!(WRITETHROUGH.bits() == 1 << 3);
const _: () = assert!(NOCACHE.bits() == 1 << 4);
const _: () = assert!(ACCESSED.bits() == 1 << 5);
const _: () = assert!(DIRTY.bits() == 1 << 6);
const _: () = assert!(HUGE.bits() == 1 << 7);
const _: () = assert!(GLOBAL.bits() == 1 << 8);
const _: () = assert!(NX.bits() == 1 << 63);

/// Short flag names for dumps, e.g. `P W NX`.
pub fn describe(flags: PageTableFlags) -> impl core::fmt::Display {
    struct Names(PageTableFlags);
    impl core::fmt::Display for Names {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let names = [
                (PRESENT, "P"),
                (WRITABLE, "W"),
                (USER, "U"),
                (WRITETHROUGH, "WT"),
                (NOCACHE, "NC"),
                (ACCESSED, "A"),
                (DIRTY, "D"),
                (HUGE, "PS"),
                (GLOBAL, "G"),
                (NX, "NX"),
            ];
            let mut first = true;
            for (flag, name) in names {
                if self.0.contains(flag) {
                    if !first {
                        f.write_str(" ")?;
                    }
                    f.write_str(name)?;
                    first = false;
                }
            }
            Ok(())
        }
    }
    Names(flags)
}
