//! Application-processor bring-up: every CPU the MADT marks enabled is
//! started with INIT-SIPI-SIPI through the trampoline in
//! `asm/ap_trampoline.s`, on its own stacks (guard pages between them)
//! and its own GDT and TSS, and checks in from Rust; one that does not
//! answer in time is reported and skipped, and the boot goes on.
//!
//! Started CPUs wait in `hlt` for a work IPI (`run_on_all`) or a TLB
//! shootdown request (`shootdown`); the per-CPU records, the protocols
//! and their invariants are described in docs/smp.md.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use spin::Once;
use x86_64::registers::model_specific::GsBase;

use x86_64::{PhysAddr, VirtAddr};

use super::gdt::{self, Gdt};
use super::lapic::Lapic;
use super::{clock, cpu, idt};
use crate::acpi::Madt;
use crate::apic::{Destination, IpiKind};
use crate::kernel_mm::frame_cache::{self, CpuFrames};
use crate::kernel_mm::phys_to_virt;
use crate::kernel_mm::vmm::{self, CpuTlb};
use mm::layout::{
    AP_PARAMS, AP_STACK_SIZE, AP_TRAMPOLINE, CPU_STACKS_SLOT, CPU_STACKS_START,
    DOUBLE_FAULT_STACK_SIZE, NMI_STACK_SIZE, PAGE_SIZE,
};
use mm::paging::shootdown::Board;
use mm::paging::{PageSize, TlbBatch, NX, PRESENT, WRITABLE};

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// CPUs running kernel code (the boot CPU included).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Most CPUs the kernel runs (more in the MADT are reported, not started).
pub const MAX_CPUS: usize = 64;
/// Every online CPU's record, by CPU index (null: not online).
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CPUS];
/// The local APIC (mapped once; every CPU reaches its own through it).
static LAPIC: Once<Lapic> = Once::new();
/// Work IPIs sent since boot.
static IPIS_SENT: AtomicU64 = AtomicU64::new(0);

/// One CPU's own data, reached through its GS base. `repr(C)`: the
/// assembly reads `this` at `gs:[0]`, the fault-catch stack pointer at
/// `gs:[8]`, and the user-mode entry fields at `gs:[16]`-`gs:[32]`
/// (asm/user.s).
#[repr(C)]
pub struct PerCpu {
    /// This record's own address (read through `gs:[0]`).
    this: AtomicU64,
    /// The stack pointer of this CPU's armed fault-recovery point (0: none;
    /// asm/exceptions.s).
    fault_catch_rsp: AtomicU64,
    /// While a user program runs on this CPU: the kernel stack pointer
    /// `user_enter` saved, where its exit resumes (0: none running).
    user_return_rsp: AtomicU64,
    /// The user stack pointer, saved by the `syscall` entry.
    user_rsp: AtomicU64,
    /// The kernel stack the `syscall` entry switches to (also TSS.RSP0).
    kernel_stack_top: AtomicU64,
    /// This CPU's GDT (for its TSS's RSP0).
    gdt: AtomicPtr<Gdt>,
    /// The user address space loaded on this CPU (null: the kernel's own).
    pub user_space: AtomicPtr<()>,
    /// Where the fault handler or the exit call leaves how the running
    /// user program ended (src/user/entry.rs).
    pub user_exit: AtomicPtr<crate::user::Exit>,
    /// The kernel's number for the CPU (0 = the boot CPU).
    pub index: usize,
    /// Its APIC id.
    apic: AtomicU32,
    /// Work posted for it: a `fn(usize)` and its state.
    work: AtomicUsize,
    state: AtomicU8,
    /// Work IPIs it received.
    pub ipis_received: AtomicU64,
    /// Shootdown requests it served.
    pub shootdowns_served: AtomicU64,
    /// The last fault its recovery point caught: vector, error code,
    /// address, RIP.
    pub caught: [AtomicU64; 4],
    /// Its NUMA node (0 until the SRAT says otherwise).
    node: AtomicU8,
    /// Its frame cache (kernel_mm::frame_cache).
    pub frames: CpuFrames,
    /// Its heap magazines (kernel_mm::heap).
    pub heap: mm::heap::magazine::CpuMagazines,
    /// Heap requests and frees its magazines took (written by this CPU
    /// alone, with interrupts off; read by anyone).
    pub magazine_ops: AtomicU64,
    /// Its magazine for each object-cache registry slot
    /// (kernel_mm::slab).
    pub slab_magazines: [mm::slab::magazine::Magazine; crate::kernel_mm::slab::MAX_CACHES],
}

const _: () = assert!(core::mem::offset_of!(PerCpu, this) == 0);
const _: () = assert!(core::mem::offset_of!(PerCpu, fault_catch_rsp) == 8);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_return_rsp) == 16);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp) == 24);
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == 32);

impl PerCpu {
    const fn new(index: usize, apic_id: u32) -> Self {
        Self {
            this: AtomicU64::new(0),
            fault_catch_rsp: AtomicU64::new(0),
            user_return_rsp: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
            kernel_stack_top: AtomicU64::new(0),
            gdt: AtomicPtr::new(ptr::null_mut()),
            user_space: AtomicPtr::new(ptr::null_mut()),
            user_exit: AtomicPtr::new(ptr::null_mut()),
            index,
            apic: AtomicU32::new(apic_id),
            work: AtomicUsize::new(0),
            state: AtomicU8::new(IDLE),
            ipis_received: AtomicU64::new(0),
            shootdowns_served: AtomicU64::new(0),
            caught: [const { AtomicU64::new(0) }; 4],
            node: AtomicU8::new(0),
            frames: CpuFrames::new(),
            heap: mm::heap::magazine::CpuMagazines::new(mm::heap::DebugChecks::for_this_build()),
            magazine_ops: AtomicU64::new(0),
            slab_magazines: [const { mm::slab::magazine::Magazine::new() };
                crate::kernel_mm::slab::MAX_CACHES],
        }
    }

    /// Its NUMA node: where its frame allocations look first.
    pub fn node(&self) -> usize {
        usize::from(self.node.load(Ordering::Relaxed))
    }

    /// Records its NUMA node (from the SRAT).
    pub fn set_node(&self, node: u8) {
        self.node.store(node, Ordering::Relaxed);
    }

    /// Its APIC id.
    pub fn apic_id(&self) -> u32 {
        self.apic.load(Ordering::Relaxed)
    }

    /// This CPU's GDT.
    pub fn gdt(&self) -> &'static Gdt {
        let gdt = self.gdt.load(Ordering::Acquire);
        if gdt.is_null() {
            return gdt::boot();
        }
        // SAFETY: only `ap_entry` stores a non-null value, a leaked
        // ('static) GDT.
        unsafe { &*gdt }
    }

    /// Sets where entries from user mode (interrupts, exceptions and
    /// `syscall`) start their kernel stack on this CPU. Call on this CPU.
    pub fn set_kernel_stack(&self, top: VirtAddr) {
        self.kernel_stack_top.store(top.as_u64(), Ordering::Relaxed);
        self.gdt().set_kernel_stack(top);
    }

    /// Whether a user program runs on this CPU (an exit point is saved).
    pub fn in_user_program(&self) -> bool {
        self.user_return_rsp.load(Ordering::SeqCst) != 0
    }

    /// Whether a fault-recovery point is armed on this CPU.
    pub fn fault_catch_armed(&self) -> bool {
        self.fault_catch_rsp.load(Ordering::SeqCst) != 0
    }
}

/// The boot CPU's record: static, so that it exists before the heap.
static BOOT_CPU: PerCpu = PerCpu::new(0, 0);

/// Installs the boot CPU's record (GS base, CPU 0): first thing at boot,
/// before any fault can be caught.
pub fn init_boot_cpu() {
    BOOT_CPU.apic.store(boot_apic_id(), Ordering::Relaxed);
    register(&BOOT_CPU);
    install_per_cpu(&BOOT_CPU);
}

/// Makes a record found through GS base and `cpu(index)`.
fn register(record: &'static PerCpu) {
    record
        .this
        .store(record as *const PerCpu as u64, Ordering::Release);
    CPUS[record.index].store(record as *const PerCpu as *mut PerCpu, Ordering::Release);
}

/// Mailbox states.
const IDLE: u8 = 0;
const POSTED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// What a new CPU record starts as, copied into the heap: a record is
/// 30-odd KiB (the magazines), too big to build on the stack and move,
/// which the debug build would do more than once (the boot stack is
/// 64 KiB).
static RECORD_TEMPLATE: PerCpu = PerCpu::new(0, 0);

/// Makes and registers CPU `index`'s record (leaked: a CPU never goes away).
fn new_per_cpu(index: usize, apic_id: u32) -> &'static PerCpu {
    let mut record = Box::<PerCpu>::new_uninit();
    // SAFETY: nothing uses RECORD_TEMPLATE but this copy, so no one has
    // written it and its bytes are those of `PerCpu::new(0, 0)`, a valid
    // record; PerCpu has no Drop and holds no pointer into itself (`this`
    // is 0 until `register`), so the copy is a record of its own.
    let record = unsafe {
        ptr::copy_nonoverlapping(&RECORD_TEMPLATE, record.as_mut_ptr(), 1);
        Box::leak(record.assume_init())
    };
    record.index = index;
    record.apic.store(apic_id, Ordering::Relaxed);
    let record: &'static PerCpu = record;
    register(record);
    record
}

/// Points this CPU's GS base at `record`.
fn install_per_cpu(record: &'static PerCpu) {
    GsBase::write(VirtAddr::from_ptr(record));
}

/// This CPU's record; `None` before bring-up set one (on the boot CPU,
/// until `start_all`).
pub fn current() -> Option<&'static PerCpu> {
    if GsBase::read().is_null() {
        return None;
    }
    let this: *const PerCpu;
    // SAFETY: a non-zero GS base is set only by `install_per_cpu`, to a
    // 'static record whose first field is its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) this, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: see above: the record lives forever and is Sync.
    Some(unsafe { &*this })
}

/// The record of CPU `index`, if it is online.
pub fn cpu(index: usize) -> Option<&'static PerCpu> {
    let record = CPUS.get(index)?.load(Ordering::Acquire);
    // SAFETY: non-null entries point at leaked records (`new_per_cpu`).
    (!record.is_null()).then(|| unsafe { &*record })
}

/// Work IPIs sent since boot.
pub fn ipis_sent() -> u64 {
    IPIS_SENT.load(Ordering::Relaxed)
}

/// A CPU that did not finish its work in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hung {
    /// Its index.
    pub index: usize,
    /// Its APIC id.
    pub apic_id: u32,
}

/// Runs `work(index)` on every other online CPU (woken by an IPI) while
/// this CPU runs `work` too, and waits up to `timeout_us` for all of them;
/// the first CPU that did not finish is named. Call on the boot CPU, one
/// call at a time.
pub fn run_on_all(work: fn(usize), timeout_us: u64) -> Result<(), Hung> {
    let others: Vec<&'static PerCpu> = (1..MAX_CPUS).filter_map(cpu).collect();
    for target in &others {
        target.work.store(work as usize, Ordering::Relaxed);
        target.state.store(POSTED, Ordering::Release);
        send_ipi(target, WORK_VECTOR, &IPIS_SENT);
    }
    work(0);
    let mut result = Ok(());
    for target in &others {
        let done = clock::wait_us(timeout_us, || {
            serve_shootdown();
            target.state.load(Ordering::Acquire) == DONE
        });
        if done {
            target.state.store(IDLE, Ordering::Release);
        } else if result.is_ok() {
            result = Err(Hung {
                index: target.index,
                apic_id: target.apic_id(),
            });
        }
    }
    result
}

/// The work IPI's vector.
const WORK_VECTOR: u8 = 240;

/// The work IPI's handler: it only wakes the CPU from `hlt` (the idle loop
/// then looks at its mailbox).
pub fn work_interrupt() {
    if let Some(record) = current() {
        record.ipis_received.fetch_add(1, Ordering::Relaxed);
    }
    end_of_interrupt();
}

/// Tells the local APIC the interrupt being handled is done.
fn end_of_interrupt() {
    if let Some(lapic) = LAPIC.get() {
        lapic.eoi();
    }
}
/// The APIC id of the last CPU that reached Rust (`u32::MAX`: none yet).
static CHECKED_IN: AtomicU32 = AtomicU32::new(u32::MAX);

/// How long the boot CPU waits, per the MP specification's sequence.
const INIT_DELAY_US: u64 = 10_000;
const FIRST_SIPI_WAIT_US: u64 = 1_000;
/// After the second SIPI: generous, for TCG.
const SECOND_SIPI_WAIT_US: u64 = 500_000;

/// What became of one CPU the MADT lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The CPU running this code.
    Boot,
    /// Started, and checked in after this many microseconds.
    Started(u64),
    /// Sent INIT-SIPI-SIPI; it never checked in.
    NoAnswer,
    /// The MADT does not mark it enabled.
    NotEnabled,
    /// Beyond the `smp=N` limit.
    OverLimit,
    /// Its stacks or tables could not be made (out of memory).
    NoMemory,
    /// The IPIs could not be sent.
    SendFailed,
}

/// One CPU's bring-up, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuStart {
    /// Its APIC id.
    pub apic_id: u32,
    /// The kernel's CPU number (0 = boot CPU; only for started CPUs).
    pub index: usize,
    /// What happened.
    pub outcome: Outcome,
}

/// What an application processor needs once it runs Rust.
struct ApStart {
    gdt: &'static Gdt,
    record: &'static PerCpu,
}

/// Number of CPUs running kernel code.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// The boot CPU's APIC id (CPUID 1, EBX bits 31-24).
fn boot_apic_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// Starts every enabled CPU of `madt`, at most `limit` CPUs in all (the
/// boot CPU counts); returns what happened to each CPU listed.
pub fn start_all(madt: &Madt, limit: usize) -> Vec<CpuStart> {
    let boot = boot_apic_id();
    let mut report = Vec::new();
    let lapic = match mm::checked_phys(madt.local_apic_address)
        .map_err(|_| mm::MmError::InvalidArgument)
        .and_then(Lapic::map)
    {
        Ok(lapic) => lapic,
        Err(error) => {
            log::warn!("smp: cannot map the local APIC: {error}; one CPU only");
            return report;
        }
    };
    lapic.enable();
    let lapic = LAPIC.call_once(|| lapic);
    crate::sync::set_spin_hook(serve_shootdown);
    let trampoline_ready = install_trampoline();
    let mut started = 1;
    for cpu in &madt.processors {
        let mut entry = CpuStart {
            apic_id: cpu.apic_id,
            index: 0,
            outcome: Outcome::Boot,
        };
        if cpu.apic_id == boot {
            report.push(entry);
            continue;
        }
        entry.outcome = if !cpu.enabled {
            Outcome::NotEnabled
        } else if started >= limit || started >= MAX_CPUS {
            Outcome::OverLimit
        } else if !trampoline_ready {
            Outcome::NoMemory
        } else {
            let outcome = start_one(lapic, started, cpu.apic_id);
            if matches!(outcome, Outcome::Started(_)) {
                entry.index = started;
                started += 1;
            }
            outcome
        };
        report.push(entry);
    }
    if trampoline_ready {
        // SAFETY: the identity mapping of the trampoline page was made for
        // bring-up alone; every CPU that checked in runs kernel code now,
        // and one that did not answer is given up (docs/smp.md).
        if let Err(error) = unsafe { vmm::unmap(VirtAddr::new(AP_TRAMPOLINE)) } {
            log::warn!("smp: unmapping the trampoline page: {error}");
        }
    }
    report
}

/// Copies the trampoline into its page (through the direct map) and maps
/// the page at its own address, present and executable, read-only.
fn install_trampoline() -> bool {
    // The bounds of the trampoline's bytes in .rodata, emitted by
    // asm/ap_trampoline.s (taking their addresses reads nothing).
    let (start, end) = (
        ptr::addr_of!(ap_trampoline_start),
        ptr::addr_of!(ap_trampoline_end),
    );
    let len = end as usize - start as usize;
    if len as u64 > AP_PARAMS - AP_TRAMPOLINE {
        log::error!("smp: the trampoline ({len} bytes) runs into its parameters");
        return false;
    }
    let page = phys_to_virt(PhysAddr::new(AP_TRAMPOLINE)).as_mut_ptr::<u8>();
    // SAFETY: AP_TRAMPOLINE is a RAM page below the bootstrap pool that no
    // allocator hands out (mm::layout), reached through the direct map;
    // the source is `len` bytes of .rodata.
    unsafe { ptr::copy_nonoverlapping(start, page, len) };
    // SAFETY: the page belongs to bring-up alone; the mapping is
    // read-only, so it gives no second writable way to anything.
    let mapped = unsafe {
        vmm::map(
            VirtAddr::new(AP_TRAMPOLINE),
            PhysAddr::new(AP_TRAMPOLINE),
            PageSize::Size4KiB,
            PRESENT,
        )
    };
    if let Err(error) = mapped {
        log::error!("smp: cannot map the trampoline page: {error}");
        return false;
    }
    true
}

/// Makes CPU `index`'s stacks and tables and starts the CPU with APIC id
/// `apic_id`.
fn start_one(lapic: &Lapic, index: usize, apic_id: u32) -> Outcome {
    let Some((stack_top, gdt)) = stacks_and_tables(index) else {
        return Outcome::NoMemory;
    };
    let record = new_per_cpu(index, apic_id);
    let start: &'static ApStart = Box::leak(Box::new(ApStart { gdt, record }));
    let params = [
        vmm::current_cr3().start_address().as_u64(),
        stack_top.as_u64(),
        start as *const ApStart as u64,
        ap_entry as *const () as u64,
    ];
    let slot = phys_to_virt(PhysAddr::new(AP_PARAMS)).as_mut_ptr::<[u64; 4]>();
    // SAFETY: AP_PARAMS lies in the trampoline page (see `install_trampoline`),
    // 8-aligned, written only here while no CPU is starting.
    unsafe { slot.write_volatile(params) };
    CHECKED_IN.store(u32::MAX, Ordering::SeqCst);
    let began = cpu::rdtsc();
    let checked_in = || CHECKED_IN.load(Ordering::Acquire) == apic_id;
    let page = (AP_TRAMPOLINE / PAGE_SIZE) as u8;
    if lapic
        .send(Destination::Apic(apic_id), IpiKind::Init)
        .is_err()
    {
        return Outcome::SendFailed;
    }
    clock::delay_us(INIT_DELAY_US);
    for wait in [FIRST_SIPI_WAIT_US, SECOND_SIPI_WAIT_US] {
        if lapic
            .send(Destination::Apic(apic_id), IpiKind::Startup(page))
            .is_err()
        {
            return Outcome::SendFailed;
        }
        if clock::wait_us(wait, checked_in) {
            return Outcome::Started(clock::micros_since(began));
        }
    }
    // Not online: its record must not receive work.
    CPUS[index].store(ptr::null_mut(), Ordering::Release);
    Outcome::NoAnswer
}

/// The first address of CPU `index`'s stack slot (its kernel stack's guard
/// page).
fn stack_slot(index: usize) -> u64 {
    CPU_STACKS_START + index as u64 * CPU_STACKS_SLOT
}

/// CPU `index`'s kernel, double-fault and NMI stacks (each above an
/// unmapped guard page) and its GDT and TSS; the kernel stack's top.
fn stacks_and_tables(index: usize) -> Option<(VirtAddr, &'static Gdt)> {
    let mut next = stack_slot(index);
    let mut stack = |size: usize| -> Option<VirtAddr> {
        let base = VirtAddr::new(next + PAGE_SIZE);
        let mapping = vmm::map_fresh(base, size as u64, WRITABLE | NX).ok()?;
        mapping.keep();
        next = base.as_u64() + size as u64;
        Some(VirtAddr::new(next))
    };
    let kernel = stack(AP_STACK_SIZE)?;
    let double_fault = stack(DOUBLE_FAULT_STACK_SIZE)?;
    let nmi = stack(NMI_STACK_SIZE)?;
    Some((kernel, gdt::build_for_ap(double_fault, nmi)))
}

/// Where an application processor enters Rust (called by the trampoline
/// on its own stack): loads its tables and per-CPU record, enables its
/// local APIC, checks in, and waits for work.
extern "C" fn ap_entry(start: &'static ApStart) -> ! {
    gdt::load_for_ap(start.gdt);
    start
        .record
        .gdt
        .store(ptr::from_ref(start.gdt).cast_mut(), Ordering::Release);
    idt::init();
    cpu::harden(&cpu::features());
    install_per_cpu(start.record);
    crate::user::entry::init_cpu();
    if let Some(lapic) = LAPIC.get() {
        lapic.enable();
    }
    ONLINE.fetch_add(1, Ordering::AcqRel);
    CHECKED_IN.store(start.record.apic_id(), Ordering::Release);
    idle(start.record)
}

/// A parked CPU: runs the work posted for it, else sleeps until an
/// interrupt (`sti; hlt` is atomic: an IPI that arrives after the check
/// still wakes the `hlt`).
fn idle(record: &'static PerCpu) -> ! {
    use x86_64::instructions::interrupts;
    loop {
        interrupts::disable();
        if record.state.load(Ordering::Acquire) == POSTED {
            record.state.store(RUNNING, Ordering::Relaxed);
            let work = record.work.load(Ordering::Relaxed);
            // SAFETY: `run_on_all` stores only `fn(usize)` pointers here.
            let work: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(work) };
            interrupts::enable();
            work(record.index);
            record.state.store(DONE, Ordering::Release);
            continue;
        }
        interrupts::enable_and_hlt();
    }
}

/// The shootdown IPI's vector.
const SHOOTDOWN_VECTOR: u8 = 241;
/// The shootdown protocol's shared state (mm::paging::shootdown, where it
/// is host-tested with threads).
static BOARD: Board<MAX_CPUS> = Board::new();
/// Shootdowns that reached other CPUs, and the IPIs they sent.
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWN_IPIS: AtomicU64 = AtomicU64::new(0);

/// Shootdowns that reached other CPUs since boot, and their IPIs.
pub fn shootdown_counts() -> (u64, u64) {
    (
        SHOOTDOWNS.load(Ordering::Relaxed),
        SHOOTDOWN_IPIS.load(Ordering::Relaxed),
    )
}

/// Invalidates `batch` on this CPU and on every other online CPU, and
/// returns once every one of them has done it: after this, no CPU can
/// use a translation the batch names, so frames and page tables it freed
/// may be handed out again. One IPI per other CPU per batch.
///
/// Protocol (docs/smp.md, `mm::paging::shootdown::Board`): one shootdown
/// is in flight at a time; the initiator publishes the request (a new
/// generation), requests it of each target and sends the IPI, then waits
/// until each target has done that generation.
/// Every wait here, every lock wait (the spin hook) and the IPI handler
/// serve requests aimed at their CPU, so two CPUs shooting down at once,
/// or a target spinning on a lock with interrupts off, cannot deadlock.
/// Call with no `IrqMutex` held that a target may need to make progress
/// (the VMM calls it after releasing its lock).
pub fn shootdown(batch: &TlbBatch) {
    shootdown_to(batch, u64::MAX);
}

/// [`shootdown`] for the CPUs in `cpus` (bit i = CPU index i) only: the
/// CPUs that have a user address space loaded. This CPU flushes whether
/// or not it is in the set; no IPI is sent when no other CPU is.
pub fn shootdown_to(batch: &TlbBatch, cpus: u64) {
    if batch.is_empty() {
        return;
    }
    batch.apply(&mut CpuTlb);
    if online() <= 1 {
        return;
    }
    let me = current().map_or(0, |cpu| cpu.index);
    let others = cpus & !(1 << me);
    if others == 0 {
        return;
    }
    spin_serving(|| BOARD.try_begin());
    let generation = BOARD.publish(batch);
    let targets = (0..MAX_CPUS)
        .filter(|&index| others & (1 << index) != 0)
        .filter_map(cpu);
    for target in targets.clone() {
        BOARD.request(target.index, generation);
        send_ipi(target, SHOOTDOWN_VECTOR, &SHOOTDOWN_IPIS);
    }
    for target in targets {
        spin_serving(|| BOARD.done(target.index, generation));
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    BOARD.end();
}

/// Spins until `done`, serving shootdown requests aimed at this CPU on
/// every turn (so that two CPUs waiting on each other both progress).
fn spin_serving(done: impl Fn() -> bool) {
    while !done() {
        serve_shootdown();
        core::hint::spin_loop();
    }
}

/// Sends `target` the IPI `vector` and counts it in `sent` (nothing before
/// the local APIC is mapped).
fn send_ipi(target: &PerCpu, vector: u8, sent: &AtomicU64) {
    if let Some(lapic) = LAPIC.get() {
        let _ = lapic.send(Destination::Apic(target.apic_id()), IpiKind::Fixed(vector));
        sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Does the shootdown asked of this CPU, if one is waiting, and hands
/// over its frame cache if another CPU asked for it (both requests come
/// with the shootdown IPI and are served in every lock wait).
pub fn serve_shootdown() {
    let Some(me) = current() else {
        return;
    };
    if BOARD.serve(me.index, &mut CpuTlb) {
        me.shootdowns_served.fetch_add(1, Ordering::Relaxed);
    }
    frame_cache::serve_donation();
}

/// Interrupts `target` so that it serves what was asked of it (its frame
/// cache, here): the shootdown IPI, whose handler serves every request.
pub fn poke(target: &PerCpu) {
    send_ipi(target, SHOOTDOWN_VECTOR, &SHOOTDOWN_IPIS);
}

/// The shootdown IPI's handler.
pub fn shootdown_interrupt() {
    serve_shootdown();
    end_of_interrupt();
}

/// Set when one CPU stops the machine on a fatal error: the others halt
/// at the NMI that follows.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a fatal error is stopping the machine (the NMI handler halts
/// the CPU it runs on then).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// On a fatal error: asks every other CPU to halt (an NMI, which even a
/// CPU spinning with interrupts off takes) and waits briefly for them, so
/// that the report that follows is written by this CPU alone.
pub fn stop_others() {
    if online() <= 1 || STOPPING.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Some(lapic) = LAPIC.get() {
        let _ = lapic.send(Destination::AllButSelf, IpiKind::Nmi);
        clock::delay_us(10_000);
    }
}

/// The guard page below the kernel stack of the CPU running this: the
/// boot stack's for CPU 0, else the first page of its stack slot.
/// (A virtual range: the kernel runs identity-mapped, so the boot
/// stack's is its physical one.)
pub fn kernel_stack_guard() -> mm::pmm::PhysRange {
    match current().map_or(0, |cpu| cpu.index) {
        0 => super::sections::boot_stack_guard(),
        index => mm::pmm::PhysRange::from_len(stack_slot(index), PAGE_SIZE),
    }
}

/// How the local APIC is reached, for the report ("xAPIC" or "x2APIC"),
/// once bring-up mapped it.
pub fn lapic_mode() -> Option<&'static str> {
    LAPIC.get().map(|lapic| {
        if lapic.is_x2apic() {
            "x2APIC (MSRs)"
        } else {
            "xAPIC (uncached MMIO)"
        }
    })
}
