//! In-kernel tests of the user copy routines and of the CPU protections
//! that keep the kernel out of user pages (SMEP, SMAP, UMIP).
//!
//! The user pages here are test pages mapped with USER in the kernel's own
//! page tables, in the user half; each test unmaps and frees what it
//! mapped, and checks that the PMM and page-table counters are as before.

use core::hint::black_box;
use core::ptr;

use x86_64::structures::paging::PageTableFlags;
use x86_64::PhysAddr;

use super::raw_vmm;
use super::{Context, Expect, Failure, Test, TestResult};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::exceptions::{catch_fault, vector, CaughtFault, TrapFrame};
use crate::arch::x86_64::usercopy::{
    self, copy_from_user, copy_to_user, UserCopyError, UserPtr, UserSlice,
};
use crate::kernel_mm::{phys_to_virt, pmm, vmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::layout::{PAGE_SIZE, USER_END, USER_START};
use mm::paging::{PageSize, NX, USER, WRITABLE};

/// The user-copy and protection tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "usercopy::round_trip_through_a_user_page",
        run: round_trip_through_a_user_page,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::fault_at_a_page_boundary_stops_there",
        run: fault_at_a_page_boundary_stops_there,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::bad_pointers_refused_before_any_access",
        run: bad_pointers_refused_before_any_access,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::fixup_only_for_the_copy_on_a_user_address",
        run: fixup_only_for_the_copy_on_a_user_address,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::smap_blocks_direct_kernel_reads_where_on",
        run: smap_blocks_direct_kernel_reads_where_on,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::smep_blocks_kernel_calls_into_user_pages_where_on",
        run: smep_blocks_kernel_calls_into_user_pages_where_on,
        expects: Expect::NOTHING,
    },
    Test {
        name: "usercopy::umip_on_where_offered",
        run: umip_on_where_offered,
        expects: Expect::NOTHING,
    },
];

/// The test user page; the page after it is never mapped.
const USER_PAGE: u64 = USER_START + 0x10_0000;
/// A read-only user page (not next to [`USER_PAGE`]).
const READ_ONLY_PAGE: u64 = USER_PAGE + 3 * PAGE_SIZE;
/// A user page holding code, for SMEP.
const CODE_PAGE: u64 = USER_PAGE + 5 * PAGE_SIZE;

const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_FETCH: u64 = 1 << 4;

/// A frame of ours mapped at a user address of the kernel's page tables.
struct TestPage {
    virt: u64,
    frame: PhysAddr,
}

impl TestPage {
    /// Maps a zeroed frame at `virt` with `flags` (USER added).
    fn map(virt: u64, flags: PageTableFlags) -> Result<Self, Failure> {
        let frame = pmm::alloc_zeroed()
            .ok_or(Failure::here("no frame"))?
            .start_address();
        if raw_vmm::map(virt, frame.as_u64(), PageSize::Size4KiB, flags | USER).is_err() {
            let _ = pmm::free_page(frame);
            return Err(Failure::here("mapping the test user page failed"));
        }
        Ok(Self { virt, frame })
    }

    /// The frame's bytes, through the direct map (kernel-only, so no SMAP).
    fn direct(&self) -> *mut u8 {
        phys_to_virt(self.frame).as_mut_ptr::<u8>()
    }

    /// Reads byte `offset` of the frame through the direct map.
    fn byte(&self, offset: u64) -> u8 {
        // SAFETY: `offset` < 4096 in every caller; the frame is ours and
        // direct-mapped, and no reference points into it.
        unsafe { ptr::read_volatile(self.direct().add(offset as usize)) }
    }

    /// Unmaps the page and frees the frame.
    fn release(self) -> TestResult {
        kassert_eq!(
            raw_vmm::unmap(self.virt),
            Ok((self.frame, PageSize::Size4KiB))
        );
        kassert_eq!(pmm::free_page(self.frame), Ok(()));
        Ok(())
    }
}

/// What every test must leave as it found.
fn counters() -> (mm::pmm::Stats, usize) {
    (pmm::stats(), vmm::table_count())
}

/// Whether every level of the walk to `virt` (PML4, PDPT, PD entries and
/// the PT leaf) has USER: the CPU allows user access only then.
fn user_at_every_level(virt: u64) -> bool {
    let mut table = vmm::current_cr3().start_address();
    for shift in [39, 30, 21, 12] {
        let index = (virt >> shift) & 0x1FF;
        // SAFETY: `table` is a live page-table frame (the root, or one
        // named by a present entry above), direct-mapped; reading an entry
        // has no side effect.
        let entry =
            unsafe { ptr::read_volatile(phys_to_virt(table).as_ptr::<u64>().add(index as usize)) };
        if entry & 1 == 0 || entry & USER.bits() == 0 {
            return false;
        }
        table = PhysAddr::new(entry & 0x000F_FFFF_FFFF_F000);
    }
    true
}

/// Data, round-trip: copy_to_user then copy_from_user, 0, 1, 4096 bytes
/// and an unaligned run; what the user page holds matches, seen through
/// the direct map.
fn round_trip_through_a_user_page(_: &Context<'_>) -> TestResult {
    let before = counters();
    let page = TestPage::map(USER_PAGE, WRITABLE | NX)?;
    let result = round_trip(&page);
    page.release()?;
    kassert_eq!(counters(), before);
    result
}

fn round_trip(page: &TestPage) -> TestResult {
    // The mapper gives the intermediate entries USER when the leaf has it.
    kassert!(
        user_at_every_level(USER_PAGE),
        "an entry on the walk to the test user page lacks USER"
    );
    let user = UserPtr::new(USER_PAGE);
    let mut pattern = [0u8; PAGE_SIZE as usize];
    for (index, byte) in pattern.iter_mut().enumerate() {
        *byte = (index * 7 + 3) as u8;
    }
    let mut back = [0u8; PAGE_SIZE as usize];

    // Length 0: nothing moves, even at a page-aligned start.
    kassert_eq!(copy_to_user(user, &[]), Ok(()));
    kassert_eq!(copy_from_user(&mut [], user), Ok(()));
    kassert_eq!(page.byte(0), 0);

    // One byte, at the last offset of the page.
    let last = USER_PAGE + PAGE_SIZE - 1;
    kassert_eq!(copy_to_user(UserPtr::new(last), &[0x5A]), Ok(()));
    kassert_eq!(page.byte(PAGE_SIZE - 1), 0x5A);
    kassert_eq!(page.byte(PAGE_SIZE - 2), 0);
    let mut one = [0u8];
    kassert_eq!(copy_from_user(&mut one, UserPtr::new(last)), Ok(()));
    kassert_eq!(one[0], 0x5A);

    // The whole page.
    kassert_eq!(copy_to_user(user, &pattern), Ok(()));
    kassert_eq!(copy_from_user(&mut back, user), Ok(()));
    kassert!(back == pattern, "the page did not round-trip");
    for offset in [0, 1, 2047, 4095] {
        kassert_eq!(page.byte(offset), pattern[offset as usize]);
    }

    // An unaligned run inside the page.
    let run = &pattern[100..1337];
    let at = UserPtr::new(USER_PAGE + 17);
    kassert_eq!(copy_to_user(at, run), Ok(()));
    let mut run_back = [0u8; 1237];
    kassert_eq!(copy_from_user(&mut run_back, at), Ok(()));
    kassert!(run_back[..] == *run, "the unaligned run did not round-trip");
    kassert_eq!(page.byte(16), pattern[16]);
    kassert_eq!(page.byte(17 + 1237), pattern[17 + 1237]);
    Ok(())
}

/// A copy that runs from a mapped user page into the unmapped one after it
/// stops with `Fault` at the first byte of the unmapped page: the bytes
/// before it are copied, nothing after it, and the kernel buffer past that
/// point is unchanged.
fn fault_at_a_page_boundary_stops_there(_: &Context<'_>) -> TestResult {
    let before = counters();
    let page = TestPage::map(USER_PAGE, WRITABLE | NX)?;
    let result = across_the_boundary(&page);
    page.release()?;
    kassert_eq!(counters(), before);
    result
}

fn across_the_boundary(page: &TestPage) -> TestResult {
    let boundary = USER_PAGE + PAGE_SIZE;
    kassert!(
        raw_vmm::translate(boundary).is_none(),
        "the page after the test page is mapped"
    );
    let start = UserPtr::new(boundary - 16);
    let data = [0xC5u8; 64];
    kassert_eq!(
        copy_to_user(start, &data),
        Err(UserCopyError::Fault { address: boundary })
    );
    for offset in PAGE_SIZE - 16..PAGE_SIZE {
        kassert_eq!(page.byte(offset), 0xC5);
    }
    kassert_eq!(page.byte(PAGE_SIZE - 17), 0);

    let mut buffer = [0xEEu8; 64];
    kassert_eq!(
        copy_from_user(&mut buffer, start),
        Err(UserCopyError::Fault { address: boundary })
    );
    kassert!(
        buffer[..16].iter().all(|&byte| byte == 0xC5),
        "the bytes before the fault were not copied"
    );
    kassert!(
        buffer[16..].iter().all(|&byte| byte == 0xEE),
        "the kernel buffer changed past the fault"
    );

    // Entirely in the unmapped page: a fault on the very first byte.
    kassert_eq!(
        copy_from_user(&mut buffer, UserPtr::new(boundary)),
        Err(UserCopyError::Fault { address: boundary })
    );
    kassert!(
        buffer[16..].iter().all(|&byte| byte == 0xEE),
        "a copy that copied nothing changed the kernel buffer"
    );
    Ok(())
}

/// Kernel, non-canonical and overflowing ranges are refused with their own
/// errors before any access (the kernel buffers stay as they were); an
/// unmapped user page and a read-only one give `Fault`.
fn bad_pointers_refused_before_any_access(_: &Context<'_>) -> TestResult {
    let mut buffer = [0x11u8; 32];
    let kernel_buffer = buffer.as_ptr() as u64;
    let direct_map = phys_to_virt(PhysAddr::new(0x10_0000)).as_u64();
    for address in [0, kernel_buffer, USER_START - 1, direct_map] {
        kassert_eq!(
            copy_from_user(&mut buffer, UserPtr::new(address)),
            Err(UserCopyError::NotUserAddress { address })
        );
        kassert_eq!(
            copy_to_user(UserPtr::new(address), &[0x22; 4]),
            Err(UserCopyError::NotUserAddress { address })
        );
        // Even empty: the pointer is checked.
        kassert_eq!(
            copy_to_user(UserPtr::new(address), &[]),
            Err(UserCopyError::NotUserAddress { address })
        );
    }
    kassert!(
        buffer.iter().all(|&byte| byte == 0x11),
        "a refused copy changed the kernel buffer"
    );
    for address in [USER_END, 0x1234_5678_0000_0000, 0xFFFF_0000_0000_0000] {
        kassert_eq!(
            copy_from_user(&mut buffer, UserPtr::new(address)),
            Err(UserCopyError::NonCanonical { address })
        );
        kassert_eq!(
            copy_to_user(UserPtr::new(address), &buffer),
            Err(UserCopyError::NonCanonical { address })
        );
    }
    // Past USER_END by one byte, and wrapping around the address space.
    let near_end = USER_END - 8;
    kassert_eq!(
        copy_to_user(UserPtr::new(near_end), &[0; 9]),
        Err(UserCopyError::LengthOverflow {
            address: near_end,
            len: 9
        })
    );
    kassert_eq!(
        UserSlice::new(UserPtr::new(USER_PAGE), usize::MAX),
        Err(UserCopyError::LengthOverflow {
            address: USER_PAGE,
            len: usize::MAX
        })
    );
    // Up to USER_END exactly is allowed; nothing is mapped there.
    kassert!(
        raw_vmm::translate(near_end).is_none(),
        "the top user page is mapped"
    );
    kassert_eq!(
        copy_from_user(&mut buffer[..8], UserPtr::new(near_end)),
        Err(UserCopyError::Fault { address: near_end })
    );
    kassert!(
        buffer.iter().all(|&byte| byte == 0x11),
        "a faulted copy changed the kernel buffer"
    );

    // Mapped but not writable: reading works, writing faults (CR0.WP).
    let before = counters();
    let page = TestPage::map(READ_ONLY_PAGE, NX)?;
    let mut byte = [0xFFu8];
    let read = copy_from_user(&mut byte, UserPtr::new(READ_ONLY_PAGE + 5));
    let write = copy_to_user(UserPtr::new(READ_ONLY_PAGE + 5), &[1, 2]);
    let untouched = page.byte(5) == 0;
    page.release()?;
    kassert_eq!(counters(), before);
    kassert_eq!((read, byte[0]), (Ok(()), 0));
    kassert_eq!(
        write,
        Err(UserCopyError::Fault {
            address: READ_ONLY_PAGE + 5
        })
    );
    kassert!(untouched, "a refused write reached the read-only page");
    Ok(())
}

/// A made-up frame at `rip`, in kernel mode.
fn frame_at(vector: u64, rip: u64) -> TrapFrame {
    TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector,
        error_code: 0,
        rip,
        cs: 0x08,
        rflags: 0,
        rsp: 0,
        ss: 0x10,
    }
}

/// The fixup hook redirects exactly one case: a kernel-mode #PF (or #GP)
/// at the copy instruction on a user address. Another instruction, a
/// kernel address (the kernel side of the copy), user mode or another
/// vector stay the dispatcher's, and the frame is left alone.
fn fixup_only_for_the_copy_on_a_user_address(_: &Context<'_>) -> TestResult {
    let (copy, resume) =
        usercopy::copy_instruction_and_fixup().ok_or(Failure::here("the fixup table is empty"))?;
    let user = USER_PAGE + 0x123;

    let mut frame = frame_at(vector::PAGE_FAULT, copy);
    frame.rcx = 7;
    kassert!(
        usercopy::fixup(&mut frame, user),
        "the copy's fault was not fixed up"
    );
    // Resumes at the fixup label with the registers as they were.
    kassert_eq!((frame.rip, frame.rcx), (resume, 7));

    let mut general = frame_at(vector::GENERAL_PROTECTION, copy);
    general.rdi = user;
    general.rsi = 0x20_0000;
    kassert!(
        usercopy::fixup(&mut general, 0),
        "a #GP in the copy was not fixed up"
    );
    kassert_eq!(general.rip, resume);

    let kernel_side = 0x20_0000;
    let untouched = [
        (frame_at(vector::PAGE_FAULT, copy + 1), user),
        (frame_at(vector::PAGE_FAULT, copy), kernel_side),
        (frame_at(vector::INVALID_OPCODE, copy), user),
        (frame_at(vector::GENERAL_PROTECTION, copy), 0),
        (
            TrapFrame {
                cs: 0x23,
                ..frame_at(vector::PAGE_FAULT, copy)
            },
            user,
        ),
    ];
    for (mut frame, address) in untouched {
        let rip = frame.rip;
        kassert!(
            !usercopy::fixup(&mut frame, address),
            "a fault outside the copy's case was fixed up"
        );
        kassert_eq!(frame.rip, rip);
    }
    Ok(())
}

/// Checks a caught page fault: address, and error-code bits set and clear.
fn expect_page_fault(fault: Option<CaughtFault>, address: u64, set: u64, clear: u64) -> TestResult {
    let fault = fault.ok_or(Failure::here("the access did not fault"))?;
    kassert_eq!(fault.vector, vector::PAGE_FAULT);
    kassert_eq!(fault.address, address);
    kassert_eq!(fault.error_code & (set | clear), set);
    Ok(())
}

/// RFLAGS.AC, which `stac` sets and `clac` clears.
fn alignment_check_flag() -> bool {
    x86_64::registers::rflags::read().contains(x86_64::registers::rflags::RFlags::ALIGNMENT_CHECK)
}

/// With SMAP on, the kernel reading a user page directly (outside the copy
/// routines) takes a protection-violation page fault, before and after
/// copies (successful and faulted), so the copies close their window.
/// Without SMAP the same read of the same page goes through: the control
/// showing that the fault is SMAP's (the test ISOs skip nothing, so this
/// is what a CPU without SMAP checks; boot `suite-cpu-max-1g-pages`
/// expects the line saying the fault was seen).
fn smap_blocks_direct_kernel_reads_where_on(_: &Context<'_>) -> TestResult {
    let smap = cpu::protections().smap;
    let before = counters();
    let page = TestPage::map(USER_PAGE, WRITABLE | NX)?;
    let result = if smap {
        smap_checks(&page)
    } else {
        read_without_smap()
    };
    page.release()?;
    kassert_eq!(counters(), before);
    result?;
    if smap {
        kprintln!("    SMAP on: direct kernel reads of a user page fault, copies go through");
    } else {
        kprintln!("    CPU lacks SMAP: a direct kernel read of a user page goes through");
    }
    Ok(())
}

/// Reads the first byte of the test user page directly, with a recovery
/// point armed; the byte if it did not fault.
fn direct_read() -> Result<u8, CaughtFault> {
    let mut value = 0;
    let slot = &mut value;
    match catch_fault(|| {
        // SAFETY: deliberately reads a user page from kernel mode; with
        // SMAP on the page fault is caught, without it the page is ours
        // and mapped.
        *slot = unsafe { ptr::read_volatile(black_box(USER_PAGE as *const u8)) };
    }) {
        None => Ok(value),
        Some(fault) => Err(fault),
    }
}

fn smap_checks(page: &TestPage) -> TestResult {
    let smap_fault = || {
        expect_page_fault(
            direct_read().err(),
            USER_PAGE,
            PF_PRESENT,
            PF_WRITE | PF_USER,
        )
    };
    smap_fault()?;
    kassert_eq!(copy_to_user(UserPtr::new(USER_PAGE), &[9, 8, 7]), Ok(()));
    kassert!(!alignment_check_flag(), "RFLAGS.AC left set after a copy");
    smap_fault()?;
    let mut buffer = [0u8; 32];
    kassert_eq!(
        copy_from_user(&mut buffer, UserPtr::new(USER_PAGE + PAGE_SIZE - 16)),
        Err(UserCopyError::Fault {
            address: USER_PAGE + PAGE_SIZE
        })
    );
    kassert!(
        !alignment_check_flag(),
        "RFLAGS.AC left set after a faulted copy"
    );
    smap_fault()?;
    kassert_eq!(page.byte(2), 7);
    Ok(())
}

fn read_without_smap() -> TestResult {
    kassert_eq!(copy_to_user(UserPtr::new(USER_PAGE), &[9, 8, 7]), Ok(()));
    kassert_eq!(direct_read(), Ok(9));
    Ok(())
}

/// With SMEP on, the kernel calling into a user page (holding `ret`) takes
/// an instruction-fetch, protection-violation page fault. Without SMEP
/// the same call returns: the control, as for SMAP.
fn smep_blocks_kernel_calls_into_user_pages_where_on(_: &Context<'_>) -> TestResult {
    let smep = cpu::protections().smep;
    let before = counters();
    // Executable (no NX), read-only: only SMEP stops the kernel running it.
    let page = TestPage::map(CODE_PAGE, PageTableFlags::empty())?;
    // SAFETY: the frame is ours, direct-mapped; one `ret` at its start.
    unsafe { ptr::write_volatile(page.direct(), 0xC3) };
    let fault = catch_fault(|| {
        // SAFETY: not safe, on purpose: calls into a user page from kernel
        // mode. With SMEP the fetch faults before anything runs and the
        // fault is caught; without it the page's `ret` returns at once.
        let function: extern "C" fn() =
            unsafe { core::mem::transmute(black_box(CODE_PAGE) as usize) };
        function();
    });
    page.release()?;
    kassert_eq!(counters(), before);
    if smep {
        expect_page_fault(fault, CODE_PAGE, PF_PRESENT | PF_FETCH, PF_USER)?;
        kprintln!("    SMEP on: a kernel call into a user page faults");
    } else {
        kassert_eq!(fault, None);
        kprintln!("    CPU lacks SMEP: a kernel call into a user page runs");
    }
    Ok(())
}

/// UMIP (user mode may not read the descriptor-table registers) is on
/// exactly where CPUID offers it. Checking `sgdt` from ring 3 needs user
/// mode.
fn umip_on_where_offered(_: &Context<'_>) -> TestResult {
    let offered = cpu::features().umip;
    kassert_eq!(cpu::protections().umip, offered);
    if offered {
        kprintln!("    UMIP on");
    } else {
        kprintln!("    CPU lacks UMIP: CR4.UMIP off");
    }
    Ok(())
}
