//! Interprocessor-interrupt encodings for the local APIC's interrupt
//! command register, in its xAPIC (two 32-bit MMIO registers) and x2APIC
//! (one 64-bit MSR) forms. Pure: the kernel's LAPIC driver writes what
//! these compute, and host tests check the bits against the SDM.
//!
//! QEMU 7.2 does not emulate x2APIC under TCG, so the x2APIC form is
//! tested here only (docs/smp.md).
#![forbid(unsafe_code)]

/// What an IPI does at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiKind {
    /// Interrupt `vector` (32-255).
    Fixed(u8),
    /// A non-maskable interrupt.
    Nmi,
    /// INIT: reset the target into wait-for-SIPI.
    Init,
    /// Start-up: begin executing in real mode at `page << 12`.
    Startup(u8),
}

/// Whom an IPI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The CPU with this APIC id.
    Apic(u32),
    /// The sending CPU.
    SelfOnly,
    /// Every CPU but the sender.
    AllButSelf,
}

/// Why an IPI cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiError {
    /// Vectors 0-31 are exceptions, not interrupts.
    ReservedVector(u8),
    /// An xAPIC destination is 8 bits.
    IdTooLarge(u32),
}

/// ICR bit: level assert (every IPI sent here asserts).
const LEVEL_ASSERT: u32 = 1 << 14;
const SHORTHAND_SELF: u32 = 0b01 << 18;
const SHORTHAND_ALL_BUT_SELF: u32 = 0b11 << 18;
/// ICR bit (xAPIC only, read-only): the previous IPI is still being sent.
pub const DELIVERY_PENDING: u32 = 1 << 12;

/// The ICR's low 32 bits (vector, delivery mode, level, shorthand), the
/// same in both modes.
pub fn icr_low(destination: Destination, kind: IpiKind) -> Result<u32, IpiError> {
    let mode = match kind {
        IpiKind::Fixed(vector) if vector < 32 => return Err(IpiError::ReservedVector(vector)),
        IpiKind::Fixed(vector) => u32::from(vector),
        IpiKind::Nmi => 0b100 << 8,
        IpiKind::Init => 0b101 << 8,
        IpiKind::Startup(page) => 0b110 << 8 | u32::from(page),
    };
    let shorthand = match destination {
        Destination::Apic(_) => 0,
        Destination::SelfOnly => SHORTHAND_SELF,
        Destination::AllButSelf => SHORTHAND_ALL_BUT_SELF,
    };
    Ok(mode | LEVEL_ASSERT | shorthand)
}

/// The xAPIC ICR as (high, low): write high (offset 0x310) first, the
/// write of low (0x300) sends.
pub fn xapic_icr(destination: Destination, kind: IpiKind) -> Result<(u32, u32), IpiError> {
    let low = icr_low(destination, kind)?;
    let high = match destination {
        Destination::Apic(id) if id > 0xFF => return Err(IpiError::IdTooLarge(id)),
        Destination::Apic(id) => id << 24,
        _ => 0,
    };
    Ok((high, low))
}

/// The x2APIC ICR (MSR 0x830): the 32-bit destination in the high half.
pub fn x2apic_icr(destination: Destination, kind: IpiKind) -> Result<u64, IpiError> {
    let low = icr_low(destination, kind)?;
    let high = match destination {
        Destination::Apic(id) => id,
        _ => 0,
    };
    Ok(u64::from(high) << 32 | u64::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_and_startup_as_the_sdm_spells_them() {
        // INIT, level assert, edge, physical: 0x4500; SIPI to page 8: 0x4608.
        assert_eq!(
            xapic_icr(Destination::Apic(3), IpiKind::Init),
            Ok((3 << 24, 0x4500))
        );
        assert_eq!(
            xapic_icr(Destination::Apic(1), IpiKind::Startup(8)),
            Ok((1 << 24, 0x4608))
        );
        assert_eq!(
            xapic_icr(Destination::Apic(0xFF), IpiKind::Nmi),
            Ok((0xFF00_0000, 0x4400))
        );
    }

    #[test]
    fn shorthands_and_fixed_vectors() {
        assert_eq!(
            icr_low(Destination::SelfOnly, IpiKind::Fixed(0xF0)),
            Ok(0x4_40F0)
        );
        assert_eq!(
            icr_low(Destination::AllButSelf, IpiKind::Fixed(0x40)),
            Ok(0xC_4040)
        );
        assert_eq!(
            xapic_icr(Destination::AllButSelf, IpiKind::Fixed(0x40)),
            Ok((0, 0xC_4040))
        );
        assert_eq!(
            icr_low(Destination::Apic(0), IpiKind::Fixed(31)),
            Err(IpiError::ReservedVector(31))
        );
    }

    #[test]
    fn x2apic_takes_32_bit_ids_and_xapic_refuses_them() {
        assert_eq!(
            x2apic_icr(Destination::Apic(0x1_0000), IpiKind::Fixed(0x40)),
            Ok(0x0001_0000_0000_4040)
        );
        assert_eq!(
            x2apic_icr(Destination::AllButSelf, IpiKind::Nmi),
            Ok(0xC_4400)
        );
        assert_eq!(
            xapic_icr(Destination::Apic(256), IpiKind::Init),
            Err(IpiError::IdTooLarge(256))
        );
    }
}
