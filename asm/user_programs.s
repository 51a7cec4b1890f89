# User test programs, as images in the format of src/user/image.rs. The
# kernel copies them into fresh address spaces (src/user/programs.rs);
# here they are only bytes in .rodata, never executed in place. The code
# is position-independent: it reaches its own bytes RIP-relative, and
# everything else through addresses the kernel passes.
#
# System calls (src/user/syscall.rs): RAX = number, arguments in RDI,
# RSI, RDX; result in RAX (negative: an error).
#   0 exit(code)  1 write(buffer, length)  2 map(address, length, rights)
#   3 unmap(address, length)  4 protect(address, length, rights)
# Rights: 1 read, 2 write, 4 execute.

.section .rodata.user_programs, "a"
.balign 16

# The probe: one program, many behaviours. RDI = command, RSI and RDX its
# arguments; it exits with a result, or faults on purpose.
#    0 exit(RSI)
#    1 write "hello from user mode\n"; exit(bytes written)
#    2 map RDX bytes at RSI, read every page (must be 0), write its
#      offset, check every page again; exit(pages), or -100 if a page
#      was not zero, -101 if one lost its value
#    3 exit(the quadword at RSI)
#    4 store RDX at RSI; exit(0)
#    5 call RSI; exit(0)
#    6 write into its own code; exit(0)
#    7 write(RSI, RDX); exit(the result)
#    8 spin RSI times; exit(0)
#    9 map a page at RSI, store 1, make it read-only, read it back, store
#      again (faults); exit(-102) if the store went through
#   10 sgdt (refused under UMIP); exit(0)
#   11 system call number RSI without arguments; exit(the result)
#   12 map RDX bytes at RSI, touch the first page, unmap, read it again
#      (faults); exit(-103) if the read went through
.global user_probe_image
.global user_probe_image_end
user_probe_image:
    .ascii "INCRUSR1"
    .long probe_entry - probe_code
    .long probe_code_end - probe_code
    .long 0                                 # data
    .long 4096                              # bss
    .long 65536                             # stack
    .long 0

probe_code:
probe_entry:
    cmp rdi, 0
    je probe_exit_arg
    cmp rdi, 1
    je probe_hello
    cmp rdi, 2
    je probe_touch
    cmp rdi, 3
    je probe_read
    cmp rdi, 4
    je probe_store
    cmp rdi, 5
    je probe_call
    cmp rdi, 6
    je probe_write_code
    cmp rdi, 7
    je probe_write_syscall
    cmp rdi, 8
    je probe_spin
    cmp rdi, 9
    je probe_protect
    cmp rdi, 10
    je probe_sgdt
    cmp rdi, 11
    je probe_raw_syscall
    cmp rdi, 12
    je probe_unmap
    mov rdi, -1
    jmp probe_exit

probe_exit_arg:
    mov rdi, rsi
probe_exit:
    xor eax, eax
    syscall
    ud2                                     # exit does not return

probe_hello:
    lea rdi, [rip + probe_message]
    lea rsi, [rip + probe_message_end]
    sub rsi, rdi
    mov eax, 1
    syscall
    mov rdi, rax
    jmp probe_exit

probe_touch:
    mov r12, rsi                            # base
    mov r13, rdx                            # bytes
    mov rdi, rsi
    mov rsi, rdx
    mov edx, 3                              # read + write
    mov eax, 2
    syscall
    test rax, rax
    jnz probe_exit_rax
    xor r14d, r14d
5:  cmp r14, r13
    jae 6f
    mov rax, [r12 + r14]
    test rax, rax
    jnz probe_not_zero
    mov [r12 + r14], r14
    add r14, 4096
    jmp 5b
6:  xor r14d, r14d
7:  cmp r14, r13
    jae 8f
    cmp [r12 + r14], r14
    jne probe_lost
    add r14, 4096
    jmp 7b
8:  mov rdi, r13
    shr rdi, 12
    jmp probe_exit
probe_not_zero:
    mov rdi, -100
    jmp probe_exit
probe_lost:
    mov rdi, -101
    jmp probe_exit
probe_exit_rax:
    mov rdi, rax
    jmp probe_exit

probe_read:
    mov rdi, [rsi]
    jmp probe_exit

probe_store:
    mov [rsi], rdx
    xor edi, edi
    jmp probe_exit

probe_call:
    call rsi
    xor edi, edi
    jmp probe_exit

probe_write_code:
    lea rax, [rip + probe_code]
    mov byte ptr [rax], 0x90
    xor edi, edi
    jmp probe_exit

probe_write_syscall:
    mov rdi, rsi
    mov rsi, rdx
    mov eax, 1
    syscall
    mov rdi, rax
    jmp probe_exit

probe_spin:
    test rsi, rsi
    jz 9f
    pause
    dec rsi
    jmp probe_spin
9:  xor edi, edi
    jmp probe_exit

probe_protect:
    mov r12, rsi
    mov rdi, rsi
    mov esi, 4096
    mov edx, 3
    mov eax, 2
    syscall
    test rax, rax
    jnz probe_exit_rax
    mov qword ptr [r12], 1
    mov rdi, r12
    mov esi, 4096
    mov edx, 1                              # read only
    mov eax, 4
    syscall
    test rax, rax
    jnz probe_exit_rax
    cmp qword ptr [r12], 1
    jne probe_lost
    mov qword ptr [r12], 2                  # faults
    mov rdi, -102
    jmp probe_exit

probe_sgdt:
    sgdt [rsp - 16]
    xor edi, edi
    jmp probe_exit

probe_raw_syscall:
    mov rax, rsi
    xor edi, edi
    xor esi, esi
    xor edx, edx
    syscall
    mov rdi, rax
    jmp probe_exit

probe_unmap:
    mov r12, rsi
    mov r13, rdx
    mov rdi, rsi
    mov rsi, rdx
    mov edx, 3
    mov eax, 2
    syscall
    test rax, rax
    jnz probe_exit_rax
    mov qword ptr [r12], 7
    mov rdi, r12
    mov rsi, r13
    mov eax, 3
    syscall
    test rax, rax
    jnz probe_exit_rax
    mov rax, [r12]                          # faults
    mov rdi, -103
    jmp probe_exit

probe_message:
    .ascii "hello from user mode\n"
probe_message_end:
probe_code_end:
user_probe_image_end:
