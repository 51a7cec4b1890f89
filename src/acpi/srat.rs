//! The SRAT (System Resource Affinity Table): the proximity domain of
//! each processor (by APIC id) and of each physical memory range.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use mm::pmm::PhysRange;

use super::sdt::{sub_entries, u32_at, u64_at, Signature, SubEntry, Table, HEADER_LEN};
use super::AcpiError;

/// Bytes of the SRAT's fixed fields after the header (a reserved word
/// that must be 1, then 8 reserved bytes).
const FIXED: usize = 12;

/// Entry types read here, with the least length each needs.
mod entry {
    pub const LOCAL_APIC: (u8, u8) = (0, 16);
    pub const MEMORY: (u8, u8) = (1, 40);
    pub const LOCAL_X2APIC: (u8, u8) = (2, 24);
}

/// Flag of every entry type read here: the entry is in use (else it is
/// ignored).
const ENABLED: u32 = 1 << 0;
/// Memory flag: the range may be hot-added or removed.
const HOT_PLUGGABLE: u32 = 1 << 1;
/// Memory flag: the range is non-volatile.
const NON_VOLATILE: u32 = 1 << 2;

/// The last SRAT revision (ACPI 2.0's) with 8-bit proximity domains: the
/// bytes that later widened them are reserved there. QEMU writes
/// revision 1.
const LAST_NARROW_REVISION: u8 = 1;

/// An enabled processor entry: an APIC id in a proximity domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessorAffinity {
    /// Its proximity domain.
    pub domain: u32,
    /// Its APIC id (8 bits for a local APIC entry, 32 for x2APIC).
    pub apic_id: u32,
    /// It came from an x2APIC entry.
    pub x2apic: bool,
}

/// An enabled memory entry of non-zero length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAffinity {
    /// Its proximity domain.
    pub domain: u32,
    /// The physical range.
    pub range: PhysRange,
    /// The range may be hot-added or removed: it need not hold RAM now
    /// (the memory map says what is there).
    pub hot_pluggable: bool,
    /// The range is non-volatile memory.
    pub non_volatile: bool,
}

/// What the SRAT says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Srat {
    /// Physical address of the SRAT.
    pub address: u64,
    /// Its revision (1: 8-bit domains only).
    pub revision: u8,
    /// Every enabled processor entry, in the table's order.
    pub processors: Vec<ProcessorAffinity>,
    /// Every enabled memory entry of non-zero length, in the table's order.
    pub memory: Vec<MemoryAffinity>,
    /// Entries of the types above that were ignored: enabled flag clear
    /// (QEMU pads with such memory entries), or memory of length 0.
    pub ignored_entries: usize,
    /// Entries of types not read here (skipped by their length).
    pub other_entries: usize,
}

impl Srat {
    /// Parses the SRAT `table` found at `address`.
    pub fn parse(table: &Table, address: u64) -> Result<Self, AcpiError> {
        let body = table.body();
        if body.len() < FIXED {
            return Err(AcpiError::TooShort {
                signature: Signature::SRAT,
                len: table.header.length,
                needed: (HEADER_LEN + FIXED) as u32,
            });
        }
        let revision = table.header.revision;
        let narrow = revision <= LAST_NARROW_REVISION;
        let mut srat = Srat {
            address,
            revision,
            ..Srat::default()
        };
        for entry in sub_entries(body, FIXED, Signature::SRAT) {
            let SubEntry {
                kind,
                len,
                bytes: entry,
                offset,
                bad,
            } = entry?;
            let needs = |(_, least): (u8, u8)| if len < least { Err(bad) } else { Ok(()) };
            match kind {
                k if k == entry::LOCAL_APIC.0 => {
                    needs(entry::LOCAL_APIC)?;
                    let flags = u32_at(entry, 4).ok_or(bad)?;
                    let low = u32::from(entry[2]);
                    let high = if narrow {
                        0
                    } else {
                        u32::from_le_bytes([entry[9], entry[10], entry[11], 0])
                    };
                    srat.processor(flags, low | high << 8, u32::from(entry[3]), false);
                }
                k if k == entry::LOCAL_X2APIC.0 => {
                    needs(entry::LOCAL_X2APIC)?;
                    let domain = u32_at(entry, 4).ok_or(bad)?;
                    let apic_id = u32_at(entry, 8).ok_or(bad)?;
                    let flags = u32_at(entry, 12).ok_or(bad)?;
                    srat.processor(flags, domain, apic_id, true);
                }
                k if k == entry::MEMORY.0 => {
                    needs(entry::MEMORY)?;
                    let domain = u32_at(entry, 2).ok_or(bad)?;
                    let base = u64_at(entry, 8).ok_or(bad)?;
                    let length = u64_at(entry, 16).ok_or(bad)?;
                    let flags = u32_at(entry, 28).ok_or(bad)?;
                    if flags & ENABLED == 0 || length == 0 {
                        srat.ignored_entries += 1;
                    } else {
                        let end = base.checked_add(length).ok_or(AcpiError::BadMemoryRange {
                            offset: HEADER_LEN + offset,
                            base,
                            length,
                        })?;
                        srat.memory.push(MemoryAffinity {
                            domain: if narrow { domain & 0xFF } else { domain },
                            range: PhysRange { start: base, end },
                            hot_pluggable: flags & HOT_PLUGGABLE != 0,
                            non_volatile: flags & NON_VOLATILE != 0,
                        });
                    }
                }
                _ => srat.other_entries += 1,
            }
        }
        Ok(srat)
    }

    /// Records a processor entry, or counts it as ignored if not enabled.
    fn processor(&mut self, flags: u32, domain: u32, apic_id: u32, x2apic: bool) {
        if flags & ENABLED == 0 {
            self.ignored_entries += 1;
        } else {
            self.processors.push(ProcessorAffinity {
                domain,
                apic_id,
                x2apic,
            });
        }
    }
}
