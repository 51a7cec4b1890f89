//! The system calls: what user programs may ask of the kernel.
//!
//! `syscall` with RAX = number and the arguments in RDI, RSI, RDX; the
//! result comes back in RAX, negative for an error (Linux's numbers, so
//! they read familiar). Pointers from user mode are only ever read through
//! `copy_from_user`, so a kernel, non-canonical or unmapped pointer is an
//! `EFAULT`, never a kernel fault.

use x86_64::VirtAddr;

use super::entry::{self, Exit};
use super::space::{self, SpaceError};
use crate::arch::x86_64::usercopy::{self, UserPtr};
use mm::aspace::Perms;

/// `exit(code)`: ends the program.
pub const EXIT: u64 = 0;
/// `write(buffer, length)`: prints to the console; the bytes written.
pub const WRITE: u64 = 1;
/// `map(address, length, rights)`: anonymous memory, zero-filled on
/// first touch.
pub const MAP: u64 = 2;
/// `unmap(address, length)`.
pub const UNMAP: u64 = 3;
/// `protect(address, length, rights)`.
pub const PROTECT: u64 = 4;

/// Rights bits of `map` and `protect`.
pub const RIGHT_READ: u64 = 1;
/// Write access.
pub const RIGHT_WRITE: u64 = 2;
/// Instruction fetches.
pub const RIGHT_EXEC: u64 = 4;

/// A bad pointer.
pub const EFAULT: i64 = -14;
/// A bad argument (unaligned, empty, W+X, unknown rights).
pub const EINVAL: i64 = -22;
/// Out of memory (frames, tables or region slots).
pub const ENOMEM: i64 = -12;
/// The range overlaps a mapping.
pub const EEXIST: i64 = -17;
/// No such system call.
pub const ENOSYS: i64 = -38;

/// Most bytes one `write` prints.
pub const WRITE_MAX: u64 = 4096;

/// The registers asm/user.s saves, in stack order.
#[repr(C)]
#[allow(missing_docs)]
pub struct SyscallFrame {
    /// The number on entry; the result on return.
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
    pub r9: u64,
    /// The user's RFLAGS.
    pub r11: u64,
    /// The user's RIP.
    pub rcx: u64,
    /// The user's RSP.
    pub rsp: u64,
}

/// Entry from asm/user.s, interrupts off, on the program's kernel stack.
#[no_mangle]
extern "C" fn syscall_dispatch(frame: &mut SyscallFrame) {
    let (a, b, c) = (frame.rdi, frame.rsi, frame.rdx);
    let result = match frame.rax {
        // Nothing here owns anything: `leave` abandons these frames.
        EXIT => entry::leave(Exit::Exited(a as i64)),
        WRITE => write(a, b),
        MAP => map(a, b, c),
        UNMAP => on_space(|space| Some(errno(space.unmap(VirtAddr::try_new(a).ok()?, b)))),
        PROTECT => protect(a, b, c),
        _ => ENOSYS,
    };
    frame.rax = result as u64;
}

/// Prints `length` bytes from the user's `buffer`.
fn write(buffer: u64, length: u64) -> i64 {
    if length > WRITE_MAX {
        return EINVAL;
    }
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < length {
        let len = (length - done).min(chunk.len() as u64) as usize;
        if usercopy::copy_from_user(&mut chunk[..len], UserPtr::new(buffer.wrapping_add(done)))
            .is_err()
        {
            return EFAULT;
        }
        crate::console::print(format_args!("{}", Printable(&chunk[..len])));
        done += len as u64;
    }
    done as i64
}

/// User bytes as text: printable ASCII, newlines and tabs as they are,
/// anything else as `?` (a program cannot send the terminal escapes).
struct Printable<'a>(&'a [u8]);

impl core::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        for &byte in self.0 {
            let shown = match byte {
                b'\n' | b'\t' | 0x20..=0x7E => char::from(byte),
                _ => '?',
            };
            f.write_char(shown)?;
        }
        Ok(())
    }
}

/// The rights bits as permissions.
fn perms(rights: u64) -> Result<Perms, i64> {
    if rights & !(RIGHT_READ | RIGHT_WRITE | RIGHT_EXEC) != 0 {
        return Err(EINVAL);
    }
    Perms::new(
        rights & RIGHT_READ != 0,
        rights & RIGHT_WRITE != 0,
        rights & RIGHT_EXEC != 0,
    )
    .map_err(|_| EINVAL)
}

fn map(address: u64, length: u64, rights: u64) -> i64 {
    let perms = match perms(rights) {
        Ok(perms) => perms,
        Err(error) => return error,
    };
    on_space(|space| {
        let start = VirtAddr::try_new(address).ok()?;
        Some(errno(space.reserve(start, length, perms)))
    })
}

fn protect(address: u64, length: u64, rights: u64) -> i64 {
    let perms = match perms(rights) {
        Ok(perms) => perms,
        Err(error) => return error,
    };
    on_space(|space| {
        let start = VirtAddr::try_new(address).ok()?;
        Some(errno(space.protect(start, length, perms)))
    })
}

/// Runs `f` on the address space loaded on this CPU; a non-canonical
/// address (`f` gives `None`) is `EFAULT`.
fn on_space(f: impl FnOnce(&space::UserSpace) -> Option<i64>) -> i64 {
    space::with_current(|space| f(space).unwrap_or(EFAULT)).unwrap_or(ENOSYS)
}

/// 0 or the error's number.
fn errno(result: Result<(), SpaceError>) -> i64 {
    match result {
        Ok(()) => 0,
        Err(error) => error.errno(),
    }
}
