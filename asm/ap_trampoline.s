# Application-processor trampoline: copied to AP_TRAMPOLINE (a page below
# 1 MiB) and entered there by INIT-SIPI-SIPI in real mode with CS = the
# page's segment, IP = 0. Takes the CPU through protected mode into long
# mode on the kernel's page tables and calls the Rust entry
# `ap_entry(cpu_index)` on its own stack. Assembled inside the kernel
# image, executed at AP_TRAMPOLINE: every absolute address is
# AP_TRAMPOLINE + (label - ap_trampoline_start). The boot CPU identity-maps
# the page (present, executable, read-only) while CPUs start, and fills
# the parameters at AP_PARAMS: +0 CR3, +8 stack top, +16 CPU index,
# +24 entry.
#
# The GDT's descriptors have their accessed bits set already: loading a
# segment would otherwise write them, and after paging is on the page is
# read-only.

.section .rodata.ap_trampoline, "a"
.global ap_trampoline_start
.global ap_trampoline_end

.code16
ap_trampoline_start:
    cli
    cld
    mov ax, cs                              # the page's segment
    mov ds, ax
    .byte 0x0F, 0x01, 0x16                  # lgdt [disp16]: the pointer's offset in the page
    .word ap_gdt_pointer - ap_trampoline_start
    mov eax, cr0
    or eax, 1                               # CR0.PE: protected mode
    mov cr0, eax
    .byte 0xEA                              # jmp far 0x08:ap_protected (ptr16:16)
    .word {AP_TRAMPOLINE} + (ap_protected - ap_trampoline_start)
    .word 0x08

.code32
ap_protected:
    mov ax, 0x10                            # flat data segment
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5                          # CR4.PAE
    mov cr4, eax
    mov eax, [{AP_PARAMS}]                  # the kernel's PML4 (below 4 GiB)
    mov cr3, eax
    mov ecx, 0xC0000080                     # IA32_EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)            # LME, NXE (the tables use NX)
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)           # CR0.PG, CR0.WP
    mov cr0, eax
    .byte 0xEA                              # jmp far 0x18:ap_long (ptr16:32)
    .long {AP_TRAMPOLINE} + (ap_long - ap_trampoline_start)
    .word 0x18

.code64
ap_long:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, [{AP_PARAMS} + 8]
    mov rdi, [{AP_PARAMS} + 16]
    mov rax, [{AP_PARAMS} + 24]
    xor ebp, ebp                            # end of the frame-pointer chain
    call rax                                # ap_entry never returns
1:  cli
    hlt
    jmp 1b

.align 8
ap_gdt:
    .quad 0                                 # null
    .quad 0x00CF9B000000FFFF                # 0x08: 32-bit code, accessed
    .quad 0x00CF93000000FFFF                # 0x10: data, accessed
    .quad 0x00AF9B000000FFFF                # 0x18: 64-bit code, accessed
ap_gdt_pointer:
    .word ap_gdt_pointer - ap_gdt - 1
    .long {AP_TRAMPOLINE} + (ap_gdt - ap_trampoline_start)
ap_trampoline_end:
