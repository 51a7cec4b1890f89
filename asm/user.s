# Entering and leaving user mode (src/user/entry.rs).
#
# A user program runs to completion inside one call of user_enter: the
# kernel stack pointer at the call is saved in the CPU's PerCpu record
# (gs:[16]); every way out of the program (the exit system call, a fault
# that ends it) calls user_exit_resume, which switches back to that stack
# and returns from user_enter. TSS.RSP0 and the syscall stack (gs:[32])
# both point just below the saved registers, so traps from user mode
# build their frames on the same kernel stack without touching them.
#
# GS: in the kernel, GS base is the PerCpu record; in user mode it is the
# user's (0) and the record waits in KERNEL_GS_BASE. Every entry from
# user mode (syscall_entry here, exception_common in exceptions.s when
# the interrupted CS has RPL 3) does swapgs first, every return to user
# mode does swapgs last.

.section .data.user_entry, "aw"
# 1 when SMAP is on (set by src/user/entry.rs): entries from user mode then
# clear RFLAGS.AC (exceptions.s; syscall clears it through SFMASK).
.global user_entry_clac
user_entry_clac:
    .byte 0

.section .text.user_entry, "ax"
.code64

# user_enter(entry: u64, user_rsp: u64, arg0: u64, arg1: u64, arg2: u64) -> u64
# Returns the status word user_exit_resume was given.
.global user_enter
user_enter:
    pushfq
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov gs:[16], rsp                        # where user_exit_resume returns
    mov rax, rsp
    and rax, -16
    mov gs:[32], rax                        # syscall entry stack top
    push rdi
    push rsi
    push rdx
    push rcx
    push r8
    sub rsp, 8                              # RSP 16-aligned at the call
    mov rdi, rax
    call user_set_kernel_stack              # TSS.RSP0 = the same top
    add rsp, 8
    pop r8
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    # The frame iretq pops: SS, RSP, RFLAGS (IF on, IOPL 0), CS, RIP.
    push {USER_DS}
    push rsi
    push 0x202
    push {USER_CS}
    push rdi
    mov rdi, rdx                            # the program's three arguments
    mov rsi, rcx
    mov rdx, r8
    # Nothing of the kernel's registers reaches user mode.
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    swapgs
    iretq

# user_exit_resume(status: u64) -> !
# Called in the kernel (GS base = PerCpu, interrupts off) by the exit
# system call or the fault handler: abandons the frames below the saved
# stack pointer and returns `status` from user_enter.
.global user_exit_resume
user_exit_resume:
    mov rax, rdi
    mov rsp, gs:[16]
    mov qword ptr gs:[16], 0
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    popfq                                   # the caller's interrupt flag
    ret

# The syscall instruction lands here (LSTAR) with interrupts off (SFMASK),
# RCX = user RIP, R11 = user RFLAGS, RSP still the user's. Arguments:
# RAX = number, RDI, RSI, RDX, R10 (the C ABI's fourth register is RCX,
# which syscall overwrites). The result goes back in RAX; every other
# register but RCX and R11 is preserved.
.global syscall_entry
syscall_entry:
    swapgs
    mov gs:[24], rsp
    mov rsp, gs:[32]
    push qword ptr gs:[24]                  # user RSP
    push rcx                                # user RIP
    push r11                                # user RFLAGS
    push r9
    push r8
    push r10
    push rdx
    push rsi
    push rdi
    push rax                                # number; the result on return
    mov rdi, rsp                            # &mut SyscallFrame
    call syscall_dispatch                   # 10 quadwords: RSP stays 16-aligned
    pop rax
    pop rdi
    pop rsi
    pop rdx
    pop r10
    pop r8
    pop r9
    pop r11
    pop rcx
    pop rsp                                 # user RSP
    swapgs
    sysretq
