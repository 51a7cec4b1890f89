//! The global virtual memory manager: the kernel's page-table tree (the one
//! CR3 holds) behind an interrupt-safe lock, with table frames from the PMM
//! and TLB flushes through `invlpg` / CR3 reloads.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::tlb;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::deferred::DeferredFrees;
use super::{bootstrap, pmm, reclaim};
use crate::arch::x86_64::sections;
use crate::arch::x86_64::smp;
use crate::sync::IrqMutex;
use arrayvec::ArrayVec;
use mm::layout::{
    BOOTSTRAP_POOL_END, BOOTSTRAP_POOL_START, BOOT_PML4, BOOT_TABLES_END, DIRECT_MAP_OFFSET,
    MMIO_START, PAGE_SIZE, PMM_START,
};
use mm::paging::{
    Mapper, OffsetMem, PageSize, Run, Tlb, Translation, Walk, NOCACHE, NX, PRESENT, WRITABLE,
    WRITETHROUGH,
};
use mm::paging::{TlbBatch, BATCH_PAGES};
use mm::pmm::PhysRange;
use mm::MmError;

static VMM: IrqMutex<Option<Mapper<OffsetMem>>> = IrqMutex::new(None);

/// Table frames come from the PMM; freed tables go back where they came
/// from (PMM or bootstrap pool). The boot tables at 0x1000-0x4FFF are not
/// any allocator's: they are kept.
pub struct KernelFrames;

// SAFETY: frames come from the PMM, which hands each out once.
unsafe impl FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        // Under the VMM lock: out of frames, the object caches not in use
        // give back their empty slabs first.
        reclaim::frame_under_lock(pmm::alloc_page)
    }
}

impl FrameDeallocator<Size4KiB> for KernelFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        let address = frame.start_address();
        let result = match address.as_u64() {
            a if (BOOT_PML4..BOOT_TABLES_END).contains(&a) => Ok(()),
            a if (BOOTSTRAP_POOL_START..BOOTSTRAP_POOL_END).contains(&a) => {
                bootstrap::free(address)
            }
            _ => pmm::free_page(address),
        };
        if let Err(error) = result {
            LOST_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "vmm: page-table frame {:#x} not returned: {error}",
                address.as_u64()
            );
        }
    }
}

/// Page-table frames that could not be given back, for the test runner's
/// error accounting.
static LOST_TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// How many freed page-table frames their allocator refused since boot.
pub fn lost_table_frames() -> u64 {
    LOST_TABLE_FRAMES.load(Ordering::Relaxed)
}

/// The CPU's TLB.
pub struct CpuTlb;

impl Tlb for CpuTlb {
    fn flush_page(&mut self, virt: VirtAddr) {
        tlb::flush(virt);
    }

    fn flush_all(&mut self) {
        crate::arch::x86_64::cpu::flush_tlb_everything();
    }
}

/// Takes over the page-table tree in CR3 (the boot tables plus the direct
/// map). Needs the direct map and the PMM.
pub fn init(gigabyte_pages: bool) {
    let (pml4, _) = Cr3::read();
    // SAFETY: CR3 holds the live PML4; every table of the tree is RAM
    // (boot tables, pool frames, PMM frames), which the direct map covers,
    // so reachable at DIRECT_MAP_OFFSET + physical; from now on only this
    // mapper, under VMM's lock, changes the tree.
    let mapper = unsafe { Mapper::new(pml4, OffsetMem::new(DIRECT_MAP_OFFSET), gigabyte_pages) };
    *VMM.lock() = Some(mapper);
}

/// Gives every PML4 entry of the kernel's (entry 0 and the higher half,
/// 256..=511) a PDPT now, and tells the mapper never to free one: every
/// user address space copies these entries once, so the kernel's half
/// can never diverge between spaces. Costs one frame per entry that had
/// none (255 on a fresh boot: 1020 KiB). Returns how many were made.
pub fn share_kernel_half() -> Result<usize, MmError> {
    use mm::aspace::{FIRST_KERNEL_HIGH_ENTRY, KERNEL_LOW_ENTRY};
    let mut guard = VMM.lock();
    let mapper = guard.as_mut().ok_or(MmError::NotMapped)?;
    mapper.keep_top_tables(core::iter::once(KERNEL_LOW_ENTRY).chain(FIRST_KERNEL_HIGH_ENTRY..512));
    let pml4 = super::phys_to_virt(mapper.pml4().start_address()).as_mut_ptr::<u64>();
    let mut made = 0;
    for entry in core::iter::once(KERNEL_LOW_ENTRY).chain(FIRST_KERNEL_HIGH_ENTRY..512) {
        // SAFETY: the live PML4 is RAM reached through the direct map; the
        // VMM's lock is held, so the mapper (the tree's only other writer)
        // is not using it. A present entry is left alone; an empty one gets
        // a zeroed PDPT that nothing else knows of yet.
        unsafe {
            let slot = pml4.add(entry);
            if slot.read_volatile() & PRESENT.bits() != 0 {
                continue;
            }
            let table = pmm::alloc_zeroed().ok_or(MmError::OutOfFrames)?;
            slot.write_volatile(table.start_address().as_u64() | (PRESENT | WRITABLE).bits());
        }
        made += 1;
    }
    Ok(made)
}

fn with<R>(f: impl FnOnce(&mut Mapper<OffsetMem>) -> Result<R, MmError>) -> Result<R, MmError> {
    match VMM.lock().as_mut() {
        Some(mapper) => f(mapper),
        None => Err(MmError::NotMapped),
    }
}

/// Runs `change`, which removes or narrows translations, on the tree under
/// the lock, collecting its flushes in a batch and the tables it empties;
/// then, with the lock released, invalidates the batch on every CPU
/// (`smp::shootdown`) and only after that gives the tables back.
fn narrowing<R>(
    change: impl FnOnce(
        &mut Mapper<OffsetMem>,
        &mut DeferredFrees<'static, KernelFrames>,
        &mut TlbBatch,
    ) -> Result<R, MmError>,
) -> Result<R, MmError> {
    let mut batch = TlbBatch::new();
    let mut tables = DeferredFrees::everywhere(KernelFrames);
    let result = with(|mapper| change(mapper, &mut tables, &mut batch));
    smp::shootdown(&batch);
    tables.release();
    result
}

/// Maps `size` bytes at `virt` to `phys` with one page (the design's
/// `vmm_map_page`, for every page size).
///
/// # Safety
/// The caller owns the frame for this use: the mapping must not give a
/// second, writable way to memory that Rust code holds references to (the
/// kernel image, a heap block, a page table, another mapping's frame).
pub unsafe fn map(
    virt: VirtAddr,
    phys: PhysAddr,
    size: PageSize,
    flags: PageTableFlags,
) -> Result<(), MmError> {
    // SAFETY: the caller's contract is the mapper's.
    with(|mapper| unsafe { mapper.map(virt, phys, size, flags, &mut KernelFrames) })
        .map(|flush| flush.flush(&mut CpuTlb))
}

/// Unmaps the page starting at `virt` (any size; the design's
/// `vmm_unmap_page`). Returns the frame it mapped; tables emptied on the
/// way are freed.
///
/// # Safety
/// Nothing may still use the page through a reference (the memory behind
/// it disappears, and its frame may be handed to someone else).
pub unsafe fn unmap(virt: VirtAddr) -> Result<(PhysAddr, PageSize), MmError> {
    narrowing(|mapper, tables, batch| {
        let (phys, size, flush) = mapper.unmap(virt, tables)?;
        flush.flush(batch);
        Ok((phys, size))
    })
}

/// Physical address of `virt` (the design's `vmm_get_physical`).
pub fn translate(virt: VirtAddr) -> Option<Translation> {
    VMM.lock().as_ref()?.translate(virt)
}

/// Changes the flags of the page starting at `virt`.
///
/// # Safety
/// New rights must not break what Rust assumes of the memory (making
/// read-only data writable, data executable, or a page user-accessible).
pub unsafe fn update_flags(virt: VirtAddr, flags: PageTableFlags) -> Result<(), MmError> {
    narrowing(|mapper, _, batch| {
        mapper.update_flags(virt, flags)?.flush(batch);
        Ok(())
    })
}

/// Maps a range with the largest pages possible (4 KiB only if
/// `small_only`); all or nothing.
///
/// # Safety
/// As for [`map`], for every frame of the range.
pub unsafe fn map_range(
    virt: VirtAddr,
    phys: PhysAddr,
    len: u64,
    flags: PageTableFlags,
    small_only: bool,
) -> Result<(), MmError> {
    let result = with(|mapper| {
        // SAFETY: the caller's contract is the mapper's.
        unsafe { mapper.map_range(virt, phys, len, flags, small_only, &mut KernelFrames) }
    });
    match result {
        Ok(flush) => {
            flush.flush(&mut CpuTlb);
            Ok(())
        }
        Err(error) => {
            // Pages were briefly present: drop whatever the CPU may have cached.
            CpuTlb.flush_all();
            Err(error)
        }
    }
}

/// Unmaps every page in a range; returns how many there were.
///
/// # Safety
/// As for [`unmap`], for every page of the range.
pub unsafe fn unmap_range(virt: VirtAddr, len: u64) -> Result<u64, MmError> {
    narrowing(|mapper, tables, batch| {
        let (pages, flush) = mapper.unmap_range(virt, len, tables)?;
        flush.flush(batch);
        Ok(pages)
    })
}

/// The PML4 frame in CR3 (the design's `vmm_get_cr3`).
pub fn current_cr3() -> PhysFrame {
    Cr3::read().0
}

/// The PML4 frame the VMM manages.
pub fn pml4() -> Option<PhysFrame> {
    VMM.lock().as_ref().map(Mapper::pml4)
}

/// Walks `virt` through each table level.
pub fn walk(virt: VirtAddr) -> Option<Walk> {
    VMM.lock().as_ref().map(|mapper| mapper.walk(virt))
}

/// Calls `visit` for the present mappings in `[first, last]`, merged into
/// runs.
pub fn mappings(first: VirtAddr, last: VirtAddr, visit: impl FnMut(Run)) {
    if let Some(mapper) = VMM.lock().as_ref() {
        mapper.mappings(first, last, visit);
    }
}

/// Page-table frames in the tree below the PML4.
pub fn table_count() -> usize {
    let mut count = 0;
    if let Some(mapper) = VMM.lock().as_ref() {
        mapper.for_each_table(|_, _| count += 1);
    }
    count
}

/// What backs a [`Mapping`], and so what its drop gives back.
#[derive(Debug)]
enum Backing {
    /// Device memory: only the mapping goes.
    Device,
    /// Fresh frames from the PMM: they go back to it.
    OwnedFrames,
}

/// A mapping owned by whoever holds it (Theseus' `MappedPages` is the
/// model): dropping it unmaps the range, flushes the TLB and, for fresh
/// frames, gives them back to the PMM. Made by [`map_fresh`] (safe: the
/// frames are new) or [`map_device`]; [`Mapping::keep`] makes it permanent.
#[derive(Debug)]
#[must_use = "dropping a Mapping unmaps it at once"]
pub struct Mapping {
    start: VirtAddr,
    len: u64,
    backing: Backing,
}

impl Mapping {
    /// First mapped address.
    pub fn start(&self) -> VirtAddr {
        self.start
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never, for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the range mapped for the rest of the kernel's life (the heap's
    /// pages, the console's framebuffer); returns its start.
    pub fn keep(self) -> VirtAddr {
        let start = self.start;
        core::mem::forget(self);
        start
    }

    /// Takes back ownership of `len` bytes at `start` that [`map_fresh`]
    /// mapped and [`Mapping::keep`] kept: dropping the handle unmaps them
    /// (with the shootdown) and gives their frames back to the PMM.
    ///
    /// # Safety
    /// The range must be (part of) fresh-frame mappings that were kept, and
    /// nothing may use it any more: no reference into it, no other handle.
    pub unsafe fn reclaim_fresh(start: VirtAddr, len: u64) -> Mapping {
        Mapping {
            start,
            len,
            backing: Backing::OwnedFrames,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // In batches: up to BATCH_PAGES pages unmapped under one lock, one
        // shootdown for all of them, then their frames and emptied tables
        // given back. The range was mapped for this handle alone, and its
        // holder gave up every use of it by dropping the handle.
        let owned = matches!(self.backing, Backing::OwnedFrames);
        let mut page = 0;
        while page < self.len {
            let unmapped = narrowing(|mapper, tables, batch| {
                let mut frames: ArrayVec<PhysAddr, BATCH_PAGES> = ArrayVec::new();
                while page < self.len && !frames.is_full() && tables.held() < 60 {
                    let virt = self.start + page;
                    match mapper.unmap(virt, tables) {
                        Ok((phys, size, flush)) => {
                            flush.flush(batch);
                            if owned {
                                frames.push(phys);
                            }
                            page += size.bytes();
                        }
                        Err(error) => {
                            log::error!(
                                "vmm: dropping the mapping at {:#x}: {error}",
                                virt.as_u64()
                            );
                            page += PAGE_SIZE;
                        }
                    }
                }
                Ok(frames)
            });
            let Ok(frames) = unmapped else {
                log::error!("vmm: dropping a mapping before the VMM runs");
                return;
            };
            for frame in frames {
                let _ = pmm::free_page(frame);
            }
        }
    }
}

/// Maps `len` bytes (whole pages) at `start` to fresh, zeroed frames from
/// the PMM, with `flags`. Safe: nothing else can know the new frames, and
/// a range that is partly mapped already is refused. All or nothing: on
/// failure every page and frame this call took is given back.
pub fn map_fresh(start: VirtAddr, len: u64, flags: PageTableFlags) -> Result<Mapping, MmError> {
    if len == 0 || !len.is_multiple_of(PAGE_SIZE) || !start.is_aligned(PAGE_SIZE) {
        return Err(MmError::Misaligned);
    }
    mm::paging::check_span(start, len)?;
    // Built page by page; on an error, dropping the partial handle gives
    // back what was mapped so far.
    let mut mapping = Mapping {
        start,
        len: 0,
        backing: Backing::OwnedFrames,
    };
    while mapping.len < len {
        // Often under the heap's lock (its growth): out of frames, the
        // object caches not in use give back their empty slabs first.
        let frame = reclaim::frame_under_lock(pmm::alloc_zeroed).ok_or(MmError::OutOfFrames)?;
        let page = start + mapping.len;
        // SAFETY: the frame was just allocated, so no one else can refer to
        // it; `map` refuses a page that is mapped already.
        let mapped = unsafe { map(page, frame.start_address(), PageSize::Size4KiB, flags) };
        if let Err(error) = mapped {
            let _ = pmm::free_page(frame.start_address());
            return Err(error);
        }
        mapping.len += PAGE_SIZE;
    }
    Ok(mapping)
}

static NEXT_MMIO: IrqMutex<u64> = IrqMutex::new(MMIO_START);

/// Maps `len` bytes of device memory at `phys` (rounded out to pages) into
/// the MMIO window, writable and never executable. Returns the handle and
/// the virtual address of `phys` itself.
///
/// # Safety
/// `phys..phys + len` must be device memory (or memory the caller owns),
/// never RAM that Rust code holds references to.
pub unsafe fn map_device(phys: PhysAddr, len: u64) -> Result<(Mapping, VirtAddr), MmError> {
    // SAFETY: the caller's contract.
    unsafe { map_window(phys, len, WRITABLE | NX) }
}

/// Maps `len` bytes of firmware memory at `phys` (rounded out to pages)
/// into the MMIO window, read-only and never executable, for reading
/// firmware tables that are not in the direct map. Returns the handle and
/// the virtual address of `phys` itself.
///
/// # Safety
/// `phys..phys + len` must not be RAM an allocator manages (a read-only
/// alias of it is still an alias of memory Rust code may be writing).
pub unsafe fn map_firmware(phys: PhysAddr, len: u64) -> Result<(Mapping, VirtAddr), MmError> {
    // SAFETY: the caller's contract.
    unsafe { map_window(phys, len, NX) }
}

/// Maps `len` bytes of device registers at `phys` (the local APIC) into
/// the MMIO window, writable, uncached and never executable. Returns the
/// handle and the virtual address of `phys` itself.
///
/// # Safety
/// As for [`map_device`].
pub unsafe fn map_registers(phys: PhysAddr, len: u64) -> Result<(Mapping, VirtAddr), MmError> {
    // SAFETY: the caller's contract.
    unsafe { map_window(phys, len, WRITABLE | NX | NOCACHE | WRITETHROUGH) }
}

/// `map_device`, `map_firmware` and `map_registers`, with `flags`.
///
/// # Safety
/// As for `map_device`.
unsafe fn map_window(
    phys: PhysAddr,
    len: u64,
    flags: PageTableFlags,
) -> Result<(Mapping, VirtAddr), MmError> {
    let start = phys.align_down(PAGE_SIZE);
    let end = phys
        .as_u64()
        .checked_add(len)
        .and_then(|end| end.checked_next_multiple_of(PAGE_SIZE))
        .ok_or(MmError::InvalidArgument)?;
    let len = end - start.as_u64();
    let mut next = NEXT_MMIO.lock();
    // Huge-page alignment lets large framebuffers use 2 MiB pages.
    let huge = PageSize::Size2MiB.bytes();
    let virt = mm::checked_virt(next.next_multiple_of(huge) + start.as_u64() % huge)?;
    // SAFETY: the caller says the range is device memory, firmware memory
    // or its own; the MMIO window above `next` has never been mapped.
    unsafe { map_range(virt, start, len, flags, false)? };
    *next = virt.as_u64() + len;
    let mapping = Mapping {
        start: virt,
        len,
        backing: Backing::Device,
    };
    Ok((mapping, virt + phys.as_u64() % PAGE_SIZE))
}

/// The VGA text buffer, the one device window of low memory the kernel
/// uses (on BIOS boots in text mode).
pub const VGA_TEXT_WINDOW: PhysRange = PhysRange {
    start: 0xB_8000,
    end: 0xC_0000,
};

/// Applies W^X to the kernel image and trims the boot identity map: text
/// read+execute, rodata read-only, data and bss read+write, both
/// no-execute. Everything else of the low 4 MiB is unmapped: the boot page
/// tables, the bootstrap pool and firmware areas are reached through the
/// direct map only (so a stray write near NULL cannot edit the live PML4),
/// except the VGA text buffer when `keep_vga_text`, writable, no-execute
/// and uncached. Guard pages stay unmapped.
pub fn protect_kernel(keep_vga_text: bool) -> Result<(), MmError> {
    let image = sections::kernel_image();
    let set = |range: PhysRange, flags: PageTableFlags| -> Result<(), MmError> {
        let mut page = range.start;
        while page < range.end {
            // SAFETY: the kernel image's own rights (W^X from the linker's
            // sections) and the VGA window: each page gets the rights its
            // contents need, which nothing in Rust assumes otherwise.
            match unsafe { update_flags(VirtAddr::new(page), flags) } {
                // Page 0 and the stack guard pages are deliberately unmapped.
                Ok(()) | Err(MmError::NotMapped) => {}
                Err(error) => return Err(error),
            }
            page += PAGE_SIZE;
        }
        Ok(())
    };
    for section in sections::kernel_sections() {
        let mut flags = PRESENT;
        if section.writable {
            flags |= WRITABLE;
        }
        if !section.executable {
            flags |= NX;
        }
        set(section.span, flags)?;
    }
    let unmap = |start: u64, end: u64| {
        // SAFETY: nothing in Rust refers to low memory through its identity
        // addresses any more (the pool is reached through the direct map,
        // `bootstrap::use_direct_map`), nor to the identity pages between
        // the kernel's end and PMM_START (0x400000), which hold nothing.
        unsafe { unmap_range(VirtAddr::new(start), end - start) }
    };
    if keep_vga_text {
        unmap(PAGE_SIZE, VGA_TEXT_WINDOW.start)?;
        set(
            VGA_TEXT_WINDOW,
            PRESENT | WRITABLE | NX | NOCACHE | WRITETHROUGH,
        )?;
        unmap(VGA_TEXT_WINDOW.end, image.start)?;
    } else {
        unmap(PAGE_SIZE, image.start)?;
    }
    unmap(image.end, PMM_START)?;
    CpuTlb.flush_all();
    Ok(())
}
