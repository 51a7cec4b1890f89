//! The embedded user programs (asm/user_programs.s), the loader that puts
//! an image into a fresh address space, and running it.

use alloc::boxed::Box;
use core::fmt;

use x86_64::VirtAddr;

use super::entry::{self, Exit};
use super::image::{Image, ImageError, LOAD_BASE, STACK_TOP};
use super::space::{SpaceError, UserSpace};
use mm::aspace::Perms;

extern "C" {
    static user_probe_image: u8;
    static user_probe_image_end: u8;
}

/// The probe program's image.
pub fn probe_image() -> &'static [u8] {
    // SAFETY: the two symbols bound the image's bytes in .rodata
    // (asm/user_programs.s), which are never written.
    unsafe {
        let start = &raw const user_probe_image;
        let end = &raw const user_probe_image_end;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The probe's commands (RDI), documented in asm/user_programs.s.
pub mod probe {
    /// exit(RSI).
    pub const EXIT: u64 = 0;
    /// Writes a greeting; exits with the bytes written.
    pub const HELLO: u64 = 1;
    /// Maps RDX bytes at RSI and touches every page; exits with pages.
    pub const TOUCH: u64 = 2;
    /// Exits with the quadword at RSI.
    pub const READ: u64 = 3;
    /// Stores RDX at RSI.
    pub const STORE: u64 = 4;
    /// Calls RSI.
    pub const CALL: u64 = 5;
    /// Writes into its own code.
    pub const WRITE_CODE: u64 = 6;
    /// write(RSI, RDX); exits with the result.
    pub const WRITE_SYSCALL: u64 = 7;
    /// Spins RSI times.
    pub const SPIN: u64 = 8;
    /// Maps a page at RSI, makes it read-only, then writes it.
    pub const PROTECT: u64 = 9;
    /// sgdt (refused under UMIP).
    pub const SGDT: u64 = 10;
    /// System call number RSI; exits with the result.
    pub const RAW_SYSCALL: u64 = 11;
    /// Maps RDX bytes at RSI, unmaps them, reads them.
    pub const UNMAP: u64 = 12;
    /// TOUCH's "a fresh page was not zero".
    pub const NOT_ZERO: i64 = -100;
    /// TOUCH's "a page lost its value".
    pub const LOST: i64 = -101;
}

/// Why a program could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The image is malformed.
    Image(ImageError),
    /// The address space refused (out of memory).
    Space(SpaceError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(error) => write!(f, "bad image: {error}"),
            Self::Space(error) => write!(f, "no address space: {error}"),
        }
    }
}

impl From<SpaceError> for LoadError {
    fn from(error: SpaceError) -> Self {
        Self::Space(error)
    }
}

/// A loaded program: its address space and where it starts.
pub struct Program {
    /// Its address space (dropping the program destroys it).
    pub space: Box<UserSpace>,
    entry: VirtAddr,
    stack_top: VirtAddr,
    data: VirtAddr,
}

/// Loads `bytes` into a fresh address space: code read + execute, data
/// and bss read + write, a stack below [`STACK_TOP`] filled on demand
/// with an unmapped guard page below it. Nothing is mapped unless the
/// whole image checks out.
pub fn load(bytes: &[u8]) -> Result<Program, LoadError> {
    let image = Image::parse(bytes).map_err(LoadError::Image)?;
    let space = UserSpace::new()?;
    let code = VirtAddr::new(LOAD_BASE);
    let code_len = super::image::page_round(image.code.len() as u64);
    space.reserve(code, code_len, Perms::READ_EXEC)?;
    space.populate(code, image.code)?;
    if image.data_span() > 0 {
        let data = VirtAddr::new(image.data_base());
        space.reserve(data, image.data_span(), Perms::READ_WRITE)?;
        if !image.data.is_empty() {
            space.populate(data, image.data)?;
        }
    }
    space.reserve(
        VirtAddr::new(image.stack_base()),
        image.stack,
        Perms::READ_WRITE,
    )?;
    Ok(Program {
        space,
        entry: VirtAddr::new(image.entry_point()),
        stack_top: VirtAddr::new(STACK_TOP),
        data: VirtAddr::new(image.data_base()),
    })
}

impl Program {
    /// Runs the program on this CPU with `args` in RDI, RSI, RDX until
    /// it exits or the kernel ends it. It may run again (same memory).
    pub fn run(&self, args: [u64; 3]) -> Exit {
        let _loaded = self.space.activate();
        entry::enter(self.entry, self.stack_top, args)
    }

    /// A copy-on-write clone: the same program over a space that shares
    /// every page with this one until either writes.
    pub fn clone_cow(&self) -> Result<Program, SpaceError> {
        Ok(Program {
            space: self.space.clone_cow()?,
            entry: self.entry,
            stack_top: self.stack_top,
            data: self.data,
        })
    }

    /// Where its data (then bss) starts: read + write, no-execute.
    pub fn data(&self) -> VirtAddr {
        self.data
    }

    /// Where its code starts.
    pub fn code(&self) -> VirtAddr {
        VirtAddr::new(LOAD_BASE)
    }
}
