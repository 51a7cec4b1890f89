//! The FADT ("FACP"): where the DSDT is, and the power-management
//! registers the kernel uses (PM1 control for soft-off, the SMI command
//! that switches the machine into ACPI mode, the PM timer, the reset
//! register).
#![forbid(unsafe_code)]

use super::sdt::{u32_at, u64_at, u8_at, Signature, Table};
use super::AcpiError;

/// Bytes of an ACPI 1.0 FADT: every field read here up to the flags.
const V1_LEN: u32 = 116;

/// Offsets of the fields read, from the start of the table.
mod field {
    pub const DSDT: usize = 40;
    pub const SMI_CMD: usize = 48;
    pub const ACPI_ENABLE: usize = 52;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const PM1B_CNT_BLK: usize = 68;
    pub const PM_TMR_BLK: usize = 76;
    pub const PM1_CNT_LEN: usize = 89;
    pub const FLAGS: usize = 112;
    pub const RESET_REG: usize = 116;
    pub const RESET_VALUE: usize = 128;
    pub const X_DSDT: usize = 140;
    pub const X_PM1A_CNT_BLK: usize = 172;
    pub const X_PM1B_CNT_BLK: usize = 184;
}

/// Flag: the PM timer counts 32 bits (else 24).
const TMR_VAL_EXT: u32 = 1 << 8;
/// Flag: the reset register is supported.
const RESET_REG_SUP: u32 = 1 << 10;
/// Generic address space: system I/O.
const SYSTEM_IO: u8 = 1;
/// Generic address space: system memory.
const SYSTEM_MEMORY: u8 = 0;

/// Where a power-management register is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pm1Control {
    /// An I/O port.
    Io(u16),
    /// A memory-mapped register (physical address).
    Memory(u64),
}

/// What the FADT says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fadt {
    /// Physical address of the FADT.
    pub address: u64,
    /// Physical address of the DSDT (X_DSDT when present).
    pub dsdt: u64,
    /// The SMI command port and the value that enables ACPI mode (0 if
    /// the machine is always in ACPI mode).
    pub smi_command: u32,
    /// Value for `smi_command` that hands the PM registers to the OS.
    pub acpi_enable: u8,
    /// PM1a control register (soft-off writes SLP_TYP | SLP_EN here).
    pub pm1a_control: Option<Pm1Control>,
    /// PM1b control register, if the machine has a second one.
    pub pm1b_control: Option<Pm1Control>,
    /// The PM timer's I/O port (3.579545 MHz), if any.
    pub pm_timer: Option<u16>,
    /// Whether the PM timer counts 32 bits (else 24).
    pub pm_timer_32bit: bool,
    /// The reset register and the value to write, if supported.
    pub reset: Option<(Pm1Control, u8)>,
}

impl Fadt {
    /// Parses the FADT `table` found at `address`.
    pub fn parse(table: &Table, address: u64) -> Result<Self, AcpiError> {
        let bytes = &table.bytes[..];
        if table.header.length < V1_LEN {
            return Err(AcpiError::TooShort {
                signature: Signature::FADT,
                len: table.header.length,
                needed: V1_LEN,
            });
        }
        // Every field below V1_LEN is present (checked above).
        let word = |offset| u32_at(bytes, offset).unwrap_or(0);
        let flags = word(field::FLAGS);
        let x_dsdt = u64_at(bytes, field::X_DSDT).unwrap_or(0);
        let dsdt = if x_dsdt != 0 {
            x_dsdt
        } else {
            u64::from(word(field::DSDT))
        };
        let port = |offset| {
            let value = word(offset);
            (value != 0 && value <= u32::from(u16::MAX)).then_some(value as u16)
        };
        let legacy_control = |offset| port(offset).map(Pm1Control::Io);
        let pm1_len = u8_at(bytes, field::PM1_CNT_LEN).unwrap_or(0);
        let (pm1a, pm1b) = if pm1_len >= 2 {
            (
                generic_address(bytes, field::X_PM1A_CNT_BLK)
                    .or_else(|| legacy_control(field::PM1A_CNT_BLK)),
                generic_address(bytes, field::X_PM1B_CNT_BLK)
                    .or_else(|| legacy_control(field::PM1B_CNT_BLK)),
            )
        } else {
            (None, None)
        };
        let reset = (flags & RESET_REG_SUP != 0)
            .then(|| generic_address(bytes, field::RESET_REG))
            .flatten()
            .map(|register| (register, u8_at(bytes, field::RESET_VALUE).unwrap_or(0)));
        Ok(Fadt {
            address,
            dsdt,
            smi_command: word(field::SMI_CMD),
            acpi_enable: u8_at(bytes, field::ACPI_ENABLE).unwrap_or(0),
            pm1a_control: pm1a,
            pm1b_control: pm1b,
            pm_timer: port(field::PM_TMR_BLK),
            pm_timer_32bit: flags & TMR_VAL_EXT != 0,
            reset,
        })
    }
}

/// The generic address structure at `offset`, if the table is long
/// enough, it is non-zero and in a space the kernel can reach.
fn generic_address(bytes: &[u8], offset: usize) -> Option<Pm1Control> {
    let space = u8_at(bytes, offset)?;
    let address = u64_at(bytes, offset + 4)?;
    match (space, address) {
        (_, 0) => None,
        (SYSTEM_IO, port) => u16::try_from(port).ok().map(Pm1Control::Io),
        (SYSTEM_MEMORY, physical) => Some(Pm1Control::Memory(physical)),
        _ => None,
    }
}
