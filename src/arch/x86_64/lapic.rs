//! The local APIC: in xAPIC mode through an uncached mapping of its
//! registers, or in x2APIC mode through MSRs when CPUID offers x2APIC;
//! its id, enabling it, EOI and sending IPIs (the encodings are in
//! [`crate::apic`]).
//!
//! QEMU 7.2 does not emulate x2APIC under TCG (CPUID does not offer it
//! there), so the x2APIC path runs only on hardware: its ICR encoding is
//! host-tested, the path itself is untested here (docs/smp.md).

use core::ptr;

use x86_64::{PhysAddr, VirtAddr};

use crate::apic::{x2apic_icr, xapic_icr, Destination, IpiError, IpiKind, DELIVERY_PENDING};
use crate::kernel_mm::vmm;
use mm::MmError;
use x86_64::registers::model_specific::Msr;

/// Register offsets.
mod register {
    pub const ID: usize = 0x20;
    pub const EOI: usize = 0xB0;
    pub const SPURIOUS: usize = 0xF0;
    pub const ERROR_STATUS: usize = 0x280;
    pub const ICR_LOW: usize = 0x300;
    pub const ICR_HIGH: usize = 0x310;
}
/// Spurious-interrupt register: APIC software enable.
const SOFTWARE_ENABLE: u32 = 1 << 8;
/// The spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Bytes of register space.
const REGISTERS_LEN: u64 = 4096;

/// Why an IPI was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// It cannot be encoded.
    Encoding(IpiError),
    /// The previous IPI was still pending after the wait.
    Busy,
}

/// The local APIC registers of whichever CPU reads them (every CPU's
/// registers sit at the same physical address, or in the same MSRs).
#[derive(Clone, Copy, Debug)]
pub struct Lapic {
    /// xAPIC: where the registers are mapped; `None`: x2APIC (MSRs).
    registers: Option<VirtAddr>,
}

/// IA32_APIC_BASE and its enable bits.
const APIC_BASE_MSR: u32 = 0x1B;
const XAPIC_ENABLE: u64 = 1 << 11;
const X2APIC_ENABLE: u64 = 1 << 10;
/// x2APIC MSRs: register offset / 16 + 0x800.
const X2APIC_MSR_BASE: u32 = 0x800;
const X2APIC_ICR: u32 = 0x830;

/// Whether CPUID offers x2APIC (leaf 1, ECX bit 21).
pub fn x2apic_offered() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

impl Lapic {
    /// The local APIC at `phys` (the MADT's address): x2APIC if CPUID
    /// offers it, else xAPIC through an uncached mapping of the registers
    /// kept for the rest of the kernel's life.
    pub fn map(phys: PhysAddr) -> Result<Self, MmError> {
        if x2apic_offered() {
            return Ok(Self { registers: None });
        }
        // SAFETY: the local APIC's registers are device memory, never RAM.
        let (mapping, virt) = unsafe { vmm::map_registers(phys, REGISTERS_LEN) }?;
        mapping.keep();
        Ok(Self {
            registers: Some(virt),
        })
    }

    /// Whether this is the x2APIC path.
    pub fn is_x2apic(&self) -> bool {
        self.registers.is_none()
    }

    fn read(&self, offset: usize) -> u32 {
        let Some(registers) = self.registers else {
            let msr = X2APIC_MSR_BASE + (offset / 16) as u32;
            // SAFETY: reading an x2APIC register MSR (x2APIC mode is on:
            // `enable`) has no effect on memory.
            return unsafe { Msr::new(msr).read() } as u32;
        };
        self.read_mmio(registers, offset)
    }

    fn write(&self, offset: usize, value: u32) {
        let Some(registers) = self.registers else {
            let msr = X2APIC_MSR_BASE + (offset / 16) as u32;
            // SAFETY: writing an x2APIC register MSR (EOI, spurious, error
            // status) changes interrupt state, never memory.
            unsafe { Msr::new(msr).write(u64::from(value)) };
            return;
        };
        self.write_mmio(registers, offset, value);
    }

    fn read_mmio(&self, registers: VirtAddr, offset: usize) -> u32 {
        // SAFETY: `registers` maps the 4 KiB register page (`map`) and
        // `offset` is one of the 16-byte-aligned register offsets in it.
        unsafe { ptr::read_volatile(registers.as_ptr::<u8>().add(offset).cast::<u32>()) }
    }

    fn write_mmio(&self, registers: VirtAddr, offset: usize, value: u32) {
        // SAFETY: as in `read_mmio`; registers are written with 32-bit
        // stores.
        unsafe {
            ptr::write_volatile(
                registers.as_mut_ptr::<u8>().add(offset).cast::<u32>(),
                value,
            )
        }
    }

    /// This CPU's APIC id.
    pub fn id(&self) -> u32 {
        match self.registers {
            Some(_) => self.read(register::ID) >> 24,
            None => self.read(register::ID),
        }
    }

    /// Software-enables this CPU's local APIC with the spurious vector
    /// (first switching it to x2APIC mode on the x2APIC path).
    pub fn enable(&self) {
        if self.is_x2apic() {
            let mut base = Msr::new(APIC_BASE_MSR);
            // SAFETY: setting the global and x2APIC enable bits of
            // IA32_APIC_BASE (CPUID offers x2APIC) changes how the local
            // APIC is reached, not memory.
            unsafe { base.write(base.read() | XAPIC_ENABLE | X2APIC_ENABLE) };
        }
        let spurious = self.read(register::SPURIOUS) & !0xFF;
        self.write(
            register::SPURIOUS,
            spurious | SOFTWARE_ENABLE | u32::from(SPURIOUS_VECTOR),
        );
        self.write(register::ERROR_STATUS, 0);
    }

    /// Signals the end of the interrupt being handled.
    pub fn eoi(&self) {
        self.write(register::EOI, 0);
    }

    /// Sends an IPI and waits (a bounded spin) until the APIC has taken it.
    pub fn send(&self, destination: Destination, kind: IpiKind) -> Result<(), SendError> {
        if self.is_x2apic() {
            let icr = x2apic_icr(destination, kind).map_err(SendError::Encoding)?;
            // SAFETY: writing the x2APIC ICR sends an IPI; no effect on
            // memory (and no delivery-status bit to wait for in this mode).
            unsafe { Msr::new(X2APIC_ICR).write(icr) };
            return Ok(());
        }
        let (high, low) = xapic_icr(destination, kind).map_err(SendError::Encoding)?;
        self.write(register::ICR_HIGH, high);
        self.write(register::ICR_LOW, low);
        for _ in 0..1_000_000 {
            if self.read(register::ICR_LOW) & DELIVERY_PENDING == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(SendError::Busy)
    }
}
