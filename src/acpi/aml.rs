//! The one thing the kernel reads from the DSDT's AML: the `\_S5`
//! package, whose first two integers are the SLP_TYP values that put the
//! machine in soft-off when written to PM1a/PM1b control with SLP_EN.
//!
//! No AML interpreter: a scan for `Name (_S5, Package () { a, b, ... })`,
//! the form every firmware seen uses (QEMU's SeaBIOS and OVMF tables
//! included). A `_S5` defined some other way (a method) is not found, and
//! the caller falls back.
#![forbid(unsafe_code)]

use super::AcpiError;

const NAME_OP: u8 = 0x08;
const ROOT_PREFIX: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0A;
const WORD_PREFIX: u8 = 0x0B;
const DWORD_PREFIX: u8 = 0x0C;
/// SLP_TYP is a 3-bit field.
const SLP_TYP_MAX: u64 = 7;

/// The sleep type values for PM1a and PM1b control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepType {
    /// SLP_TYPa.
    pub a: u8,
    /// SLP_TYPb (0 if the package has one element).
    pub b: u8,
}

/// Finds `\_S5` in the AML `code` (a DSDT's or SSDT's body).
pub fn find_s5(code: &[u8]) -> Result<SleepType, AcpiError> {
    (0..code.len())
        .filter(|&at| code[at..].starts_with(b"_S5_"))
        .find_map(|at| package_at(code, at))
        .ok_or(AcpiError::NoS5)
}

/// The sleep type of a `Name (_S5, Package ...)` whose name starts at
/// `at`, if that is what is there.
fn package_at(code: &[u8], at: usize) -> Option<SleepType> {
    let named = match at.checked_sub(1).map(|before| code[before]) {
        Some(NAME_OP) => true,
        Some(ROOT_PREFIX) => at >= 2 && code[at - 2] == NAME_OP,
        _ => false,
    };
    if !named {
        return None;
    }
    let mut cursor = at + 4;
    if *code.get(cursor)? != PACKAGE_OP {
        return None;
    }
    cursor += 1;
    // PkgLength: bits 7-6 of the lead byte count the bytes that follow.
    let lead = *code.get(cursor)?;
    cursor += 1 + usize::from(lead >> 6);
    let elements = *code.get(cursor)?;
    cursor += 1;
    if elements == 0 {
        return None;
    }
    let a = integer(code, &mut cursor)?;
    let b = if elements >= 2 {
        integer(code, &mut cursor)?
    } else {
        0
    };
    if a > SLP_TYP_MAX || b > SLP_TYP_MAX {
        return None;
    }
    Some(SleepType {
        a: a as u8,
        b: b as u8,
    })
}

/// The AML integer constant at `cursor`, which moves past it.
fn integer(code: &[u8], cursor: &mut usize) -> Option<u64> {
    let op = *code.get(*cursor)?;
    let (value, len) = match op {
        ZERO_OP => (0, 1),
        ONE_OP => (1, 1),
        BYTE_PREFIX => (u64::from(*code.get(*cursor + 1)?), 2),
        WORD_PREFIX => {
            let bytes = code.get(*cursor + 1..*cursor + 3)?;
            (u64::from(u16::from_le_bytes([bytes[0], bytes[1]])), 3)
        }
        DWORD_PREFIX => {
            let bytes = code.get(*cursor + 1..*cursor + 5)?;
            (
                u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
                5,
            )
        }
        _ => return None,
    };
    *cursor += len;
    Some(value)
}
