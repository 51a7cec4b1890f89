//! Integrity checks run after every other test: what the bootloader
//! handed over (the information structure, the modules) must have come
//! through the whole suite, which exhausts and writes every free frame,
//! byte for byte.

use core::ptr;

use x86_64::PhysAddr;

use super::{Context, Expect, Failure, Test, TestResult};
use crate::kernel_mm::phys_to_virt;
use crate::{kassert, kassert_eq, kprintln};

/// The integrity tests (run last).
pub static TESTS: &[Test] = &[
    Test {
        name: "integrity::boot_information_is_intact",
        run: boot_information_is_intact,
        expects: Expect::NOTHING,
    },
    Test {
        name: "integrity::boot_modules_are_intact",
        run: boot_modules_are_intact,
        expects: Expect::NOTHING,
    },
];

/// The word of a module's command line that carries its FNV-1a 64 hash
/// (`scripts/make-modules.py` writes it; GRUB's configuration carries it
/// into the boot information, which the kernel copies at entry).
pub const MODULE_HASH_WORD: &str = "fnv1a=";

fn fnv1a(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3)
}
const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// Reads physical byte `address` through the direct map.
fn read_phys(address: u64) -> u8 {
    // SAFETY: callers pass bytes of the boot information or of a module,
    // RAM that is reserved (never handed out) and covered by the direct map.
    unsafe { ptr::read_volatile(phys_to_virt(PhysAddr::new(address)).as_ptr::<u8>()) }
}

fn boot_information_is_intact(context: &Context<'_>) -> TestResult {
    let info = context.boot_info;
    let copy = info.bytes();
    kassert!(info.physical_address != 0, "no physical address recorded");
    let changed = copy
        .iter()
        .enumerate()
        .filter(|&(offset, &byte)| read_phys(info.physical_address + offset as u64) != byte)
        .count();
    kprintln!(
        "    {} bytes at {:#x}, {changed} changed since entry",
        copy.len(),
        info.physical_address
    );
    kassert_eq!(changed, 0);
    Ok(())
}

fn boot_modules_are_intact(context: &Context<'_>) -> TestResult {
    let (mut checked, mut bytes, mut other) = (0usize, 0u64, 0usize);
    for (index, module) in context.boot_info.modules().enumerate() {
        let expected = module
            .cmdline
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix(MODULE_HASH_WORD))
            .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
        let Some(expected) = expected else {
            other += 1;
            continue;
        };
        let hash = (module.range.start..module.range.end)
            .fold(FNV_OFFSET, |hash, address| fnv1a(hash, read_phys(address)));
        if hash != expected {
            crate::ktest::set_detail(format_args!(
                "    module {index} ({}) at {:#x}-{:#x}: hash {hash:#x}, expected {expected:#x}",
                module.cmdline, module.range.start, module.range.end
            ));
            return Err(Failure {
                message: "a boot module changed since GRUB loaded it",
                file: file!(),
                line: line!(),
            });
        }
        checked += 1;
        bytes += module.range.len();
    }
    kprintln!("    {checked} boot modules intact ({bytes} bytes hashed), {other} without a hash");
    Ok(())
}
