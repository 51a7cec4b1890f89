//! The IDT: gates for the 32 CPU exceptions and the timer IRQ (vector 32),
//! pointing at the stubs in asm/exceptions.s. The double fault and the NMI
//! run on their own IST stacks.

use core::mem::size_of;

use spin::Once;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use super::gdt;

/// Vector of the double-fault exception.
const DOUBLE_FAULT_VECTOR: usize = 8;
/// Vector of the non-maskable interrupt.
const NMI_VECTOR: usize = 2;
/// The work and shootdown IPIs (see smp.rs) and the local APIC's spurious
/// vector.
const WORK_IPI_VECTOR: usize = 240;
const SHOOTDOWN_VECTOR: usize = 241;
const SPURIOUS_VECTOR: usize = 255;

/// One 16-byte interrupt gate.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

/// Present, ring 0, 64-bit interrupt gate (interrupts off in the handler).
const INTERRUPT_GATE: u8 = 0x8E;

impl Gate {
    fn new(handler: u64, selector: u16, ist: u16) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist: ist as u8,
            attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

extern "C" {
    /// Addresses of the 32 exception stubs and the timer stub (asm/exceptions.s).
    static exception_stub_table: [u64; 33];
    static apic_stub_table: [u64; 3];
}

static IDT: Once<[Gate; 256]> = Once::new();

/// Builds the IDT and loads it.
pub fn init() {
    let idt = IDT.call_once(|| {
        let selector = gdt::code_selector().0;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().take(33).enumerate() {
            // SAFETY: the table is immutable data emitted by the assembler.
            let handler = unsafe { exception_stub_table[vector] };
            let ist = match vector {
                DOUBLE_FAULT_VECTOR => gdt::DOUBLE_FAULT_IST,
                NMI_VECTOR => gdt::NMI_IST,
                _ => 0,
            };
            *gate = Gate::new(handler, selector, ist);
        }
        for (index, vector) in [WORK_IPI_VECTOR, SHOOTDOWN_VECTOR, SPURIOUS_VECTOR]
            .into_iter()
            .enumerate()
        {
            // SAFETY: as above.
            let handler = unsafe { apic_stub_table[index] };
            gates[vector] = Gate::new(handler, selector, 0);
        }
        gates
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: VirtAddr::from_ptr(idt.as_ptr()),
    };
    // SAFETY: the table is 'static, holds valid gates for vectors 0-31 and
    // not-present gates elsewhere.
    unsafe { lidt(&pointer) };
}
