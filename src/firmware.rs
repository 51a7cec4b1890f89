//! The machine's ACPI tables, read once at boot, and what the kernel does
//! with them today: report them and power the machine off.

use core::fmt;

use spin::Once;
use x86_64::instructions::port::Port;

use crate::acpi::PhysMemory;
use crate::acpi::{scan_for_rsdp, Acpi, AcpiError, Pm1Control, Rsdp, BIOS_AREA, EBDA_POINTER};
use crate::arch::x86_64::{clock, cpu};
use crate::boot::BootInfo;
use crate::kernel_mm::firmware::FirmwareMemory;
use crate::kprintln;

static ACPI: Once<Acpi> = Once::new();

/// Where the RSDP came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpSource {
    /// GRUB's Multiboot2 ACPI tag.
    MultibootTag,
    /// The BIOS memory scan, at this address.
    BiosScan(u64),
}

/// Finds the RSDP (the Multiboot2 tag first, else the BIOS scan) and
/// reads the tables it leads to; keeps them for [`tables`].
pub fn init(info: &BootInfo<'_>) -> Result<(&'static Acpi, RsdpSource), AcpiError> {
    let memory = FirmwareMemory::new(info);
    let (rsdp, source) = match info.acpi_rsdp() {
        Some(bytes) => (Rsdp::parse(bytes)?, RsdpSource::MultibootTag),
        None => {
            let (address, rsdp) = scan_bios(&memory).ok_or(AcpiError::NoRsdp)?;
            (rsdp, RsdpSource::BiosScan(address))
        }
    };
    let acpi = Acpi::read(&memory, rsdp)?;
    Ok((ACPI.call_once(|| acpi), source))
}

/// The RSDP in the EBDA's first KiB or the BIOS area, if there is one.
fn scan_bios(memory: &FirmwareMemory<'_>) -> Option<(u64, Rsdp)> {
    let mut segment = [0u8; 2];
    let ebda = memory
        .read(EBDA_POINTER, &mut segment)
        .ok()
        .map(|()| u64::from(u16::from_le_bytes(segment)) << 4)
        .filter(|&ebda| ebda != 0);
    let mut ebda_area = [0u8; 1024];
    if let Some(ebda) = ebda {
        if memory.read(ebda, &mut ebda_area).is_ok() {
            if let Some(found) = scan_for_rsdp(&ebda_area, ebda) {
                return Some(found);
            }
        }
    }
    let (base, len) = BIOS_AREA;
    let mut area = alloc::vec![0u8; len];
    memory.read(base, &mut area).ok()?;
    scan_for_rsdp(&area, base)
}

/// The tables read at boot, if [`init`] succeeded.
pub fn tables() -> Option<&'static Acpi> {
    ACPI.get()
}

/// Why ACPI could not power the machine off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOffError {
    /// No ACPI tables were read at boot.
    NoTables,
    /// The FADT has no PM1a control block.
    NoPm1Control,
    /// The PM1 control register is memory-mapped (not supported yet).
    MemoryMappedPm1,
    /// The DSDT has no usable `\_S5`.
    NoS5,
    /// The machine did not switch into ACPI mode when asked.
    AcpiModeRefused,
    /// The registers were written and the machine still runs.
    StillRunning,
}

impl fmt::Display for PowerOffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerOffError::NoTables => "no ACPI tables",
            PowerOffError::NoPm1Control => "the FADT has no PM1a control block",
            PowerOffError::MemoryMappedPm1 => "memory-mapped PM1 control is not supported",
            PowerOffError::NoS5 => "the DSDT has no usable \\_S5",
            PowerOffError::AcpiModeRefused => "the machine did not enter ACPI mode",
            PowerOffError::StillRunning => "the machine is still running after SLP_EN",
        })
    }
}

/// PM1 control: sleep enable.
const SLP_EN: u16 = 1 << 13;
/// PM1 control: SCI enabled, i.e. the machine is in ACPI mode.
const SCI_EN: u16 = 1 << 0;
/// PM1 control: where SLP_TYP goes.
const SLP_TYP_SHIFT: u16 = 10;
/// How long to wait for ACPI mode, then for the power to go.
const WAIT_US: u64 = 1_000_000;

/// Powers the machine off through the FADT's PM1 control blocks with the
/// DSDT's `\_S5` sleep type. Returns only if that did not work.
pub fn power_off() -> PowerOffError {
    let Some(acpi) = tables() else {
        return PowerOffError::NoTables;
    };
    let (Some(fadt), Some(s5)) = (acpi.fadt, acpi.s5) else {
        return if acpi.fadt.is_none() {
            PowerOffError::NoPm1Control
        } else {
            PowerOffError::NoS5
        };
    };
    let port_of = |control| match control {
        Some(Pm1Control::Io(port)) => Ok(Some(port)),
        Some(Pm1Control::Memory(_)) => Err(PowerOffError::MemoryMappedPm1),
        None => Ok(None),
    };
    let pm1a = match port_of(fadt.pm1a_control) {
        Ok(Some(port)) => port,
        Ok(None) => return PowerOffError::NoPm1Control,
        Err(error) => return error,
    };
    let pm1b = match port_of(fadt.pm1b_control) {
        Ok(port) => port,
        Err(error) => return error,
    };
    if read16(pm1a) & SCI_EN == 0 && fadt.smi_command != 0 && fadt.acpi_enable != 0 {
        if let Ok(smi) = u16::try_from(fadt.smi_command) {
            write8(smi, fadt.acpi_enable);
            if !clock::wait_us(WAIT_US, || read16(pm1a) & SCI_EN != 0) {
                return PowerOffError::AcpiModeRefused;
            }
        }
    }
    log::info!(
        "power off: ACPI S5 through PM1a control {pm1a:#x} (SLP_TYPa {}, SLP_TYPb {})",
        s5.a,
        s5.b
    );
    write16(pm1a, u16::from(s5.a) << SLP_TYP_SHIFT | SLP_EN);
    if let Some(pm1b) = pm1b {
        write16(pm1b, u16::from(s5.b) << SLP_TYP_SHIFT | SLP_EN);
    }
    clock::delay_us(WAIT_US);
    PowerOffError::StillRunning
}

/// Powers the machine off: through ACPI; if that fails and this is a
/// virtual machine, through QEMU's fixed power-off ports; else halts
/// with a message (a real PC's ports at those addresses may belong to
/// something else).
pub fn shut_down() -> ! {
    let error = power_off();
    kprintln!("ACPI power-off failed: {error}");
    if cpu::features().hypervisor {
        // QEMU's PM1a control ports (PIIX4 and ICH9 at 0x604, older QEMU
        // and Bochs at 0xB004).
        kprintln!("running under a hypervisor: trying QEMU's power-off ports");
        for port in [0x604u16, 0xB004] {
            // SLP_EN with SLP_TYP 0, QEMU's soft-off.
            write16(port, SLP_EN);
        }
    }
    kprintln!("It is now safe to turn off the computer.");
    cpu::halt_forever()
}

fn read16(port: u16) -> u16 {
    // SAFETY: reading a PM1 control register the FADT names has no effect
    // on memory.
    unsafe { Port::<u16>::new(port).read() }
}

fn write16(port: u16, value: u16) {
    // SAFETY: writing a PM1 control register (the FADT's, or QEMU's under
    // a hypervisor) changes the machine's power state, never memory.
    unsafe { Port::<u16>::new(port).write(value) }
}

fn write8(port: u16, value: u8) {
    // SAFETY: the SMI command port the FADT names, with the value it names
    // for entering ACPI mode; no effect on memory.
    unsafe { Port::<u8>::new(port).write(value) }
}
