//! The Root System Description Pointer: from a Multiboot2 ACPI tag (a
//! copy GRUB made) or found by scanning the BIOS areas.
#![forbid(unsafe_code)]

use super::sdt::{checksum_ok, u32_at, u64_at};
use super::AcpiError;

/// Bytes of an ACPI 1.0 RSDP.
const V1_LEN: usize = 20;
/// Bytes of an ACPI 2.0+ RSDP.
const V2_LEN: usize = 36;
const SIGNATURE: &[u8; 8] = b"RSD PTR ";

/// The BIOS read-only area the RSDP may sit in (on a 16-byte boundary).
pub const BIOS_AREA: (u64, usize) = (0xE0000, 0x20000);
/// Physical address of the BIOS data area's word holding the EBDA's
/// segment; the RSDP may sit in the EBDA's first KiB.
pub const EBDA_POINTER: u64 = 0x40E;

/// A checked RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0, 2 for 2.0 and later.
    pub revision: u8,
    /// Firmware vendor.
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT.
    pub rsdt: u32,
    /// Physical address of the XSDT (ACPI 2.0+, 0 if absent).
    pub xsdt: u64,
}

impl Rsdp {
    /// Checks `bytes` (at least 20; 36 for revision 2 and later) as an
    /// RSDP: signature and checksums.
    pub fn parse(bytes: &[u8]) -> Result<Self, AcpiError> {
        let v1 = bytes
            .get(..V1_LEN)
            .ok_or(AcpiError::TruncatedRsdp { len: bytes.len() })?;
        if &v1[..8] != SIGNATURE {
            return Err(AcpiError::BadRsdpSignature);
        }
        if !checksum_ok(v1) {
            return Err(AcpiError::BadRsdpChecksum { extended: false });
        }
        let revision = v1[15];
        let mut oem_id = [0u8; 6];
        oem_id.copy_from_slice(&v1[9..15]);
        let rsdt = u32_at(v1, 16).unwrap_or(0);
        let mut xsdt = 0;
        if revision >= 2 {
            let v2 = bytes
                .get(..V2_LEN)
                .ok_or(AcpiError::TruncatedRsdp { len: bytes.len() })?;
            let length = u32_at(v2, 20).unwrap_or(0) as usize;
            let extended = bytes
                .get(..length.max(V2_LEN))
                .ok_or(AcpiError::TruncatedRsdp { len: bytes.len() })?;
            if !checksum_ok(extended) {
                return Err(AcpiError::BadRsdpChecksum { extended: true });
            }
            xsdt = u64_at(v2, 24).unwrap_or(0);
        }
        Ok(Self {
            revision,
            oem_id,
            rsdt,
            xsdt,
        })
    }

    /// The root table to follow and the size of its entries: the XSDT
    /// (8-byte pointers) when there is one, else the RSDT (4-byte).
    pub fn root_table(&self) -> (u64, usize) {
        if self.revision >= 2 && self.xsdt != 0 {
            (self.xsdt, 8)
        } else {
            (u64::from(self.rsdt), 4)
        }
    }
}

/// The first valid RSDP on a 16-byte boundary of `area` (bytes of
/// physical memory starting at `base`), with its address.
pub fn scan_for_rsdp(area: &[u8], base: u64) -> Option<(u64, Rsdp)> {
    (0..area.len())
        .step_by(16)
        .filter(|&offset| area[offset..].starts_with(SIGNATURE))
        .find_map(|offset| {
            let rsdp = Rsdp::parse(&area[offset..]).ok()?;
            Some((base + offset as u64, rsdp))
        })
}
