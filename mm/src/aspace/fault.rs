//! Page faults and eager filling of an address space: demand-zero pages,
//! copy-on-write, and a loader's [`AddressSpace::populate`].
//!
//! A fault is decided from three things: the region (may the access
//! happen at all?), the page-table entry (is the page there, does it
//! allow the access already?) and, for a write to a read-only Anonymous
//! page, the frame's reference count (copy, or take over in place).

use core::fmt;
use core::ptr;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use x86_64::VirtAddr;

use super::regions::{check_user_range, Perms, RegionKind};
use super::space::{user_flags, AddressSpace, CPU_BITS};
use crate::layout::PAGE_SIZE;
use crate::paging::flags::{NX, WRITABLE};
use crate::paging::{PhysMem, Tlb};
use crate::pmm::meta::{CowAction, FrameTable, Release};
use crate::MmError;

/// What the faulting instruction tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

impl Access {
    /// The access of a page fault's error code (bit 1: write, bit 4:
    /// instruction fetch).
    pub const fn from_error_code(code: u64) -> Access {
        if code & (1 << 4) != 0 {
            Access::Execute
        } else if code & (1 << 1) != 0 {
            Access::Write
        } else {
            Access::Read
        }
    }

    /// Whether a region with `perms` allows the access.
    pub const fn allowed_by(self, perms: Perms) -> bool {
        match self {
            Access::Read => perms.readable(),
            Access::Write => perms.writable(),
            Access::Execute => perms.executable(),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Execute => "execute",
        })
    }
}

/// How a fault was resolved: the faulting instruction can run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultFixed {
    /// A zeroed frame was mapped for the first touch of an Anonymous page.
    DemandZero,
    /// A write to a shared copy-on-write page got a private copy.
    CowCopied,
    /// A write to a copy-on-write page whose other sharers are gone made
    /// it writable in place.
    CowTakenOver,
    /// The page already allows the access (another CPU resolved it, or a
    /// stale TLB entry; the fault itself flushed that entry).
    Spurious,
}

impl fmt::Display for FaultFixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultFixed::DemandZero => "demand-zero page mapped",
            FaultFixed::CowCopied => "copy-on-write page copied",
            FaultFixed::CowTakenOver => "copy-on-write page taken over",
            FaultFixed::Spurious => "spurious fault",
        })
    }
}

/// Why a fault cannot be resolved (the kernel then signals or kills the
/// process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// The address is in no region.
    NoRegion {
        /// The faulting address.
        addr: VirtAddr,
    },
    /// The region does not allow the access.
    NotPermitted {
        /// The faulting address.
        addr: VirtAddr,
        /// What was tried.
        access: Access,
        /// What the region allows.
        perms: Perms,
    },
    /// No frame for the page (or its tables).
    OutOfMemory,
    /// The page tables, the regions and the frame table disagree: a bug
    /// (a Fixed or Shared page missing, a frame outside the table).
    Inconsistent(MmError),
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::NoRegion { addr } => {
                write!(f, "no region at {:#x}", addr.as_u64())
            }
            FaultError::NotPermitted {
                addr,
                access,
                perms,
            } => write!(
                f,
                "{access} at {:#x} not permitted (region is {perms})",
                addr.as_u64()
            ),
            FaultError::OutOfMemory => f.write_str("out of memory"),
            FaultError::Inconsistent(error) => {
                write!(f, "address-space bookkeeping inconsistent: {error}")
            }
        }
    }
}

/// Allocation failures are out of memory; anything else is a bug.
fn fault_error(error: MmError) -> FaultError {
    match error {
        MmError::OutOfFrames => FaultError::OutOfMemory,
        other => FaultError::Inconsistent(other),
    }
}

impl<M: PhysMem> AddressSpace<M> {
    /// Resolves a page fault at `addr` for `access`: maps a zeroed frame
    /// on the first touch of an Anonymous page, copies or takes over a
    /// copy-on-write page on a write. Refused without any change when no
    /// region covers `addr`, the region does not allow `access`, or memory
    /// runs out.
    pub fn handle_fault<A, T>(
        &mut self,
        addr: VirtAddr,
        access: Access,
        frames: &mut A,
        meta: &FrameTable<'_>,
        tlb: &mut T,
    ) -> Result<FaultFixed, FaultError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
        T: Tlb,
    {
        let region = *self
            .regions
            .find(addr)
            .ok_or(FaultError::NoRegion { addr })?;
        if !access.allowed_by(region.perms) {
            return Err(FaultError::NotPermitted {
                addr,
                access,
                perms: region.perms,
            });
        }
        let page = addr.align_down(PAGE_SIZE);
        let Some(present) = self.mapper.translate(page) else {
            if region.kind != RegionKind::Anonymous {
                // Fixed and Shared pages are mapped with their region.
                return Err(FaultError::Inconsistent(MmError::NotMapped));
            }
            let frame = self.fresh_frame(frames, meta).map_err(fault_error)?;
            let flags = user_flags(region.perms, true);
            // SAFETY: a fresh frame is this space's alone.
            if let Err(error) = unsafe { self.map_page(page, frame, flags, frames) } {
                self.discard_fresh(frame, frames, meta);
                return Err(fault_error(error));
            }
            return Ok(FaultFixed::DemandZero);
        };
        let allows = match access {
            Access::Read => true,
            Access::Write => present.flags.contains(WRITABLE),
            Access::Execute => !present.flags.contains(NX),
        };
        if allows {
            return Ok(FaultFixed::Spurious);
        }
        if access != Access::Write || region.kind != RegionKind::Anonymous {
            // Pages of other kinds, and execute rights, always follow
            // their region.
            return Err(FaultError::Inconsistent(MmError::InvalidArgument));
        }
        let old = PhysFrame::containing_address(present.phys);
        let writable = user_flags(region.perms, true) | (present.flags & CPU_BITS);
        match meta.cow_write(old).map_err(FaultError::Inconsistent)? {
            CowAction::TakeOver => {
                let flush = self
                    .mapper
                    .update_flags(page, writable)
                    .map_err(FaultError::Inconsistent)?;
                flush.flush(tlb);
                Ok(FaultFixed::CowTakenOver)
            }
            CowAction::Copy => {
                let copy = self.copy_of(old, frames, meta).map_err(fault_error)?;
                // SAFETY: the copy is this space's alone.
                match unsafe { self.mapper.replace(page, copy.start_address(), writable) } {
                    Ok((_, flush)) => flush.flush(tlb),
                    Err(error) => {
                        self.discard_fresh(copy, frames, meta);
                        return Err(FaultError::Inconsistent(error));
                    }
                }
                // The flush above made every CPU drop the old translation:
                // if the other sharers left meanwhile, the frame is free.
                if meta.release(old) == Ok(Release::Last) {
                    // SAFETY: no page table maps the frame any more (its
                    // last reference is gone) and no TLB holds it.
                    unsafe { frames.deallocate_frame(old) };
                }
                Ok(FaultFixed::CowCopied)
            }
        }
    }

    /// A fresh frame holding a copy of `from`.
    fn copy_of<A>(
        &self,
        from: PhysFrame,
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<PhysFrame, MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        let copy = self.claimed_frame(frames, meta)?;
        // SAFETY: both frames came from the allocator, so `mem` reaches
        // their 4 KiB (the `new` contract); they are distinct (`copy` was
        // free until now) and `copy` is nobody else's; `from` is mapped
        // read-only everywhere (shared copy-on-write), so nothing writes it
        // meanwhile.
        unsafe {
            ptr::copy_nonoverlapping(
                self.frame_bytes(from),
                self.frame_bytes(copy),
                PAGE_SIZE as usize,
            )
        };
        Ok(copy)
    }

    /// Writes `bytes` at `start` into Anonymous regions now (for a
    /// loader): absent pages get zeroed frames first, mapped with their
    /// region's permissions; present private pages are written in place.
    /// Refused before any change: outside the user range, a page in no
    /// region (`NoRegion`) or in a Fixed or Shared one
    /// (`InvalidArgument`), a page shared copy-on-write (`AlreadyMapped`:
    /// populate is for fresh spaces). On `OutOfFrames` the pages before
    /// the failing one stay populated.
    pub fn populate<A>(
        &mut self,
        start: VirtAddr,
        bytes: &[u8],
        frames: &mut A,
        meta: &FrameTable<'_>,
    ) -> Result<(), MmError>
    where
        A: FrameAllocator<Size4KiB> + FrameDeallocator<Size4KiB>,
    {
        if bytes.is_empty() {
            return Ok(());
        }
        let first = start.align_down(PAGE_SIZE);
        let last = (start.as_u64() - first.as_u64())
            .checked_add(bytes.len() as u64)
            .ok_or(MmError::OutsideUserRange)?;
        let span = last.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let end = check_user_range(first, span)?;
        self.check_populate(first, end, meta)?;
        let mut page = first;
        let mut written = 0usize;
        while written < bytes.len() {
            let offset = if page == first {
                (start - first) as usize
            } else {
                0
            };
            let chunk = (PAGE_SIZE as usize - offset).min(bytes.len() - written);
            let frame = match self.mapper.translate(page) {
                Some(present) => PhysFrame::containing_address(present.phys),
                None => {
                    let perms = self.regions.find(page).ok_or(MmError::NoRegion)?.perms;
                    let frame = self.fresh_frame(frames, meta)?;
                    let flags = user_flags(perms, true);
                    // SAFETY: a fresh frame is this space's alone.
                    if let Err(error) = unsafe { self.map_page(page, frame, flags, frames) } {
                        self.discard_fresh(frame, frames, meta);
                        return Err(error);
                    }
                    frame
                }
            };
            // SAFETY: the frame is this space's alone (fresh, or checked
            // private above), `mem` reaches its 4 KiB (the `new` contract)
            // and `offset + chunk` stays inside it; `bytes` is a Rust slice
            // in kernel memory, not this frame.
            unsafe {
                ptr::copy_nonoverlapping(
                    bytes[written..].as_ptr(),
                    self.frame_bytes(frame).add(offset),
                    chunk,
                )
            };
            written += chunk;
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// The checks of [`AddressSpace::populate`] over `[first, end)`.
    fn check_populate(
        &self,
        first: VirtAddr,
        end: VirtAddr,
        meta: &FrameTable<'_>,
    ) -> Result<(), MmError> {
        let mut at = first;
        while at < end {
            let region = self.regions.find(at).ok_or(MmError::NoRegion)?;
            if region.kind != RegionKind::Anonymous {
                return Err(MmError::InvalidArgument);
            }
            at = region.end;
        }
        let mut at = first.as_u64();
        while let Some((virt, phys, _)) = self.next_present(at, end.as_u64()) {
            at = virt.as_u64() + PAGE_SIZE;
            let refs = meta
                .get(PhysFrame::containing_address(phys))
                .ok_or(MmError::OutOfRange)?
                .refs();
            if refs != 1 {
                return Err(MmError::AlreadyMapped);
            }
        }
        Ok(())
    }
}
