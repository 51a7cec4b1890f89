//! Multiboot2 boot information -> [`BootInfo`], validated.
//!
//! The boot stub copies the structure GRUB built into a buffer inside the
//! kernel image (GRUB may place it anywhere below 4 GiB, beyond the boot
//! identity map), so parsing works on a byte slice and can be host-tested
//! with malformed inputs.

use core::fmt;

use arrayvec::ArrayVec;
use mm::pmm::PhysRange;
use multiboot2::{BootInformation, BootInformationHeader, FramebufferType};

/// Most memory-map entries kept; firmware maps on PCs have a few dozen.
pub const MAX_REGIONS: usize = 128;

/// How the firmware describes a range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Available,
    /// Reserved by firmware or hardware.
    Reserved,
    /// ACPI tables: usable once they have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage: must be preserved.
    AcpiNvs,
    /// Defective RAM.
    Defective,
    /// A type number this kernel does not know (treated as reserved).
    Other(u32),
}

impl MemoryKind {
    fn from_multiboot(raw: u32) -> Self {
        match raw {
            1 => MemoryKind::Available,
            2 => MemoryKind::Reserved,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Defective,
            other => MemoryKind::Other(other),
        }
    }

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            MemoryKind::Available => "available",
            MemoryKind::Reserved => "reserved",
            MemoryKind::AcpiReclaimable => "ACPI reclaimable",
            MemoryKind::AcpiNvs => "ACPI NVS",
            MemoryKind::Defective => "defective",
            MemoryKind::Other(_) => "unknown",
        }
    }
}

/// One entry of the firmware memory map, exactly as reported (not yet
/// sorted, merged or aligned: the PMM does that).
///
/// The firmware's start and length are kept verbatim rather than as a
/// [`PhysRange`]: a bogus entry's length may run past `u64::MAX`, which no
/// range can hold, and the map is reported (and its available bytes summed)
/// as the firmware gave it. [`MemoryRegion::range`] is the one conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub start: u64,
    /// Length in bytes, as reported (may run past `u64::MAX`).
    pub len: u64,
    /// What the range is.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// The bytes it describes, ending at `u64::MAX` for entries that would
    /// run past it.
    pub fn range(&self) -> PhysRange {
        PhysRange::from_len(self.start, self.len)
    }
}

/// A module GRUB loaded next to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// Where it is in physical memory (never ending before it starts:
    /// such a tag is rejected).
    pub range: PhysRange,
    /// The module's command line.
    pub cmdline: &'a str,
}

/// Which firmware started GRUB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS under QEMU).
    Bios,
    /// UEFI (OVMF under QEMU).
    Uefi,
}

/// Where a colour channel sits in a direct-colour pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Bit position of the channel's lowest bit.
    pub position: u8,
    /// Number of bits.
    pub size: u8,
}

/// The kind of display GRUB left us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramebufferKind {
    /// Direct-colour pixels with these channel positions.
    Rgb {
        /// Red channel.
        red: ChannelLayout,
        /// Green channel.
        green: ChannelLayout,
        /// Blue channel.
        blue: ChannelLayout,
    },
    /// Palette-indexed pixels.
    Indexed,
    /// VGA/EGA text mode: width and height are in characters.
    EgaText,
}

/// The framebuffer GRUB set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramebufferInfo {
    /// Physical address of the first pixel (or character cell).
    pub address: u64,
    /// Bytes per line.
    pub pitch: u32,
    /// Width in pixels (characters for text mode).
    pub width: u32,
    /// Height in pixels (characters for text mode).
    pub height: u32,
    /// Bits per pixel.
    pub bpp: u8,
    /// Pixel format.
    pub kind: FramebufferKind,
}

impl FramebufferInfo {
    /// Size of the framebuffer in bytes.
    pub fn size(&self) -> u64 {
        u64::from(self.pitch) * u64::from(self.height)
    }
}

/// Why the boot information was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// EAX did not hold the Multiboot2 magic.
    BadMagic(u32),
    /// The structure is not 8-byte aligned.
    Misaligned,
    /// The header claims more bytes than there are (or fewer than a header).
    Truncated {
        /// Size from the header.
        claimed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// The tags do not form a valid sequence ending in an end tag.
    MalformedTags,
    /// A module tag whose end lies below its start.
    BadModule {
        /// Its offset from the start of the structure.
        offset: usize,
    },
    /// A tag we read is too short or inconsistent for its type.
    BadTag {
        /// The tag's type number.
        tag_type: u32,
        /// Its offset from the start of the structure.
        offset: usize,
    },
    /// There is no memory-map tag, so we cannot know where RAM is.
    NoMemoryMap,
    /// More memory-map entries than [`MAX_REGIONS`].
    TooManyRegions(usize),
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::BadMagic(magic) => write!(
                f,
                "bad Multiboot2 magic {magic:#x} (expected {:#x})",
                super::MULTIBOOT2_BOOTLOADER_MAGIC
            ),
            BootInfoError::Misaligned => f.write_str("boot information is not 8-byte aligned"),
            BootInfoError::Truncated { claimed, available } => write!(
                f,
                "boot information truncated: header says {claimed} bytes, {available} present"
            ),
            BootInfoError::MalformedTags => f.write_str("boot information tags are malformed"),
            BootInfoError::BadTag { tag_type, offset } => write!(
                f,
                "boot information tag of type {tag_type} at offset {offset} is malformed"
            ),
            BootInfoError::BadModule { offset } => write!(
                f,
                "boot module tag at offset {offset} ends before it starts"
            ),
            BootInfoError::NoMemoryMap => f.write_str("bootloader gave no memory map"),
            BootInfoError::TooManyRegions(count) => write!(
                f,
                "memory map has {count} entries, more than the {MAX_REGIONS} supported"
            ),
        }
    }
}

/// Everything the kernel uses from the Multiboot2 information.
#[derive(Clone, Debug)]
pub struct BootInfo<'a> {
    regions: ArrayVec<MemoryRegion, MAX_REGIONS>,
    /// The structure itself (validated), walked again for the modules, so
    /// that no fixed capacity can drop one.
    bytes: &'a [u8],
    /// The kernel command line (empty if none).
    pub cmdline: &'a str,
    /// The bootloader's name (empty if none).
    pub bootloader: &'a str,
    /// The framebuffer, if GRUB reported one.
    pub framebuffer: Option<FramebufferInfo>,
    /// BIOS or UEFI.
    pub firmware: Firmware,
    /// Size of the structure in bytes.
    pub total_size: usize,
    /// Where GRUB put the structure in physical memory (the kernel works
    /// on a copy; the original stays reserved). Set by the caller of
    /// [`BootInfo::parse`], which knows it; 0 in host tests.
    pub physical_address: u64,
}

impl<'a> BootInfo<'a> {
    /// Validates the magic and parses the information in `bytes`.
    ///
    /// `bytes` must start at the structure's first byte; it may be longer
    /// than the structure (the copy buffer is), never shorter.
    pub fn parse(magic: u32, bytes: &'a [u8]) -> Result<Self, BootInfoError> {
        if magic != super::MULTIBOOT2_BOOTLOADER_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let claimed = match bytes.get(..4) {
            Some(size) => u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize,
            None => 0,
        };
        if claimed < 16 || claimed > bytes.len() {
            return Err(BootInfoError::Truncated {
                claimed,
                available: bytes.len(),
            });
        }
        if bytes.as_ptr().align_offset(8) != 0 {
            return Err(BootInfoError::Misaligned);
        }
        validate_tags(&bytes[..claimed])?;
        // SAFETY: the pointer is 8-byte aligned and `claimed` bytes from it
        // are inside `bytes`, which lives for 'a; `load` only reads within
        // the total size it finds in the header, checked just above.
        let info = unsafe { BootInformation::load(bytes.as_ptr().cast::<BootInformationHeader>()) }
            .map_err(|_| BootInfoError::MalformedTags)?;
        Self::from_multiboot(&info, bytes, claimed)
    }

    fn from_multiboot(
        info: &BootInformation<'_>,
        bytes: &'a [u8],
        total_size: usize,
    ) -> Result<Self, BootInfoError> {
        let map = info.memory_map_tag().ok_or(BootInfoError::NoMemoryMap)?;
        let areas = map.memory_areas();
        if areas.len() > MAX_REGIONS {
            return Err(BootInfoError::TooManyRegions(areas.len()));
        }
        let regions = areas
            .iter()
            .map(|area| MemoryRegion {
                start: area.start_address(),
                len: area.size(),
                kind: MemoryKind::from_multiboot(area.typ().into()),
            })
            .collect();

        let framebuffer = match info.framebuffer_tag() {
            Some(Ok(tag)) => tag.buffer_type().ok().map(|kind| FramebufferInfo {
                address: tag.address(),
                pitch: tag.pitch(),
                width: tag.width(),
                height: tag.height(),
                bpp: tag.bpp(),
                kind: match kind {
                    FramebufferType::RGB { red, green, blue } => FramebufferKind::Rgb {
                        red: ChannelLayout {
                            position: red.position,
                            size: red.size,
                        },
                        green: ChannelLayout {
                            position: green.position,
                            size: green.size,
                        },
                        blue: ChannelLayout {
                            position: blue.position,
                            size: blue.size,
                        },
                    },
                    FramebufferType::Indexed { .. } => FramebufferKind::Indexed,
                    FramebufferType::Text => FramebufferKind::EgaText,
                },
            }),
            _ => None,
        };

        // GRUB passes the EFI system table (and often the EFI memory map)
        // only when UEFI firmware started it.
        let uefi = info.efi_sdt64_tag().is_some()
            || info.efi_sdt32_tag().is_some()
            || info.efi_memory_map_tag().is_some();

        Ok(Self {
            regions,
            bytes: &bytes[..total_size],
            cmdline: rebase(
                bytes,
                info.command_line_tag()
                    .and_then(|tag| tag.cmdline().ok())
                    .unwrap_or(""),
            ),
            bootloader: rebase(
                bytes,
                info.boot_loader_name_tag()
                    .and_then(|tag| tag.name().ok())
                    .unwrap_or(""),
            ),
            framebuffer,
            firmware: if uefi { Firmware::Uefi } else { Firmware::Bios },
            total_size,
            physical_address: 0,
        })
    }

    /// The structure's bytes, as validated.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The memory map, in the order the firmware gave it.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions
    }

    /// Every boot module, in the order GRUB listed them (however many).
    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + Clone + 'a {
        Tags {
            bytes: self.bytes,
            offset: 8,
        }
        .filter(|&(tag, _)| tag == tag_type::MODULE)
        .filter_map(|(_, body)| {
            // validate_tags checked the size (>= 16) and end >= start.
            let start = read_u32(body, 8)?;
            let end = read_u32(body, 12)?;
            let text = &body[16..];
            let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
            Some(Module {
                range: PhysRange {
                    start: u64::from(start),
                    end: u64::from(end),
                },
                cmdline: core::str::from_utf8(text).unwrap_or(""),
            })
        })
    }

    /// The RSDP GRUB copied into the structure: the ACPI 2.0+ tag's if
    /// there is one, else the ACPI 1.0 tag's (unchecked bytes: the ACPI
    /// parser validates them).
    pub fn acpi_rsdp(&self) -> Option<&'a [u8]> {
        let tag_body = |wanted| {
            Tags {
                bytes: self.bytes,
                offset: 8,
            }
            .find(|&(tag, _)| tag == wanted)
            .map(|(_, tag)| &tag[8..])
        };
        tag_body(tag_type::ACPI_NEW).or_else(|| tag_body(tag_type::ACPI_OLD))
    }

    /// Total bytes of RAM the map reports as available.
    pub fn available_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|region| region.kind == MemoryKind::Available)
            .fold(0u64, |sum, region| sum.saturating_add(region.len))
    }
}

/// Multiboot2 tag types this module reads.
mod tag_type {
    pub const END: u32 = 0;
    pub const MODULE: u32 = 3;
    pub const MEMORY_MAP: u32 = 6;
    pub const FRAMEBUFFER: u32 = 8;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
}

/// The tags of a structure [`validate_tags`] accepted: (type, whole tag).
#[derive(Clone)]
struct Tags<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let tag = read_u32(self.bytes, self.offset)?;
        let size = read_u32(self.bytes, self.offset + 4)? as usize;
        let body = self
            .bytes
            .get(self.offset..self.offset.checked_add(size)?)?;
        if tag == tag_type::END || size < 8 {
            return None;
        }
        self.offset = (self.offset + size).next_multiple_of(8);
        Some((tag, body))
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
}

/// Checks every tag's size against what its type needs, before the
/// `multiboot2` crate reads it: the crate asserts (panics) on some malformed
/// tags, and a kernel must reject bad input with an error instead.
fn validate_tags(bytes: &[u8]) -> Result<(), BootInfoError> {
    const MEMORY_MAP_HEADER: usize = 16;
    const MEMORY_MAP_ENTRY: usize = 24;
    const FRAMEBUFFER_BASE: usize = 32;
    let mut offset = 8;
    loop {
        let (Some(tag), Some(size)) = (read_u32(bytes, offset), read_u32(bytes, offset + 4)) else {
            return Err(BootInfoError::MalformedTags);
        };
        let size = size as usize;
        let end = offset
            .checked_add(size)
            .ok_or(BootInfoError::MalformedTags)?;
        if size < 8 || end > bytes.len() {
            return Err(BootInfoError::MalformedTags);
        }
        let body = &bytes[offset..end];
        let valid = match tag {
            tag_type::END => return Ok(()),
            tag_type::MODULE => {
                if size >= 16 && read_u32(body, 12) < read_u32(body, 8) {
                    return Err(BootInfoError::BadModule { offset });
                }
                size >= 16
            }
            // Fixed-size tags: the crate asserts their exact size when read.
            4 | 12 | 20 => size == 16,
            5 => size == 20,
            10 => size == 28,
            11 | 19 | 21 => size == 12,
            18 => size == 8,
            // The EFI memory map: descriptor size and version, then descriptors.
            17 => size >= 16,
            tag_type::MEMORY_MAP => {
                size >= MEMORY_MAP_HEADER
                    && read_u32(body, 8) == Some(MEMORY_MAP_ENTRY as u32)
                    && (size - MEMORY_MAP_HEADER).is_multiple_of(MEMORY_MAP_ENTRY)
            }
            tag_type::FRAMEBUFFER => {
                size >= FRAMEBUFFER_BASE
                    && match body[29] {
                        // Indexed: a u16 colour count, then 3 bytes a colour.
                        0 => body.get(32..34).is_some_and(|count| {
                            let colors = usize::from(u16::from_le_bytes([count[0], count[1]]));
                            size >= 34 + 3 * colors
                        }),
                        // Direct RGB: six bytes of channel positions and sizes.
                        1 => size >= FRAMEBUFFER_BASE + 6,
                        _ => true,
                    }
            }
            _ => true,
        };
        if !valid {
            return Err(BootInfoError::BadTag {
                tag_type: tag,
                offset,
            });
        }
        offset = end.next_multiple_of(8);
    }
}

/// Re-borrows a string found inside `bytes` with the lifetime of `bytes`
/// (the `multiboot2` accessors tie it to a shorter borrow). Strings that are
/// not inside `bytes` become empty.
fn rebase<'a>(bytes: &'a [u8], text: &str) -> &'a str {
    let offset = (text.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
    offset
        .checked_add(text.len())
        .and_then(|end| bytes.get(offset..end))
        .and_then(|slice| core::str::from_utf8(slice).ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests;
