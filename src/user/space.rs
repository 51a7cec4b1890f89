//! User address spaces in the kernel: `mm::aspace::AddressSpace` behind
//! a lock, with the set of CPUs that have it loaded, so that a change is
//! shot down to exactly those CPUs, and frames and tables it frees are
//! given back only after that.
//!
//! Lock order: a space's lock, then the heap, the VMM and the PMM (the
//! same order as everywhere else below it). No space lock is held while
//! user memory is copied (the copy may fault and need the lock).

use alloc::boxed::Box;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use x86_64::VirtAddr;

use crate::arch::x86_64::smp;
use crate::kernel_mm::deferred::DeferredFrees;
use crate::kernel_mm::{frame_meta, pmm, vmm};
use crate::sync::IrqMutex;
use mm::aspace::{AddressSpace, FaultError, FaultFixed, Perms};
use mm::layout::DIRECT_MAP_OFFSET;
use mm::paging::{OffsetMem, TlbBatch};
use mm::pmm::meta::FrameTable;
use mm::MmError;

/// Address spaces alive now, and their resident pages (for `meminfo`).
static LIVE: AtomicU64 = AtomicU64::new(0);
static RESIDENT: AtomicU64 = AtomicU64::new(0);
/// Spaces created and destroyed since boot.
static CREATED: AtomicU64 = AtomicU64::new(0);
/// Frames a space freed that could not be given back (their number is
/// logged; the test suite checks this stays 0).
static LOST_FRAMES: AtomicU64 = AtomicU64::new(0);
/// Demand-zero, copy and take-over faults resolved since boot.
static FAULTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Why a space operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceError {
    /// What the address-space core said.
    Mm(MmError),
    /// Frame metadata is not set up (before `frame_meta::init`).
    NoFrameTable,
}

impl From<MmError> for SpaceError {
    fn from(error: MmError) -> Self {
        Self::Mm(error)
    }
}

impl SpaceError {
    /// The system-call error number for it.
    pub fn errno(self) -> i64 {
        use super::syscall::{EEXIST, EFAULT, EINVAL, ENOMEM};
        match self {
            Self::Mm(MmError::AlreadyMapped | MmError::RegionOverlap) => EEXIST,
            Self::Mm(MmError::OutOfFrames | MmError::TooManyRegions) => ENOMEM,
            Self::Mm(MmError::NonCanonical | MmError::OutsideUserRange) => EFAULT,
            Self::Mm(_) => EINVAL,
            Self::NoFrameTable => ENOMEM,
        }
    }
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mm(error) => write!(f, "{error}"),
            Self::NoFrameTable => f.write_str("frame metadata is not set up"),
        }
    }
}

/// Where a space's frames come from and go back to: the PMM.
struct UserFrames;

/// Frames for a space: freed ones (data pages and emptied page tables)
/// held until the shootdown to the CPUs that have it loaded has run.
type Frames<'a> = DeferredFrees<'a, UserFrames>;

/// Returns a frame a space freed to the PMM.
fn give_back(frame: PhysFrame) {
    if let Err(error) = pmm::free_page(frame.start_address()) {
        LOST_FRAMES.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "user space: frame {:#x} not returned: {error}",
            frame.start_address().as_u64()
        );
    }
}

// SAFETY: frames come from the PMM, which hands each out once.
unsafe impl FrameAllocator<Size4KiB> for UserFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        pmm::alloc_page()
    }
}

impl FrameDeallocator<Size4KiB> for UserFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        give_back(frame);
    }
}

/// One user address space.
pub struct UserSpace {
    inner: IrqMutex<Option<AddressSpace<OffsetMem>>>,
    /// CPUs with this space in CR3 (bit i = CPU index i).
    cpus: AtomicU64,
}

/// The kernel's direct map, through which the core reaches tables and
/// frames.
fn direct_map() -> OffsetMem {
    // SAFETY: every frame of RAM is mapped read-write at
    // DIRECT_MAP_OFFSET + its address (kernel_mm::direct_map).
    unsafe { OffsetMem::new(DIRECT_MAP_OFFSET) }
}

fn meta() -> Result<&'static FrameTable<'static>, SpaceError> {
    frame_meta::table().ok_or(SpaceError::NoFrameTable)
}

impl UserSpace {
    /// A new, empty space sharing the kernel's half.
    pub fn new() -> Result<Box<Self>, SpaceError> {
        let pml4 = pmm::alloc_page().ok_or(MmError::OutOfFrames)?;
        let kernel = vmm::pml4().ok_or(MmError::OutOfRange)?;
        // SAFETY: `pml4` is a fresh frame nobody else uses; the kernel's
        // PML4 has every shared entry populated (vmm::share_kernel_half)
        // and the direct map reaches both.
        let space = unsafe { AddressSpace::new(pml4, kernel, direct_map()) };
        Ok(Self::wrap(space))
    }

    fn wrap(space: AddressSpace<OffsetMem>) -> Box<Self> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        CREATED.fetch_add(1, Ordering::Relaxed);
        RESIDENT.fetch_add(space.resident_pages(), Ordering::Relaxed);
        Box::new(Self {
            inner: IrqMutex::new(Some(space)),
            cpus: AtomicU64::new(0),
        })
    }

    /// Runs `f` on the space with frames and a TLB batch, then shoots the
    /// batch down to the CPUs that have the space loaded and gives the
    /// freed frames back.
    fn change<R>(
        &self,
        f: impl FnOnce(&mut AddressSpace<OffsetMem>, &mut Frames, &mut TlbBatch) -> R,
    ) -> R {
        let mut frames = Frames::for_space(UserFrames, Some(&self.cpus));
        let mut batch = TlbBatch::new();
        let result = {
            let mut guard = self.inner.lock();
            let space = guard.as_mut().expect("a live space");
            let before = space.resident_pages();
            let result = f(space, &mut frames, &mut batch);
            let after = space.resident_pages();
            if after >= before {
                RESIDENT.fetch_add(after - before, Ordering::Relaxed);
            } else {
                RESIDENT.fetch_sub(before - after, Ordering::Relaxed);
            }
            result
        };
        smp::shootdown_to(&batch, self.cpus.load(Ordering::SeqCst));
        frames.release();
        result
    }

    /// Reserves `[start, start + len)` as anonymous memory with `perms`:
    /// zero-filled pages on first touch.
    pub fn reserve(&self, start: VirtAddr, len: u64, perms: Perms) -> Result<(), SpaceError> {
        self.change(|space, _, _| space.reserve(start, len, perms))
            .map_err(SpaceError::from)
    }

    /// Fills an anonymous region's pages from `start` with `bytes` (a
    /// loader's copy; the rest of the last page is zero).
    pub fn populate(&self, start: VirtAddr, bytes: &[u8]) -> Result<(), SpaceError> {
        let meta = meta()?;
        self.change(|space, frames, _| space.populate(start, bytes, frames, meta))
            .map_err(SpaceError::from)
    }

    /// Removes every mapping in `[start, start + len)`.
    pub fn unmap(&self, start: VirtAddr, len: u64) -> Result<(), SpaceError> {
        let meta = meta()?;
        self.change(|space, frames, tlb| space.unmap(start, len, frames, meta, tlb))
            .map(|_| ())
            .map_err(SpaceError::from)
    }

    /// Changes the rights of `[start, start + len)`.
    pub fn protect(&self, start: VirtAddr, len: u64, perms: Perms) -> Result<(), SpaceError> {
        self.change(|space, _, tlb| space.protect(start, len, perms, tlb))
            .map_err(SpaceError::from)
    }

    /// Resolves a fault at `address` (demand paging, copy-on-write).
    pub fn handle_fault(
        &self,
        address: VirtAddr,
        access: mm::aspace::Access,
    ) -> Result<FaultFixed, FaultError> {
        let Ok(meta) = meta() else {
            return Err(FaultError::OutOfMemory);
        };
        let fault = || {
            self.change(|space, frames, tlb| space.handle_fault(address, access, frames, meta, tlb))
        };
        let fixed = match fault() {
            // Out of frames: the heap and the object caches give back what
            // they can (no lock is held here), then once more.
            Err(FaultError::OutOfMemory) if crate::kernel_mm::reclaim::under_pressure() > 0 => {
                fault()?
            }
            result => result?,
        };
        FAULTS[fixed as usize].fetch_add(1, Ordering::Relaxed);
        Ok(fixed)
    }

    /// A copy-on-write clone: both share every page until one writes.
    pub fn clone_cow(&self) -> Result<Box<Self>, SpaceError> {
        let meta = meta()?;
        let pml4 = pmm::alloc_page().ok_or(MmError::OutOfFrames)?;
        // SAFETY: `pml4` is a fresh frame for the clone alone (on failure
        // the core gives it back through `frames`).
        let result =
            self.change(|space, frames, tlb| unsafe { space.clone_cow(pml4, frames, meta, tlb) });
        Ok(Self::wrap(result?))
    }

    /// Pages with a frame behind them.
    pub fn resident_pages(&self) -> u64 {
        self.inner
            .lock()
            .as_ref()
            .map_or(0, |space| space.resident_pages())
    }

    /// Page-table frames it owns (its PML4 included).
    pub fn table_frames(&self) -> u64 {
        self.inner
            .lock()
            .as_ref()
            .map_or(0, |space| space.table_frames())
    }

    /// Its root table.
    pub fn pml4(&self) -> PhysFrame {
        self.inner.lock().as_ref().expect("a live space").pml4()
    }

    /// The CPUs that have it loaded.
    pub fn cpus(&self) -> u64 {
        self.cpus.load(Ordering::SeqCst)
    }

    /// Loads the space on this CPU until the guard is dropped (then the
    /// kernel's own tables are back). Spaces do not nest.
    pub fn activate(&self) -> Active<'_> {
        let cpu = smp::current().expect("per-CPU data exists");
        assert!(
            cpu.user_space.load(Ordering::SeqCst).is_null(),
            "one user space per CPU at a time"
        );
        let pml4 = self.pml4();
        self.cpus.fetch_or(1 << cpu.index, Ordering::SeqCst);
        cpu.user_space
            .store(ptr::from_ref(self).cast_mut().cast(), Ordering::SeqCst);
        // SAFETY: the space's PML4 maps the kernel's half exactly like the
        // kernel's own (the shared entries), so the code and data in use
        // stay where they are; its user half is its own.
        unsafe { Cr3::write(pml4, Cr3Flags::empty()) };
        Active { space: self }
    }
}

/// A space loaded on this CPU ([`UserSpace::activate`]).
pub struct Active<'a> {
    space: &'a UserSpace,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let kernel = vmm::pml4().expect("the VMM is up");
        // SAFETY: the kernel's own tables map everything the kernel uses.
        unsafe { Cr3::write(kernel, Cr3Flags::empty()) };
        if let Some(cpu) = smp::current() {
            cpu.user_space.store(ptr::null_mut(), Ordering::SeqCst);
            // After the CR3 switch: from here no shootdown needs to reach
            // this CPU for the space.
            self.space
                .cpus
                .fetch_and(!(1 << cpu.index), Ordering::SeqCst);
        }
    }
}

impl Drop for UserSpace {
    fn drop(&mut self) {
        debug_assert_eq!(self.cpus(), 0, "a space is dropped while loaded");
        let Some(space) = self.inner.lock().take() else {
            return;
        };
        RESIDENT.fetch_sub(space.resident_pages(), Ordering::Relaxed);
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let Ok(meta) = meta() else {
            return;
        };
        let mut frames = Frames::for_space(UserFrames, None);
        // SAFETY: no CPU has the space loaded: `Active` borrows the space,
        // so every guard is gone before it can be dropped.
        let teardown = unsafe { space.destroy(&mut frames, meta) };
        if teardown.inconsistencies > 0 {
            LOST_FRAMES.fetch_add(teardown.inconsistencies, Ordering::Relaxed);
            log::error!(
                "user space: {} frames kept at teardown (bookkeeping disagreed)",
                teardown.inconsistencies
            );
        }
        // Loaded nowhere (the guard borrows the space), so no CPU caches
        // its translations: the frames may go back at once.
        frames.release();
    }
}

/// Runs `f` on the space loaded on this CPU (`None` if there is none),
/// for the system calls and the fault handler.
pub(super) fn with_current<R>(f: impl FnOnce(&UserSpace) -> R) -> Option<R> {
    let cpu = smp::current()?;
    let pointer = cpu.user_space.load(Ordering::SeqCst);
    if pointer.is_null() {
        return None;
    }
    // SAFETY: only `activate` stores a non-null pointer here, to the space
    // its `Active` guard borrows; the guard's drop clears it, on this CPU,
    // before the borrow ends. Code running on this CPU now (a system call,
    // an exception) interrupted the guard's owner, which cannot drop the
    // guard before `f` returns, so the space outlives the call.
    Some(f(unsafe { &*pointer.cast::<UserSpace>() }))
}

/// Counters for `meminfo` and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceStats {
    /// Spaces alive.
    pub live: u64,
    /// Spaces created since boot.
    pub created: u64,
    /// Resident user pages over all live spaces.
    pub resident: u64,
    /// Demand-zero faults resolved.
    pub demand_zero: u64,
    /// Copy-on-write faults that copied.
    pub cow_copied: u64,
    /// Copy-on-write faults that took the last reference over.
    pub cow_taken: u64,
    /// Frames that could not be given back.
    pub lost_frames: u64,
}

/// The counters now.
pub fn stats() -> SpaceStats {
    let fault = |fixed: FaultFixed| FAULTS[fixed as usize].load(Ordering::Relaxed);
    SpaceStats {
        live: LIVE.load(Ordering::Relaxed),
        created: CREATED.load(Ordering::Relaxed),
        resident: RESIDENT.load(Ordering::Relaxed),
        demand_zero: fault(FaultFixed::DemandZero),
        cow_copied: fault(FaultFixed::CowCopied),
        cow_taken: fault(FaultFixed::CowTakenOver),
        lost_frames: LOST_FRAMES.load(Ordering::Relaxed),
    }
}
