//! System description tables: the common 36-byte header, the checksum,
//! and the root tables' lists of pointers.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::{AcpiError, PhysMemory};

/// Bytes of the header every table starts with.
pub const HEADER_LEN: usize = 36;
/// Longest table accepted (real DSDTs are up to a few hundred KiB); a
/// longer length is taken for a corrupt header rather than read.
const MAX_TABLE_LEN: u32 = 4 << 20;

/// A table's four-character signature.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Root System Description Table (32-bit pointers).
    pub const RSDT: Self = Self(*b"RSDT");
    /// Extended System Description Table (64-bit pointers).
    pub const XSDT: Self = Self(*b"XSDT");
    /// Multiple APIC Description Table.
    pub const MADT: Self = Self(*b"APIC");
    /// Fixed ACPI Description Table.
    pub const FADT: Self = Self(*b"FACP");
    /// Differentiated System Description Table (AML).
    pub const DSDT: Self = Self(*b"DSDT");
    /// System Resource Affinity Table (NUMA: CPUs and memory by domain).
    pub const SRAT: Self = Self(*b"SRAT");
    /// System Locality Distance Information Table (NUMA distances).
    pub const SLIT: Self = Self(*b"SLIT");
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in &self.0 {
            let shown = if byte.is_ascii_graphic() { byte } else { b'?' };
            write!(f, "{}", shown as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

/// The common header of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableHeader {
    /// What the table is.
    pub signature: Signature,
    /// Bytes, header included.
    pub length: u32,
    /// Table revision.
    pub revision: u8,
    /// Firmware vendor.
    pub oem_id: [u8; 6],
}

impl TableHeader {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        Self {
            signature: Signature([bytes[0], bytes[1], bytes[2], bytes[3]]),
            length: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            revision: bytes[8],
            oem_id: [
                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
            ],
        }
    }

    /// The vendor as text (non-printable bytes as `?`, trailing spaces
    /// dropped).
    pub fn oem(&self) -> impl fmt::Display + '_ {
        Oem(&self.oem_id)
    }
}

struct Oem<'a>(&'a [u8]);

impl fmt::Display for Oem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.0.iter().rposition(|&byte| byte != b' ' && byte != 0);
        for &byte in &self.0[..end.map_or(0, |end| end + 1)] {
            let shown = if byte.is_ascii_graphic() || byte == b' ' {
                byte
            } else {
                b'?'
            };
            write!(f, "{}", shown as char)?;
        }
        Ok(())
    }
}

/// A whole table, copied out of firmware memory, checksum verified.
pub struct Table {
    /// Its header.
    pub header: TableHeader,
    /// Every byte of it, header included (`header.length` bytes).
    pub bytes: Vec<u8>,
}

impl Table {
    /// The bytes after the header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Whether `bytes` sum to 0 modulo 256, as every ACPI checksum demands.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)) == 0
}

/// Reads the table at `address`: its header, then all of it, with the
/// length bounded and the checksum checked.
pub fn read_table(memory: &impl PhysMemory, address: u64) -> Result<Table, AcpiError> {
    let mut head = [0u8; HEADER_LEN];
    memory.read(address, &mut head)?;
    let header = TableHeader::parse(&head);
    if (header.length as usize) < HEADER_LEN || header.length > MAX_TABLE_LEN {
        return Err(AcpiError::BadLength {
            signature: header.signature,
            address,
            len: header.length,
        });
    }
    let mut bytes = vec![0u8; header.length as usize];
    memory.read(address, &mut bytes)?;
    if !checksum_ok(&bytes) {
        return Err(AcpiError::BadChecksum {
            signature: header.signature,
            address,
        });
    }
    Ok(Table { header, bytes })
}

/// The table addresses in a root table's body (`entry_size` 4: RSDT, 8:
/// XSDT); null entries and a partial last entry are skipped.
pub fn entries(body: &[u8], entry_size: usize) -> impl Iterator<Item = u64> + '_ {
    body.chunks_exact(entry_size)
        .map(|entry| {
            let mut value = [0u8; 8];
            value[..entry.len()].copy_from_slice(entry);
            u64::from_le_bytes(value)
        })
        .filter(|&address| address != 0)
}

/// Little-endian fields of a table body, `None` past its end.
/// One variable-length entry of a table body (MADT, SRAT): type, length,
/// the bytes (type and length included), where it is, and the error that
/// names it if its content is bad.
#[derive(Clone, Copy, Debug)]
pub struct SubEntry<'a> {
    /// Its type byte.
    pub kind: u8,
    /// Its length byte.
    pub len: u8,
    /// Its bytes, `len` of them.
    pub bytes: &'a [u8],
    /// Its offset in the body.
    pub offset: usize,
    /// `BadEntry` naming this entry.
    pub bad: AcpiError,
}

/// The entries of `body` from `fixed` on, each checked to be at least 2
/// bytes and inside the body; a bad one ends the walk with its error.
pub fn sub_entries(
    body: &[u8],
    fixed: usize,
    signature: Signature,
) -> impl Iterator<Item = Result<SubEntry<'_>, AcpiError>> + '_ {
    let mut offset = fixed;
    let mut failed = false;
    core::iter::from_fn(move || {
        if failed || offset >= body.len() {
            return None;
        }
        let kind = body[offset];
        let len = u8_at(body, offset + 1).unwrap_or(0);
        let bad = AcpiError::BadEntry {
            signature,
            offset: HEADER_LEN + offset,
            kind,
            len,
        };
        let bytes = body.get(offset..offset + usize::from(len));
        let entry = match bytes {
            Some(bytes) if len >= 2 => Ok(SubEntry {
                kind,
                len,
                bytes,
                offset,
                bad,
            }),
            _ => {
                failed = true;
                Err(bad)
            }
        };
        offset += usize::from(len);
        Some(entry)
    })
}

pub fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

/// As [`u8_at`], 16 bits.
pub fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

/// As [`u8_at`], 32 bits.
pub fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// As [`u8_at`], 64 bits.
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}
