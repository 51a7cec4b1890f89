//! The user program image format: a flat binary with a 32-byte header,
//! checked completely before anything is mapped.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "INCRUSR1"
//!      8     4  entry: offset of the first instruction, inside the code
//!     12     4  code bytes (mapped read + execute), after the header
//!     16     4  data bytes (mapped read + write, no-execute), after the code
//!     20     4  bss bytes (zero-filled, read + write, no-execute)
//!     24     4  stack bytes (read + write, no-execute, filled on demand)
//!     28     4  reserved, 0
//! ```
//!
//! All fields are little-endian. The code starts at
//! [`LOAD_BASE`], the data at the next page after the code, the bss
//! right after the data (page-rounded). The stack ends at [`STACK_TOP`],
//! with an unmapped guard page below it.
#![forbid(unsafe_code)]

use core::fmt;

use mm::layout::{PAGE_SIZE, USER_END, USER_START};

/// What every image starts with.
pub const MAGIC: [u8; 8] = *b"INCRUSR1";
/// Size of the header.
pub const HEADER_SIZE: usize = 32;
/// Where an image's code is loaded: 4 MiB into the user half.
pub const LOAD_BASE: u64 = USER_START + 0x40_0000;
/// The top of a program's stack: 1 MiB below the end of the user half.
pub const STACK_TOP: u64 = USER_END - 0x10_0000;
/// Most code + data + bss an image may ask for.
pub const MAX_IMAGE: u64 = 64 * 1024 * 1024;
/// Most stack an image may ask for.
pub const MAX_STACK: u64 = 8 * 1024 * 1024;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer bytes than a header.
    TooShort(usize),
    /// The first 8 bytes are not [`MAGIC`].
    BadMagic,
    /// The reserved field is not 0.
    Reserved(u32),
    /// No code at all.
    NoCode,
    /// The entry point is not inside the code.
    EntryOutsideCode {
        /// The entry offset.
        entry: u32,
        /// The code size.
        code: u32,
    },
    /// Header, code and data do not add up to the image's length.
    SizeMismatch {
        /// What the header says.
        declared: u64,
        /// What was given.
        actual: u64,
    },
    /// More memory than [`MAX_IMAGE`] / [`MAX_STACK`].
    TooLarge,
    /// A stack smaller than one page.
    NoStack,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort(len) => {
                write!(f, "{len} bytes, shorter than the {HEADER_SIZE}-byte header")
            }
            Self::BadMagic => f.write_str("not a user program image (bad magic)"),
            Self::Reserved(value) => write!(f, "reserved header field is {value:#x}, not 0"),
            Self::NoCode => f.write_str("the image has no code"),
            Self::EntryOutsideCode { entry, code } => {
                write!(f, "entry offset {entry:#x} is outside the {code}-byte code")
            }
            Self::SizeMismatch { declared, actual } => write!(
                f,
                "header, code and data make {declared} bytes but the image has {actual}"
            ),
            Self::TooLarge => write!(
                f,
                "asks for more than {} MiB of memory or {} MiB of stack",
                MAX_IMAGE >> 20,
                MAX_STACK >> 20
            ),
            Self::NoStack => f.write_str("a stack of less than one page"),
        }
    }
}

/// A checked image: where each part goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image<'a> {
    /// The code bytes, loaded at [`LOAD_BASE`].
    pub code: &'a [u8],
    /// The data bytes, loaded at [`Image::data_base`].
    pub data: &'a [u8],
    /// Zero-filled bytes after the data.
    pub bss: u64,
    /// Stack bytes below [`STACK_TOP`].
    pub stack: u64,
    /// The entry point's offset in the code.
    pub entry: u64,
}

fn field(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

/// Whole pages covering `bytes`.
pub const fn page_round(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl<'a> Image<'a> {
    /// Checks `bytes` as an image; nothing about it is trusted before.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_SIZE {
            return Err(ImageError::TooShort(bytes.len()));
        }
        if bytes[..8] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let (entry, code, data, bss, stack, reserved) = (
            field(bytes, 8),
            field(bytes, 12),
            field(bytes, 16),
            field(bytes, 20),
            field(bytes, 24),
            field(bytes, 28),
        );
        if reserved != 0 {
            return Err(ImageError::Reserved(reserved));
        }
        if code == 0 {
            return Err(ImageError::NoCode);
        }
        if entry >= code {
            return Err(ImageError::EntryOutsideCode { entry, code });
        }
        let declared = HEADER_SIZE as u64 + u64::from(code) + u64::from(data);
        if declared != bytes.len() as u64 {
            return Err(ImageError::SizeMismatch {
                declared,
                actual: bytes.len() as u64,
            });
        }
        let memory = page_round(u64::from(code)) + page_round(u64::from(data) + u64::from(bss));
        if memory > MAX_IMAGE || u64::from(stack) > MAX_STACK {
            return Err(ImageError::TooLarge);
        }
        if u64::from(stack) < PAGE_SIZE {
            return Err(ImageError::NoStack);
        }
        let code_end = HEADER_SIZE + code as usize;
        Ok(Self {
            code: &bytes[HEADER_SIZE..code_end],
            data: &bytes[code_end..],
            bss: u64::from(bss),
            stack: page_round(u64::from(stack)),
            entry: u64::from(entry),
        })
    }

    /// Where the data (then the bss) starts.
    pub fn data_base(&self) -> u64 {
        LOAD_BASE + page_round(self.code.len() as u64)
    }

    /// Bytes of data + bss, page-rounded (0 if there are none).
    pub fn data_span(&self) -> u64 {
        page_round(self.data.len() as u64 + self.bss)
    }

    /// The entry point's address.
    pub fn entry_point(&self) -> u64 {
        LOAD_BASE + self.entry
    }

    /// The lowest address of the stack region.
    pub fn stack_base(&self) -> u64 {
        STACK_TOP - self.stack
    }
}

#[cfg(test)]
mod tests;
