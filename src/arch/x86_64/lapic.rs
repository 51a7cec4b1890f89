//! The local APIC in xAPIC mode, through an uncached mapping of its
//! registers: its id, enabling it, and sending IPIs (the encodings are in
//! [`crate::apic`]).

use core::ptr;

use x86_64::{PhysAddr, VirtAddr};

use crate::apic::{xapic_icr, Destination, IpiError, IpiKind, DELIVERY_PENDING};
use crate::kernel_mm::vmm;
use mm::MmError;

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
/// registers sit at the same physical address).
#[derive(Clone, Copy, Debug)]
pub struct Lapic {
    registers: VirtAddr,
}

impl Lapic {
    /// Maps the registers at `phys` (the MADT's local APIC address),
    /// uncached, for the rest of the kernel's life.
    pub fn map(phys: PhysAddr) -> Result<Self, MmError> {
        // SAFETY: the local APIC's registers are device memory, never RAM.
        let (mapping, virt) = unsafe { vmm::map_registers(phys, REGISTERS_LEN) }?;
        mapping.keep();
        Ok(Self { registers: virt })
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `registers` maps the 4 KiB register page (`map`) and
        // `offset` is one of the 16-byte-aligned register offsets in it.
        unsafe { ptr::read_volatile(self.registers.as_ptr::<u8>().add(offset).cast::<u32>()) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`; registers are written with 32-bit stores.
        unsafe {
            ptr::write_volatile(
                self.registers.as_mut_ptr::<u8>().add(offset).cast::<u32>(),
                value,
            )
        }
    }

    /// This CPU's APIC id.
    pub fn id(&self) -> u32 {
        self.read(register::ID) >> 24
    }

    /// Software-enables this CPU's local APIC with the spurious vector.
    pub fn enable(&self) {
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
