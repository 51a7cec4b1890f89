//! The CMOS memory-size registers, which QEMU fills from `-m`.
//!
//! Used only by a test that checks the Multiboot2 memory map against the
//! amount of RAM the virtual machine really has.

use x86_64::instructions::port::Port;

fn read(register: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 are the CMOS index/data pair on every PC; bit 7
    // of the index keeps NMIs disabled while we read, as is customary.
    unsafe {
        index.write(0x80 | register);
        data.read()
    }
}

/// RAM size in bytes as QEMU reports it in CMOS: 16 MiB plus the 64 KiB
/// blocks between 16 MiB and 4 GiB (registers 0x34/0x35) plus the 64 KiB
/// blocks above 4 GiB (0x5B..0x5D). `None` if the registers are empty.
pub fn qemu_ram_size() -> Option<u64> {
    let below_4g = u64::from(read(0x34)) | u64::from(read(0x35)) << 8;
    let above_4g = u64::from(read(0x5B)) | u64::from(read(0x5C)) << 8 | u64::from(read(0x5D)) << 16;
    if below_4g == 0 {
        return None;
    }
    Some((16 << 20) + (below_4g << 16) + (above_4g << 16))
}
