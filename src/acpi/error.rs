//! What can be wrong with firmware tables.
#![forbid(unsafe_code)]

use core::fmt;

use mm::pmm::PhysRange;

use super::sdt::Signature;

/// A table, or the way to it, is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP: no Multiboot2 ACPI tag, and none in the BIOS areas.
    NoRsdp,
    /// The RSDP's signature is not "RSD PTR ".
    BadRsdpSignature,
    /// The RSDP's checksum (`extended`: the ACPI 2.0+ one) is wrong.
    BadRsdpChecksum {
        /// Whether the extended (36-byte) checksum failed.
        extended: bool,
    },
    /// The RSDP is shorter than its revision needs.
    TruncatedRsdp {
        /// Bytes present.
        len: usize,
    },
    /// Physical memory at `address` (`len` bytes) cannot be read.
    Unreadable {
        /// Physical address.
        address: u64,
        /// Bytes asked for.
        len: u64,
    },
    /// A table's length is below its header's size or above what the
    /// kernel accepts.
    BadLength {
        /// The table.
        signature: Signature,
        /// Its address.
        address: u64,
        /// The length it claims.
        len: u32,
    },
    /// A table's checksum is wrong.
    BadChecksum {
        /// The table.
        signature: Signature,
        /// Its address.
        address: u64,
    },
    /// A table is not what the pointer to it promised.
    WrongSignature {
        /// Its address.
        address: u64,
        /// What was expected.
        expected: Signature,
        /// What is there.
        found: Signature,
    },
    /// A table is too short for its fixed fields.
    TooShort {
        /// The table.
        signature: Signature,
        /// Its length.
        len: u32,
        /// Bytes its fixed fields need.
        needed: u32,
    },
    /// An entry inside a table is malformed (length 0, too short for its
    /// type, or running past the table's end).
    BadEntry {
        /// The table.
        signature: Signature,
        /// Offset of the entry in the table.
        offset: usize,
        /// The entry's type.
        kind: u8,
        /// The length it claims.
        len: u8,
    },
    /// A table the kernel needs is not listed.
    Missing(Signature),
    /// The DSDT has no usable `\_S5` package.
    NoS5,
    /// An SRAT memory entry whose range runs past the end of the address
    /// space.
    BadMemoryRange {
        /// Offset of the entry in the SRAT.
        offset: usize,
        /// Its base address.
        base: u64,
        /// Its length.
        length: u64,
    },
    /// The SLIT's locality count does not fit its table: `localities`
    /// squared distance bytes are more than the `len`-byte table holds.
    BadLocalityCount {
        /// Localities the SLIT claims.
        localities: u64,
        /// The SLIT's length.
        len: u32,
    },
    /// A SLIT distance is impossible: a locality's distance to itself is
    /// not 10, or the distance between two is 10 or less.
    BadDistance {
        /// Offset of the distance byte in the SLIT.
        offset: usize,
        /// Row: the locality the distance is from.
        from: usize,
        /// Column: the locality it is to.
        to: usize,
        /// The value found.
        distance: u8,
    },
    /// The SRAT names no enabled memory range.
    NoNumaMemory,
    /// The SRAT names more proximity domains than the kernel has nodes
    /// for.
    TooManyNodes {
        /// Domains named (by enabled entries).
        domains: usize,
        /// Nodes the kernel supports.
        max: usize,
    },
    /// Two SRAT memory ranges share bytes.
    OverlappingMemory {
        /// The domain of the range that starts first.
        domain: u32,
        /// That range.
        range: PhysRange,
        /// The domain of the range it overlaps.
        other_domain: u32,
        /// The range it overlaps.
        other: PhysRange,
    },
    /// One APIC id is in two proximity domains.
    ApicInTwoDomains {
        /// The APIC id.
        apic_id: u32,
        /// One domain the SRAT puts it in.
        domain: u32,
        /// The other.
        other_domain: u32,
    },
    /// The SLIT has no row for a domain of the SRAT (it has fewer
    /// localities than the SRAT's domains need).
    DomainNotInSlit {
        /// The domain.
        domain: u32,
        /// Localities in the SLIT.
        localities: usize,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoRsdp => {
                f.write_str("no RSDP (no Multiboot2 ACPI tag, none in BIOS memory)")
            }
            AcpiError::BadRsdpSignature => f.write_str("RSDP signature is not \"RSD PTR \""),
            AcpiError::BadRsdpChecksum { extended } => write!(
                f,
                "RSDP {} checksum is wrong",
                if extended { "extended" } else { "first" }
            ),
            AcpiError::TruncatedRsdp { len } => write!(f, "RSDP truncated ({len} bytes)"),
            AcpiError::Unreadable { address, len } => {
                write!(
                    f,
                    "cannot read {len} bytes of physical memory at {address:#x}"
                )
            }
            AcpiError::BadLength {
                signature,
                address,
                len,
            } => write!(f, "{signature} at {address:#x}: bad length {len}"),
            AcpiError::BadChecksum { signature, address } => {
                write!(f, "{signature} at {address:#x}: bad checksum")
            }
            AcpiError::WrongSignature {
                address,
                expected,
                found,
            } => write!(f, "table at {address:#x} is {found}, expected {expected}"),
            AcpiError::TooShort {
                signature,
                len,
                needed,
            } => write!(f, "{signature}: {len} bytes, its fields need {needed}"),
            AcpiError::BadEntry {
                signature,
                offset,
                kind,
                len,
            } => write!(
                f,
                "{signature}: entry of type {kind} at offset {offset} has bad length {len}"
            ),
            AcpiError::Missing(signature) => write!(f, "no {signature} table"),
            AcpiError::NoS5 => f.write_str("DSDT has no usable \\_S5 package"),
            AcpiError::BadMemoryRange {
                offset,
                base,
                length,
            } => write!(
                f,
                "SRAT: memory entry at offset {offset} ({length:#x} bytes at {base:#x}) runs past the address space"
            ),
            AcpiError::BadLocalityCount { localities, len } => write!(
                f,
                "SLIT: {localities} localities need {localities}x{localities} distance bytes, more than its {len}-byte table holds"
            ),
            AcpiError::BadDistance {
                offset,
                from,
                to,
                distance,
            } => write!(
                f,
                "SLIT: distance {distance} from locality {from} to {to} (offset {offset}) is impossible: {}",
                if from == to {
                    "a locality is 10 from itself"
                } else {
                    "two localities are more than 10 apart"
                }
            ),
            AcpiError::NoNumaMemory => f.write_str("SRAT: no enabled memory range"),
            AcpiError::TooManyNodes { domains, max } => write!(
                f,
                "SRAT: {domains} proximity domains, more than the {max} NUMA nodes supported"
            ),
            AcpiError::OverlappingMemory {
                domain,
                range,
                other_domain,
                other,
            } => write!(
                f,
                "SRAT: memory {range} of domain {domain} overlaps {other} of domain {other_domain}"
            ),
            AcpiError::ApicInTwoDomains {
                apic_id,
                domain,
                other_domain,
            } => write!(
                f,
                "SRAT: APIC id {apic_id} is in proximity domains {domain} and {other_domain}"
            ),
            AcpiError::DomainNotInSlit { domain, localities } => write!(
                f,
                "SLIT: {localities} localities, none for SRAT proximity domain {domain}"
            ),
        }
    }
}
