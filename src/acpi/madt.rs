//! The MADT ("APIC"): the local APIC address, every processor's local
//! APIC (or x2APIC) with its enabled and online-capable flags, the I/O
//! APICs and the ISA interrupt overrides.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::sdt::{sub_entries, u16_at, u32_at, u64_at, Signature, SubEntry, Table, HEADER_LEN};
use super::AcpiError;

/// Bytes of the MADT's fixed fields after the header.
const FIXED: usize = 8;

/// Entry types read here, with the least length each needs.
mod entry {
    pub const LOCAL_APIC: (u8, u8) = (0, 8);
    pub const IO_APIC: (u8, u8) = (1, 12);
    pub const SOURCE_OVERRIDE: (u8, u8) = (2, 10);
    pub const LOCAL_APIC_NMI: (u8, u8) = (4, 6);
    pub const ADDRESS_OVERRIDE: (u8, u8) = (5, 12);
    pub const LOCAL_X2APIC: (u8, u8) = (9, 16);
}

/// Local APIC flag: the processor is usable.
const ENABLED: u32 = 1 << 0;
/// Local APIC flag: the processor is disabled but may be brought online.
const ONLINE_CAPABLE: u32 = 1 << 1;

/// One processor's local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalApic {
    /// ACPI processor UID.
    pub processor_uid: u32,
    /// Its APIC id (8 bits for an xAPIC entry, 32 for x2APIC).
    pub apic_id: u32,
    /// The firmware says it can be started.
    pub enabled: bool,
    /// Disabled, but may be hot-added later (ACPI 6.3+).
    pub online_capable: bool,
    /// It came from an x2APIC entry.
    pub x2apic: bool,
}

/// One I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its id.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// An ISA interrupt routed to another global system interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    /// The ISA IRQ.
    pub source: u8,
    /// Where it goes.
    pub gsi: u32,
    /// Polarity and trigger mode (MPS INTI flags).
    pub flags: u16,
}

/// What the MADT says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    /// Physical address of the MADT.
    pub address: u64,
    /// Physical address of every local APIC's registers (after any
    /// address override entry).
    pub local_apic_address: u64,
    /// The machine also has dual 8259 PICs (to be masked).
    pub pc_at_compatible: bool,
    /// Every processor entry, in the table's order.
    pub processors: Vec<LocalApic>,
    /// Every I/O APIC.
    pub io_apics: Vec<IoApic>,
    /// Every interrupt source override.
    pub overrides: Vec<SourceOverride>,
    /// Local APIC NMI entries seen.
    pub nmi_entries: usize,
    /// Entries of types not read here (skipped by their length).
    pub other_entries: usize,
}

impl Madt {
    /// Parses the MADT `table` found at `address`.
    pub fn parse(table: &Table, address: u64) -> Result<Self, AcpiError> {
        let body = table.body();
        let too_short = AcpiError::TooShort {
            signature: Signature::MADT,
            len: table.header.length,
            needed: (HEADER_LEN + FIXED) as u32,
        };
        let local_apic_address = u32_at(body, 0).ok_or(too_short)?;
        let flags = u32_at(body, 4).ok_or(too_short)?;
        let mut madt = Madt {
            address,
            local_apic_address: u64::from(local_apic_address),
            pc_at_compatible: flags & 1 != 0,
            ..Madt::default()
        };
        for entry in sub_entries(body, FIXED, Signature::MADT) {
            let SubEntry {
                kind,
                len,
                bytes: entry,
                bad,
                ..
            } = entry?;
            let needs = |(_, least): (u8, u8)| if len < least { Err(bad) } else { Ok(()) };
            match kind {
                k if k == entry::LOCAL_APIC.0 => {
                    needs(entry::LOCAL_APIC)?;
                    let flags = u32_at(entry, 4).ok_or(bad)?;
                    madt.processors.push(LocalApic {
                        processor_uid: u32::from(entry[2]),
                        apic_id: u32::from(entry[3]),
                        enabled: flags & ENABLED != 0,
                        online_capable: flags & ONLINE_CAPABLE != 0,
                        x2apic: false,
                    });
                }
                k if k == entry::LOCAL_X2APIC.0 => {
                    needs(entry::LOCAL_X2APIC)?;
                    let flags = u32_at(entry, 8).ok_or(bad)?;
                    madt.processors.push(LocalApic {
                        processor_uid: u32_at(entry, 12).ok_or(bad)?,
                        apic_id: u32_at(entry, 4).ok_or(bad)?,
                        enabled: flags & ENABLED != 0,
                        online_capable: flags & ONLINE_CAPABLE != 0,
                        x2apic: true,
                    });
                }
                k if k == entry::IO_APIC.0 => {
                    needs(entry::IO_APIC)?;
                    madt.io_apics.push(IoApic {
                        id: entry[2],
                        address: u32_at(entry, 4).ok_or(bad)?,
                        gsi_base: u32_at(entry, 8).ok_or(bad)?,
                    });
                }
                k if k == entry::SOURCE_OVERRIDE.0 => {
                    needs(entry::SOURCE_OVERRIDE)?;
                    madt.overrides.push(SourceOverride {
                        source: entry[3],
                        gsi: u32_at(entry, 4).ok_or(bad)?,
                        flags: u16_at(entry, 8).ok_or(bad)?,
                    });
                }
                k if k == entry::LOCAL_APIC_NMI.0 => {
                    needs(entry::LOCAL_APIC_NMI)?;
                    madt.nmi_entries += 1;
                }
                k if k == entry::ADDRESS_OVERRIDE.0 => {
                    needs(entry::ADDRESS_OVERRIDE)?;
                    madt.local_apic_address = u64_at(entry, 4).ok_or(bad)?;
                }
                _ => madt.other_entries += 1,
            }
        }
        Ok(madt)
    }

    /// The processors the firmware marks usable.
    pub fn enabled_processors(&self) -> impl Iterator<Item = &LocalApic> {
        self.processors.iter().filter(|cpu| cpu.enabled)
    }
}
