//! ACPI tables: the RSDP, the RSDT/XSDT, the MADT (CPUs, I/O APICs,
//! interrupt overrides), the FADT (power-management registers), the
//! DSDT's `\_S5` sleep type and the NUMA topology of the SRAT and SLIT,
//! read from firmware memory and checked before use.
//!
//! Everything here is plain Rust over a [`PhysMemory`] that copies bytes
//! out of physical memory, so the same code runs in the kernel (over its
//! mappings) and in host tests (over table bytes captured from QEMU under
//! SeaBIOS and OVMF, `tests/fixtures/acpi/`, and over malformed tables).
//! Firmware tables are untrusted input: every length, checksum and entry
//! is checked, and a bad one is an [`AcpiError`] naming the table and
//! the offset, never a panic.
//!
//! The `acpi` crate (rust-osdev) was the first choice; its current
//! version (6.1.1) needs a nightly compiler (`#![feature(allocator_api)]`
//! unconditionally), so the few tables the kernel needs are parsed here.
#![forbid(unsafe_code)]

mod aml;
mod error;
mod fadt;
mod madt;
mod numa;
mod rsdp;
mod sdt;
mod slit;
mod srat;

use alloc::vec::Vec;

pub use aml::{find_s5, SleepType};
pub use error::AcpiError;
pub use fadt::{Fadt, Pm1Control};
pub use madt::{IoApic, LocalApic, Madt, SourceOverride};
pub use numa::{Node, Numa, MAX_NODES, REMOTE_DISTANCE};
pub use rsdp::{scan_for_rsdp, Rsdp, BIOS_AREA, EBDA_POINTER};
pub use sdt::{Signature, TableHeader};
pub use slit::{Slit, LOCAL_DISTANCE, UNREACHABLE};
pub use srat::{MemoryAffinity, ProcessorAffinity, Srat};

/// Copies bytes out of physical memory.
pub trait PhysMemory {
    /// Fills `buffer` with the bytes at physical `address`; an error if any
    /// of them cannot be read.
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), AcpiError>;
}

/// One table the RSDT/XSDT lists (header checked, checksum valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Its header.
    pub header: TableHeader,
    /// Its physical address.
    pub address: u64,
}

/// What the kernel learned from the ACPI tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acpi {
    /// The RSDP as found.
    pub rsdp: Rsdp,
    /// Every table the root table lists, in its order, plus the DSDT.
    pub tables: Vec<TableInfo>,
    /// Listed tables that could not be used, with why (bad checksum,
    /// unreadable, truncated): reported, skipped.
    pub rejected: Vec<(u64, AcpiError)>,
    /// The MADT, if there is one and it parsed.
    pub madt: Option<Madt>,
    /// The FADT, if there is one and it parsed.
    pub fadt: Option<Fadt>,
    /// The DSDT's `\_S5` (soft-off) sleep type, if found.
    pub s5: Option<SleepType>,
    /// Why the MADT, FADT, DSDT or `\_S5` is missing, when one is.
    pub problems: Vec<AcpiError>,
}

impl Acpi {
    /// Reads the tables the RSDP leads to. Fails only if the RSDP or the
    /// root table is unusable; a bad table below it is recorded in
    /// `rejected` or `problems` and the rest is still read.
    pub fn read(memory: &impl PhysMemory, rsdp: Rsdp) -> Result<Self, AcpiError> {
        let (root_address, entry_size) = rsdp.root_table();
        let root = sdt::read_table(memory, root_address)?;
        let expected = if entry_size == 8 {
            Signature::XSDT
        } else {
            Signature::RSDT
        };
        if root.header.signature != expected {
            return Err(AcpiError::WrongSignature {
                address: root_address,
                expected,
                found: root.header.signature,
            });
        }
        let mut acpi = Acpi {
            rsdp,
            tables: Vec::new(),
            rejected: Vec::new(),
            madt: None,
            fadt: None,
            s5: None,
            problems: Vec::new(),
        };
        acpi.tables.push(TableInfo {
            header: root.header,
            address: root_address,
        });
        let mut madt = None;
        let mut fadt = None;
        for address in sdt::entries(root.body(), entry_size) {
            match sdt::read_table(memory, address) {
                Ok(table) => {
                    acpi.tables.push(TableInfo {
                        header: table.header,
                        address,
                    });
                    if table.header.signature == Signature::MADT && madt.is_none() {
                        madt = Some(Madt::parse(&table, address));
                    } else if table.header.signature == Signature::FADT && fadt.is_none() {
                        fadt = Some(Fadt::parse(&table, address));
                    }
                }
                Err(error) => acpi.rejected.push((address, error)),
            }
        }
        match madt {
            Some(Ok(madt)) => acpi.madt = Some(madt),
            Some(Err(error)) => acpi.problems.push(error),
            None => acpi.problems.push(AcpiError::Missing(Signature::MADT)),
        }
        match fadt {
            Some(Ok(fadt)) => acpi.fadt = Some(fadt),
            Some(Err(error)) => acpi.problems.push(error),
            None => acpi.problems.push(AcpiError::Missing(Signature::FADT)),
        }
        if let Some(dsdt) = acpi.fadt.as_ref().map(|fadt| fadt.dsdt) {
            acpi.read_dsdt(memory, dsdt);
        }
        Ok(acpi)
    }

    fn read_dsdt(&mut self, memory: &impl PhysMemory, address: u64) {
        let table = match sdt::read_table(memory, address) {
            Ok(table) if table.header.signature == Signature::DSDT => table,
            Ok(table) => {
                self.problems.push(AcpiError::WrongSignature {
                    address,
                    expected: Signature::DSDT,
                    found: table.header.signature,
                });
                return;
            }
            Err(error) => {
                self.problems.push(error);
                return;
            }
        };
        self.tables.push(TableInfo {
            header: table.header,
            address,
        });
        match find_s5(table.body()) {
            Ok(s5) => self.s5 = Some(s5),
            Err(error) => self.problems.push(error),
        }
    }

    /// The table with `signature`, if listed.
    pub fn table(&self, signature: Signature) -> Option<&TableInfo> {
        self.tables
            .iter()
            .find(|table| table.header.signature == signature)
    }

    /// The NUMA topology of the SRAT and the SLIT (re-read from `memory`,
    /// which must be the memory the tables were read from). `None`
    /// without an SRAT: the machine is one node. An error if the SRAT or
    /// the SLIT is malformed (or was rejected for its checksum or length)
    /// or they disagree: the caller warns and uses one node.
    pub fn numa(&self, memory: &impl PhysMemory) -> Option<Result<Numa, AcpiError>> {
        let srat = self.reread(memory, Signature::SRAT)?;
        Some(srat.and_then(|(table, address)| {
            let srat = Srat::parse(&table, address)?;
            let slit = (self.reread(memory, Signature::SLIT).transpose()?)
                .map(|(table, address)| Slit::parse(&table, address))
                .transpose()?;
            Numa::new(&srat, slit.as_ref())
        }))
    }

    /// The table with `signature` read again, checked again, with its
    /// address: `None` if none was listed, the error if it was rejected.
    fn reread(
        &self,
        memory: &impl PhysMemory,
        signature: Signature,
    ) -> Option<Result<(sdt::Table, u64), AcpiError>> {
        let Some(info) = self.table(signature) else {
            return self.rejection(signature).map(Err);
        };
        let address = info.address;
        Some(sdt::read_table(memory, address).and_then(|table| {
            if table.header.signature == signature {
                Ok((table, address))
            } else {
                Err(AcpiError::WrongSignature {
                    address,
                    expected: signature,
                    found: table.header.signature,
                })
            }
        }))
    }

    /// Why a listed table with `signature` was rejected, if one was.
    fn rejection(&self, signature: Signature) -> Option<AcpiError> {
        self.rejected.iter().find_map(|&(_, error)| match error {
            AcpiError::BadChecksum {
                signature: found, ..
            }
            | AcpiError::BadLength {
                signature: found, ..
            } if found == signature => Some(error),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests;
