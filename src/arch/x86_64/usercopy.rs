//! Copies between kernel memory and user memory: checked ranges, an SMAP
//! window around the copy, and a fixup table that turns a fault in the
//! copy into an error (the copy loop is asm/usercopy.s).
//!
//! [`copy_from_user`] and [`copy_to_user`] check the user range before they
//! touch memory: it must start at a canonical address inside the user half
//! (`USER_START..USER_END`, never the kernel's entry 0 or higher half) and
//! end at or before `USER_END`. Each check failing has its own error. The
//! copy itself is one `rep movsb`, between `stac` and `clac` when CR4.SMAP
//! is on. If it faults on a user address (page not mapped, or mapped but
//! not permitted), the exception dispatcher calls [`fixup`], which finds the
//! instruction in the fixup table and resumes at its fixup label: the copy
//! returns [`UserCopyError::Fault`] with the first address it could not
//! copy (from the count `rep movsb` left, which the CPU keeps exact).
//! Every byte before that address was copied, none at or after it.
//!
//! Any other kernel-mode fault on a user address stays fatal.
//!
//! Why the copies are safe functions: the kernel never holds a Rust
//! reference into user memory, and whoever maps a user page (an `unsafe`
//! map) gives it a frame that belongs to the user address space alone. So
//! reading or writing user memory can neither break a Rust reference nor
//! reach kernel data, whatever a user passes in; the worst it gets is an
//! error.

use core::fmt;

use mm::layout::{is_user, USER_END};
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::VirtAddr;

use super::exceptions::{vector, TrapFrame};

core::arch::global_asm!(include_str!("../../../asm/usercopy.s"));

/// An address a user handed to the kernel: untrusted, checked only when
/// something is copied through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserPtr(u64);

impl UserPtr {
    /// Wraps a raw address (from a register or a user structure).
    pub const fn new(address: u64) -> Self {
        Self(address)
    }

    /// The raw address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The address `bytes` further on, or `None` if that wraps around.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(address) => Some(Self(address)),
            None => None,
        }
    }
}

/// A user range that passed the checks: canonical, inside the user half,
/// not running past its end. Its memory may still be unmapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSlice {
    start: u64,
    len: usize,
}

impl UserSlice {
    /// Checks `len` bytes from `start`. The start is checked even for an
    /// empty range, so a kernel pointer is refused whatever its length.
    pub fn new(start: UserPtr, len: usize) -> Result<Self, UserCopyError> {
        let address = start.as_u64();
        if VirtAddr::try_new(address).is_err() {
            return Err(UserCopyError::NonCanonical { address });
        }
        if !is_user(address) {
            return Err(UserCopyError::NotUserAddress { address });
        }
        match address.checked_add(len as u64) {
            Some(end) if end <= USER_END => Ok(Self {
                start: address,
                len,
            }),
            _ => Err(UserCopyError::LengthOverflow { address, len }),
        }
    }

    /// The first byte.
    pub const fn start(&self) -> UserPtr {
        UserPtr(self.start)
    }

    /// How many bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a copy between kernel and user memory did not happen (or stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserCopyError {
    /// The user pointer is not canonical (bits 63..47 differ); nothing was
    /// touched.
    NonCanonical {
        /// The pointer.
        address: u64,
    },
    /// The user pointer is canonical but outside the user half: a kernel
    /// address; nothing was touched.
    NotUserAddress {
        /// The pointer.
        address: u64,
    },
    /// The range starts in the user half but runs past its end (or wraps
    /// around); nothing was touched.
    LengthOverflow {
        /// The start of the range.
        address: u64,
        /// Its length.
        len: usize,
    },
    /// The copy faulted at `address` (not mapped, or not permitted): the
    /// bytes before it were copied, none at or after it.
    Fault {
        /// The first user address not copied.
        address: u64,
    },
}

impl fmt::Display for UserCopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NonCanonical { address } => {
                write!(f, "user pointer {address:#x} is not canonical")
            }
            Self::NotUserAddress { address } => {
                write!(f, "pointer {address:#x} is not in the user half")
            }
            Self::LengthOverflow { address, len } => write!(
                f,
                "{len} bytes from {address:#x} run past the end of the user half"
            ),
            Self::Fault { address } => {
                write!(
                    f,
                    "user address {address:#x} is not mapped or not permitted"
                )
            }
        }
    }
}

/// Copies `dst.len()` bytes from user memory at `src` into `dst`.
///
/// On [`UserCopyError::Fault`] the bytes of `dst` before `address - src`
/// hold user data and the rest are as they were; on any other error `dst`
/// is unchanged.
pub fn copy_from_user(dst: &mut [u8], src: UserPtr) -> Result<(), UserCopyError> {
    let user = UserSlice::new(src, dst.len())?;
    if user.is_empty() {
        return Ok(());
    }
    // SAFETY: 1. `dst` is a live, exclusive kernel buffer of `user.len`
    // bytes. 2. The source is `user.len` bytes of the user half (checked
    // above), which no Rust reference points into and which maps only
    // frames of the user address space (see the module documentation). 3.
    // A fault on it resumes through the fixup table just after the copy
    // instruction, registers as at the fault, so the routine returns
    // normally; `smap` is set only where CR4.SMAP (hence `stac`) is.
    let left = unsafe {
        usercopy_copy(
            dst.as_mut_ptr(),
            user.start as *const u8,
            user.len,
            smap_on(),
        )
    };
    finished(user, left)
}

/// Copies `src` into user memory at `dst`.
///
/// On [`UserCopyError::Fault`] the user bytes before `address` were
/// written and none at or after it; on any other error nothing was written.
pub fn copy_to_user(dst: UserPtr, src: &[u8]) -> Result<(), UserCopyError> {
    let user = UserSlice::new(dst, src.len())?;
    if user.is_empty() {
        return Ok(());
    }
    // SAFETY: 1. `src` is a live kernel buffer of `user.len` bytes. 2. The
    // destination is `user.len` bytes of the user half (checked above),
    // which no Rust reference points into and which maps only frames of
    // the user address space, so no kernel data is overwritten. 3. As in
    // `copy_from_user`: faults return through the fixup table, and `stac`
    // runs only with SMAP on.
    let left = unsafe { usercopy_copy(user.start as *mut u8, src.as_ptr(), user.len, smap_on()) };
    finished(user, left)
}

/// The copy routine's result: how many bytes of `user` it did not copy
/// (0, or after a fault the faulting byte and those after it).
fn finished(user: UserSlice, left: usize) -> Result<(), UserCopyError> {
    match left {
        0 => Ok(()),
        left => Err(UserCopyError::Fault {
            address: user.start + (user.len - left) as u64,
        }),
    }
}

/// 1 when this CPU runs with CR4.SMAP (so `stac`/`clac` exist and are
/// needed), else 0.
fn smap_on() -> u64 {
    u64::from(Cr4::read().contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION))
}

/// One entry of the fixup table in asm/usercopy.s.
#[repr(C)]
struct FixupEntry {
    /// An instruction that touches user memory.
    instruction: u64,
    /// Where to resume when it faults on a user address.
    fixup: u64,
}

extern "C" {
    fn usercopy_copy(dst: *mut u8, src: *const u8, len: usize, smap: u64) -> usize;
    static usercopy_fixup_table: FixupEntry;
    static usercopy_fixup_table_end: FixupEntry;
}

/// The fixup table, as laid out by asm/usercopy.s.
fn fixup_table() -> &'static [FixupEntry] {
    let start = (&raw const usercopy_fixup_table).cast::<FixupEntry>();
    let end = (&raw const usercopy_fixup_table_end) as usize;
    let count = (end - start as usize) / size_of::<FixupEntry>();
    // SAFETY: the asm defines `count` 16-byte, 8-aligned entries between
    // the two symbols, in .rodata, never written.
    unsafe { core::slice::from_raw_parts(start, count) }
}

/// Whether `rip` is one of the copy instructions (a fault there may be on
/// a user page that only needs filling).
pub fn in_copy(rip: u64) -> bool {
    fixup_table().iter().any(|entry| entry.instruction == rip)
}

/// Called by the exception dispatcher for a kernel-mode #PF or #GP (with
/// CR2 for a #PF): if the fault is a copy instruction of this module
/// faulting on a user address, makes the frame resume at that copy's fixup
/// label (registers as at the fault), from which the copy returns
/// [`UserCopyError::Fault`], and returns `true`. Any other fault (another
/// instruction, the kernel side of the copy, user mode) is left alone:
/// `false`.
///
/// For a #PF this is the last step: a handler that can populate user pages
/// on demand runs first and calls this only for a fault it did not resolve.
pub fn fixup(frame: &mut TrapFrame, address: u64) -> bool {
    if frame.cs & 3 != 0 {
        return false;
    }
    let Some(entry) = fixup_table()
        .iter()
        .find(|entry| entry.instruction == frame.rip)
    else {
        return false;
    };
    let on_user_memory = match frame.vector {
        // A fault on the kernel side of the copy is a kernel bug, not a
        // bad user pointer.
        vector::PAGE_FAULT => is_user(address),
        // A #GP has no address; `rep movsb` has left RSI (reading user
        // memory) or RDI (writing it) at the byte that faulted.
        vector::GENERAL_PROTECTION => is_user(frame.rsi) || is_user(frame.rdi),
        _ => false,
    };
    if on_user_memory {
        frame.rip = entry.fixup;
    }
    on_user_memory
}

/// The copy instruction and its fixup label (the first entry of the fixup
/// table), for tests that check [`fixup`] on a made-up frame.
pub fn copy_instruction_and_fixup() -> Option<(u64, u64)> {
    fixup_table()
        .first()
        .map(|entry| (entry.instruction, entry.fixup))
}
