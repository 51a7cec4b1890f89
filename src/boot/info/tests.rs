//! Host tests of boot-information parsing, including malformed inputs.

use super::*;
use crate::boot::MULTIBOOT2_BOOTLOADER_MAGIC as MAGIC;

/// Builds a Multiboot2 information structure in an 8-aligned buffer.
struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    fn new() -> Self {
        Self { bytes: vec![0; 8] }
    }

    fn tag(mut self, typ: u32, payload: &[u8]) -> Self {
        let size = 8 + payload.len() as u32;
        self.bytes.extend_from_slice(&typ.to_le_bytes());
        self.bytes.extend_from_slice(&size.to_le_bytes());
        self.bytes.extend_from_slice(payload);
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
        self
    }

    fn string(self, typ: u32, text: &str) -> Self {
        let mut payload = text.as_bytes().to_vec();
        payload.push(0);
        self.tag(typ, &payload)
    }

    fn memory_map(self, entries: &[(u64, u64, u32)]) -> Self {
        let mut payload = Vec::new();
        payload.extend_from_slice(&24u32.to_le_bytes()); // entry size
        payload.extend_from_slice(&0u32.to_le_bytes()); // entry version
        for &(base, len, typ) in entries {
            payload.extend_from_slice(&base.to_le_bytes());
            payload.extend_from_slice(&len.to_le_bytes());
            payload.extend_from_slice(&typ.to_le_bytes());
            payload.extend_from_slice(&0u32.to_le_bytes());
        }
        self.tag(6, &payload)
    }

    fn module(self, start: u32, end: u32, cmdline: &str) -> Self {
        let mut payload = Vec::new();
        payload.extend_from_slice(&start.to_le_bytes());
        payload.extend_from_slice(&end.to_le_bytes());
        payload.extend_from_slice(cmdline.as_bytes());
        payload.push(0);
        self.tag(3, &payload)
    }

    /// Appends the end tag and fixes the total size.
    fn finish(self) -> Aligned {
        let mut bytes = self.tag(0, &[]).bytes;
        let total = bytes.len() as u32;
        bytes[..4].copy_from_slice(&total.to_le_bytes());
        Aligned::from(&bytes)
    }
}

/// Bytes stored in u64s so they are 8-byte aligned.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn from(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8) + 1];
        for (index, byte) in bytes.iter().enumerate() {
            words[index / 8] |= u64::from(*byte) << (8 * (index % 8));
        }
        Self {
            words,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec holds at least `len` initialised bytes, u8 has no
        // alignment requirement and the slice borrows `self`.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

fn qemu_like() -> Aligned {
    Builder::new()
        .string(1, "test pmm.max=32M")
        .string(2, "GRUB 2.06")
        .module(0x30_0000, 0x30_1000, "initrd")
        .memory_map(&[
            (0, 0x9_FC00, 1),
            (0x9_FC00, 0x400, 2),
            (0x10_0000, 0x7EE_0000, 1),
            (0xFFFC_0000, 0x4_0000, 2),
        ])
        .tag(8, &rgb_framebuffer())
        .finish()
}

/// What GRUB on UEFI adds: EFI system table, boot-services flag, EFI map.
fn uefi_like() -> Aligned {
    let mut efi_map = Vec::new();
    efi_map.extend_from_slice(&48u32.to_le_bytes()); // descriptor size
    efi_map.extend_from_slice(&1u32.to_le_bytes()); // descriptor version
    efi_map.extend_from_slice(&[0u8; 48]); // one descriptor
    Builder::new()
        .string(1, "test")
        .memory_map(&[(0x10_0000, 0x700_0000, 1)])
        .tag(12, &0x7F00_0000u64.to_le_bytes())
        .tag(18, &[])
        .tag(17, &efi_map)
        .tag(8, &rgb_framebuffer())
        .finish()
}

/// A 1024x768x32 direct-colour framebuffer tag body (after the 8-byte header).
fn rgb_framebuffer() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8000_0000u64.to_le_bytes()); // address
    body.extend_from_slice(&4096u32.to_le_bytes()); // pitch
    body.extend_from_slice(&1024u32.to_le_bytes()); // width
    body.extend_from_slice(&768u32.to_le_bytes()); // height
    body.extend_from_slice(&[32, 1, 0, 0]); // bpp, type RGB, reserved
    body.extend_from_slice(&[16, 8, 8, 8, 0, 8]); // red, green, blue (position, size)
    body
}

#[test]
fn parses_a_well_formed_structure() {
    let buffer = qemu_like();
    let info = BootInfo::parse(MAGIC, buffer.bytes()).expect("valid");
    assert_eq!(info.cmdline, "test pmm.max=32M");
    assert_eq!(info.bootloader, "GRUB 2.06");
    assert_eq!(info.memory_map().len(), 4);
    assert_eq!(info.memory_map()[2].start, 0x10_0000);
    assert_eq!(info.memory_map()[2].kind, MemoryKind::Available);
    assert_eq!(info.memory_map()[3].kind, MemoryKind::Reserved);
    assert_eq!(info.available_bytes(), 0x9_FC00 + 0x7EE_0000);
    assert_eq!(info.firmware, Firmware::Bios);
    let framebuffer = info.framebuffer.expect("framebuffer tag");
    assert_eq!(
        (
            framebuffer.address,
            framebuffer.pitch,
            framebuffer.width,
            framebuffer.height
        ),
        (0x8000_0000, 4096, 1024, 768)
    );
    assert_eq!(
        framebuffer.kind,
        FramebufferKind::Rgb {
            red: ChannelLayout {
                position: 16,
                size: 8
            },
            green: ChannelLayout {
                position: 8,
                size: 8
            },
            blue: ChannelLayout {
                position: 0,
                size: 8
            },
        }
    );
    let modules: Vec<_> = info.modules().collect();
    assert_eq!(
        modules,
        vec![Module {
            range: PhysRange {
                start: 0x30_0000,
                end: 0x30_1000,
            },
            cmdline: "initrd"
        }]
    );
    assert_eq!(info.total_size, buffer.len);
}

#[test]
fn a_longer_buffer_than_the_structure_is_fine() {
    let buffer = qemu_like();
    let mut longer = buffer.bytes().to_vec();
    longer.resize(4096, 0xAA);
    let longer = Aligned::from(&longer);
    assert!(BootInfo::parse(MAGIC, longer.bytes()).is_ok());
}

#[test]
fn rejects_a_wrong_magic() {
    let buffer = qemu_like();
    assert_eq!(
        BootInfo::parse(0x2BAD_B002, buffer.bytes()).unwrap_err(),
        BootInfoError::BadMagic(0x2BAD_B002)
    );
}

#[test]
fn rejects_a_misaligned_structure() {
    let buffer = qemu_like();
    let mut shifted = vec![0u8; 4];
    shifted.extend_from_slice(buffer.bytes());
    let shifted = Aligned::from(&shifted);
    assert_eq!(
        BootInfo::parse(MAGIC, &shifted.bytes()[4..]).unwrap_err(),
        BootInfoError::Misaligned
    );
}

#[test]
fn rejects_a_truncated_structure() {
    let buffer = qemu_like();
    let cut = buffer.len - 16;
    let truncated = Aligned::from(&buffer.bytes()[..cut]);
    assert_eq!(
        BootInfo::parse(MAGIC, truncated.bytes()).unwrap_err(),
        BootInfoError::Truncated {
            claimed: buffer.len,
            available: cut
        }
    );
    assert!(matches!(
        BootInfo::parse(MAGIC, &[]).unwrap_err(),
        BootInfoError::Truncated { claimed: 0, .. }
    ));
}

#[test]
fn rejects_a_structure_without_end_tag() {
    // The total size covers only the header and a command line tag.
    let mut bytes = Builder::new().string(1, "x").bytes;
    let total = bytes.len() as u32;
    bytes[..4].copy_from_slice(&total.to_le_bytes());
    let buffer = Aligned::from(&bytes);
    assert_eq!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::MalformedTags
    );
}

#[test]
fn rejects_a_tag_running_past_the_end() {
    let mut bytes = Builder::new().string(1, "hello").finish().bytes().to_vec();
    // Make the command-line tag claim 4 KiB.
    bytes[12..16].copy_from_slice(&4096u32.to_le_bytes());
    let buffer = Aligned::from(&bytes);
    assert_eq!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::MalformedTags
    );
}

#[test]
fn rejects_a_memory_map_with_a_foreign_entry_size() {
    let mut bytes = qemu_like().bytes().to_vec();
    // The memory map is the fourth tag: find it and claim 32-byte entries.
    let offset = find_tag(&bytes, 6);
    bytes[offset + 8..offset + 12].copy_from_slice(&32u32.to_le_bytes());
    let buffer = Aligned::from(&bytes);
    assert_eq!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::BadTag {
            tag_type: 6,
            offset
        }
    );
}

#[test]
fn rejects_a_framebuffer_tag_cut_short() {
    let mut payload = vec![0u8; 24];
    payload[21] = 1; // direct RGB, but no channel bytes follow
    let buffer = Builder::new()
        .memory_map(&[(0x10_0000, 0x100_0000, 1)])
        .tag(8, &payload)
        .finish();
    assert!(matches!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::BadTag { tag_type: 8, .. }
    ));
}

fn find_tag(bytes: &[u8], wanted: u32) -> usize {
    let mut offset = 8;
    loop {
        let tag = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap());
        let size = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
        if tag == wanted {
            return offset;
        }
        offset += (size as usize).next_multiple_of(8);
    }
}

#[test]
fn rejects_a_missing_memory_map() {
    let buffer = Builder::new().string(1, "test").finish();
    assert_eq!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::NoMemoryMap
    );
}

#[test]
fn keeps_every_module_however_many() {
    // More modules than any fixed table would hold: each one must come back,
    // in order, because the PMM reserves exactly what this returns.
    let mut builder = Builder::new().memory_map(&[(0, 0x4000_0000, 1)]);
    for index in 0..100u32 {
        let start = 0x40_0000 + index * 0x5_0000;
        builder = builder.module(start, start + 0x5_0000, &format!("module{index}"));
    }
    let buffer = builder.finish();
    let info = BootInfo::parse(MAGIC, buffer.bytes()).unwrap();
    let modules: Vec<_> = info.modules().collect();
    assert_eq!(modules.len(), 100);
    for (index, module) in modules.iter().enumerate() {
        let start = 0x40_0000 + index as u64 * 0x5_0000;
        assert_eq!(
            (module.range.start, module.range.end),
            (start, start + 0x5_0000)
        );
        assert_eq!(module.cmdline, format!("module{index}"));
    }
}

#[test]
fn rejects_a_module_that_ends_before_it_starts() {
    let buffer = Builder::new()
        .memory_map(&[(0, 0x4000_0000, 1)])
        .module(0x50_0000, 0x40_0000, "backwards")
        .finish();
    assert!(matches!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::BadModule { .. }
    ));
}

#[test]
fn rejects_too_many_regions() {
    let entries: Vec<_> = (0..MAX_REGIONS as u64 + 1)
        .map(|index| (index * 0x1000, 0x1000, 1))
        .collect();
    let buffer = Builder::new().memory_map(&entries).finish();
    assert_eq!(
        BootInfo::parse(MAGIC, buffer.bytes()).unwrap_err(),
        BootInfoError::TooManyRegions(MAX_REGIONS + 1)
    );
}

#[test]
fn keeps_odd_entries_as_reported() {
    // Unsorted, overlapping, zero-length, wrapping and unknown-type entries
    // are passed through untouched; the PMM normalises them.
    let buffer = Builder::new()
        .memory_map(&[
            (0x20_0000, 0x10_0000, 1),
            (0x10_0000, 0x20_0000, 2),
            (0x50_0000, 0, 1),
            (u64::MAX - 0xFFF, 0x10_0000, 1),
            (0x60_0000, 0x1000, 42),
        ])
        .finish();
    let info = BootInfo::parse(MAGIC, buffer.bytes()).expect("valid");
    let map = info.memory_map();
    assert_eq!(map.len(), 5);
    assert_eq!(map[3].range().end, u64::MAX);
    assert_eq!(map[4].kind, MemoryKind::Other(42));
    assert_eq!(info.cmdline, "");
    assert_eq!(info.bootloader, "");
}

#[test]
fn detects_uefi_from_the_efi_system_table_tag() {
    let buffer = Builder::new()
        .memory_map(&[(0x10_0000, 0x100_0000, 1)])
        .tag(12, &0x7F00_0000u64.to_le_bytes())
        .finish();
    let info = BootInfo::parse(MAGIC, buffer.bytes()).expect("valid");
    assert_eq!(info.firmware, Firmware::Uefi);
}

mod fuzz {
    //! Random and mutated inputs: parsing never panics or reads out of
    //! bounds, and whatever it accepts is self-consistent.

    use super::*;
    use proptest::prelude::*;

    fn check_consistent(info: &BootInfo<'_>, len: usize) {
        assert!(info.total_size <= len);
        assert!(info.memory_map().len() <= MAX_REGIONS);
        let sum = info
            .memory_map()
            .iter()
            .filter(|region| region.kind == MemoryKind::Available)
            .fold(0u64, |sum, region| sum.saturating_add(region.len));
        assert_eq!(info.available_bytes(), sum);
        for module in info.modules() {
            assert!(module.range.start <= module.range.end);
        }
    }

    proptest! {
        #![proptest_config(mm::testing::cases(20_000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let buffer = Aligned::from(&bytes);
            if let Ok(info) = BootInfo::parse(MAGIC, buffer.bytes()) {
                check_consistent(&info, bytes.len());
            }
        }

        #[test]
        fn mutated_valid_structures_never_panic(
            uefi in any::<bool>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let seed = if uefi { uefi_like() } else { qemu_like() };
            let mut bytes = seed.bytes().to_vec();
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            let keep = cut.index(bytes.len() + 1);
            let buffer = Aligned::from(&bytes[..keep.max(bytes.len() / 2)]);
            if let Ok(info) = BootInfo::parse(MAGIC, buffer.bytes()) {
                check_consistent(&info, buffer.len);
            }
        }

        #[test]
        fn any_memory_map_is_kept_verbatim(
            entries in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u32..8), 0..MAX_REGIONS),
        ) {
            let buffer = Builder::new().memory_map(&entries).finish();
            let info = BootInfo::parse(MAGIC, buffer.bytes()).expect("well-formed");
            prop_assert_eq!(info.memory_map().len(), entries.len());
            for (region, &(start, len, _)) in info.memory_map().iter().zip(&entries) {
                prop_assert_eq!((region.start, region.len), (start, len));
                prop_assert!(region.range().end >= region.start);
            }
        }
    }
}

#[test]
fn the_acpi_2_rsdp_tag_wins_over_the_acpi_1_one() {
    let old = [0x11u8; 20];
    let new = [0x22u8; 36];
    let memory = [(0x10_0000, 0x100_0000, 1)];
    let both = Builder::new()
        .memory_map(&memory)
        .tag(14, &old)
        .tag(15, &new)
        .finish();
    let info = BootInfo::parse(MAGIC, both.bytes()).expect("valid");
    assert_eq!(info.acpi_rsdp(), Some(&new[..]));
    let only_old = Builder::new().memory_map(&memory).tag(14, &old).finish();
    let info = BootInfo::parse(MAGIC, only_old.bytes()).expect("valid");
    assert_eq!(info.acpi_rsdp(), Some(&old[..]));
    let none = Builder::new().memory_map(&memory).finish();
    assert_eq!(
        BootInfo::parse(MAGIC, none.bytes())
            .expect("valid")
            .acpi_rsdp(),
        None
    );
}
