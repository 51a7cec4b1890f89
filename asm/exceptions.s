# CPU exception entry stubs (vectors 0-31), the timer IRQ stub (32) and the fault catcher used by the
# in-kernel tests. Every stub leaves the same TrapFrame layout on the stack
# (see src/arch/x86_64/exceptions.rs) and calls the Rust dispatcher.

.section .text.exceptions, "ax"
.code64

# Vectors where the CPU pushes no error code get a 0, so the frame is uniform.
.macro STUB_NO_ERROR vector
exception_stub_\vector:
    push 0
    push \vector
    jmp exception_common
.endm

.macro STUB_ERROR vector
exception_stub_\vector:
    push \vector
    jmp exception_common
.endm

STUB_NO_ERROR 0     # divide error
STUB_NO_ERROR 1     # debug
STUB_NO_ERROR 2     # NMI
STUB_NO_ERROR 3     # breakpoint
STUB_NO_ERROR 4     # overflow
STUB_NO_ERROR 5     # bound range
STUB_NO_ERROR 6     # invalid opcode
STUB_NO_ERROR 7     # device not available
STUB_ERROR    8     # double fault (error code always 0)
STUB_NO_ERROR 9     # coprocessor segment overrun
STUB_ERROR    10    # invalid TSS
STUB_ERROR    11    # segment not present
STUB_ERROR    12    # stack-segment fault
STUB_ERROR    13    # general protection
STUB_ERROR    14    # page fault
STUB_NO_ERROR 15    # reserved
STUB_NO_ERROR 16    # x87 floating point
STUB_ERROR    17    # alignment check
STUB_NO_ERROR 18    # machine check
STUB_NO_ERROR 19    # SIMD floating point
STUB_NO_ERROR 20    # virtualization
STUB_ERROR    21    # control protection
STUB_NO_ERROR 22
STUB_NO_ERROR 23
STUB_NO_ERROR 24
STUB_NO_ERROR 25
STUB_NO_ERROR 26
STUB_NO_ERROR 27
STUB_NO_ERROR 28    # hypervisor injection
STUB_ERROR    29    # VMM communication
STUB_ERROR    30    # security
STUB_NO_ERROR 31
STUB_NO_ERROR 32    # IRQ 0: PIT timer (after the PIC remap)
STUB_NO_ERROR 240   # IPI: wake a parked CPU for work (src/arch/x86_64/smp.rs)
STUB_NO_ERROR 241   # IPI: TLB shootdown request (src/arch/x86_64/smp.rs)
STUB_NO_ERROR 255   # local APIC spurious interrupt

# Save all general-purpose registers, call exception_dispatch(&mut TrapFrame),
# restore them (the dispatcher may have changed RIP/RSP to resume elsewhere)
# and return from the interrupt. An entry from user mode (RPL 3 in the saved
# CS) swaps GS first and last (asm/user.s).
exception_common:
    test qword ptr [rsp + 24], 3            # the interrupted CS: from user mode?
    jz 2f
    swapgs                                  # GS base = this CPU's PerCpu record
    cmp byte ptr [rip + user_entry_clac], 0
    je 2f
    clac                                    # a user's RFLAGS.AC must not lift SMAP here
2:  push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp                            # &mut TrapFrame
    cld
    call exception_dispatch                 # 15 + 2 + 5 quadwords keep RSP 16-aligned
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16                             # vector and error code
    test qword ptr [rsp + 8], 3             # back to user mode?
    jz 3f
    swapgs                                  # GS base = the user's again
3:  iretq

.section .rodata.exceptions, "a"
.balign 8
.global exception_stub_table
exception_stub_table:
    .quad exception_stub_0, exception_stub_1, exception_stub_2, exception_stub_3
    .quad exception_stub_4, exception_stub_5, exception_stub_6, exception_stub_7
    .quad exception_stub_8, exception_stub_9, exception_stub_10, exception_stub_11
    .quad exception_stub_12, exception_stub_13, exception_stub_14, exception_stub_15
    .quad exception_stub_16, exception_stub_17, exception_stub_18, exception_stub_19
    .quad exception_stub_20, exception_stub_21, exception_stub_22, exception_stub_23
    .quad exception_stub_24, exception_stub_25, exception_stub_26, exception_stub_27
    .quad exception_stub_28, exception_stub_29, exception_stub_30, exception_stub_31
    .quad exception_stub_32

# The local APIC's vectors: the work IPI (240), the shootdown IPI (241) and
# the spurious vector (255).
.global apic_stub_table
apic_stub_table:
    .quad exception_stub_240, exception_stub_241, exception_stub_255

# fault_catch_call(func: extern "C" fn(*mut u8), arg: *mut u8) -> u64
# Calls func(arg) with a recovery point armed. Returns 0 if func returned,
# 1 if a CPU exception interrupted it: the dispatcher then resumes at
# fault_catch_resume, which unwinds to the saved stack pointer. Frames
# between are discarded without running destructors, so the callers keep
# nothing that needs dropping inside func. The recovery point is per CPU:
# the saved stack pointer lives at gs:[8], in the CPU's PerCpu record
# (src/arch/x86_64/smp.rs; 0 = none armed).
.section .text.exceptions, "ax"
.global fault_catch_call
fault_catch_call:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    sub rsp, 8                              # keep RSP 16-aligned at the call
    mov gs:[8], rsp
    mov rax, rdi
    mov rdi, rsi
    call rax
    xor eax, eax
    jmp 1f
.global fault_catch_resume
fault_catch_resume:
    mov rsp, gs:[8]
    mov eax, 1
1:  mov qword ptr gs:[8], 0
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
