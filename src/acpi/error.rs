//! What can be wrong with firmware tables.
#![forbid(unsafe_code)]

use core::fmt;

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
        }
    }
}
