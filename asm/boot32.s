# 32-bit entry: GRUB jumps here in protected mode with paging off,
# EAX = Multiboot2 magic, EBX = physical address of the boot information.
#
# Checklist, in order; each failure prints which check failed and halts:
#   1. Multiboot2 magic            2. CPUID present
#   3. long mode supported         4. NX (no-execute) supported
#   5. boot information fits our copy buffer
# then: copy the boot information into the kernel image (GRUB may put it
# anywhere below 4 GiB, and we only identity-map the low 4 MiB), build the
# first page tables at the design's fixed addresses, enable PAE, EFER.LME,
# EFER.NXE, paging and CR0.WP, load a 64-bit GDT and jump to long mode.

.section .text.boot32, "ax"
.code32
.global _start
_start:
    cli
    cld
    mov esp, offset boot_stack_top          # stack in .bss, guard page below
    mov [boot_magic], eax                   # keep magic and boot-info pointer
    mov [boot_info_phys], ebx

    call check_multiboot
    call check_cpuid
    call check_long_mode
    call copy_boot_info
    call build_page_tables
    call enable_long_mode

    lgdt [gdt64_pointer]
    mov eax, 0x08                           # 64-bit code selector
    push eax
    mov eax, offset long_mode_start
    push eax
    retf                                    # far return = far jump to 64-bit code

# --- checks ------------------------------------------------------------------

check_multiboot:
    cmp dword ptr [boot_magic], {MB2_BOOTLOADER_MAGIC}
    jne 1f
    ret
1:  mov esi, offset msg_magic
    jmp boot_fail

check_cpuid:
    # CPUID exists if bit 21 (ID) of EFLAGS can be flipped.
    pushfd
    pop eax
    mov ecx, eax
    xor eax, 1 << 21
    push eax
    popfd
    pushfd
    pop eax
    push ecx                                # restore the original EFLAGS
    popfd
    cmp eax, ecx
    je 1f
    ret
1:  mov esi, offset msg_cpuid
    jmp boot_fail

check_long_mode:
    mov eax, 0x80000000                     # highest extended function
    cpuid
    cmp eax, 0x80000001
    jb 1f
    mov eax, 0x80000001                     # extended feature bits
    cpuid
    test edx, 1 << 29                       # LM: long mode
    jz 1f
    test edx, 1 << 20                       # NX: no-execute bit in page tables
    jz 2f
    ret
1:  mov esi, offset msg_long_mode
    jmp boot_fail
2:  mov esi, offset msg_nx
    jmp boot_fail

# --- boot information --------------------------------------------------------

copy_boot_info:
    mov esi, [boot_info_phys]
    test esi, 7                             # the spec promises 8-byte alignment
    jnz 1f
    test esi, esi
    jz 1f
    mov ecx, [esi]                          # total_size, first field of the header
    cmp ecx, 16                             # header + end tag at least
    jb 1f
    cmp ecx, {BOOT_INFO_MAX}
    ja 2f
    mov edi, offset boot_info_copy
    rep movsb
    ret
1:  mov esi, offset msg_boot_info
    jmp boot_fail
2:  mov esi, offset msg_boot_info_size
    jmp boot_fail

# --- page tables -------------------------------------------------------------

build_page_tables:
    # Zero PML4, PDPT, PD and the two PTs (five pages from BOOT_PML4).
    mov edi, {BOOT_PML4}
    xor eax, eax
    mov ecx, 5 * 4096 / 4
    rep stosd

    # PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> PT, PD[1] -> PT2 (present +
    # writable).
    mov dword ptr [{BOOT_PML4}], {BOOT_PDPT} | 3
    mov dword ptr [{BOOT_PDPT}], {BOOT_PD} | 3
    mov dword ptr [{BOOT_PD}], {BOOT_PT} | 3
    mov dword ptr [{BOOT_PD} + 8], {BOOT_PT2} | 3

    # PT2 follows PT, so together they are one array of 1024 entries:
    # entry i = i * 4 KiB | present | writable, for i = 1..1023.
    # Entry 0 stays zero: page 0 is unmapped so a null dereference faults.
    mov ecx, 1
1:  mov eax, ecx
    shl eax, 12
    or eax, 3
    mov [{BOOT_PT} + ecx * 8], eax
    inc ecx
    cmp ecx, 1024
    jb 1b

    # Unmap the guard pages below the three kernel stacks.
    mov eax, offset boot_stack_guard
    shr eax, 12
    mov dword ptr [{BOOT_PT} + eax * 8], 0
    mov eax, offset double_fault_stack_guard
    shr eax, 12
    mov dword ptr [{BOOT_PT} + eax * 8], 0
    mov eax, offset nmi_stack_guard
    shr eax, 12
    mov dword ptr [{BOOT_PT} + eax * 8], 0
    ret

enable_long_mode:
    mov eax, {BOOT_PML4}
    mov cr3, eax

    mov eax, cr4
    or eax, 1 << 5                          # PAE
    mov cr4, eax

    mov ecx, 0xC0000080                     # IA32_EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)            # LME (long mode) | NXE (no-execute)
    wrmsr

    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)           # PG (paging) | WP (write-protect in ring 0)
    mov cr0, eax
    ret

# --- failure path ------------------------------------------------------------

# boot_fail: print "IncroOS boot failed: <ESI string>" on the VGA text screen
# (white on red, top line) and on COM1, then halt forever.
boot_fail:
    mov ebx, esi
    call serial_init_32
    mov esi, offset msg_prefix
    mov edi, 0xB8000
    call print_32
    mov esi, ebx
    call print_32
1:  cli
    hlt
    jmp 1b

# print_32: ESI = zero-terminated string, EDI = VGA cell pointer (advanced).
print_32:
1:  mov al, [esi]
    test al, al
    jz 3f
    mov ah, 0x4F                            # white on red
    mov [edi], ax
    add edi, 2
    mov dx, 0x3F8 + 5                       # COM1 line status
2:  in al, dx
    test al, 0x20                           # transmitter holding register empty
    jz 2b
    mov al, [esi]
    mov dx, 0x3F8
    out dx, al
    inc esi
    jmp 1b
3:  ret

# serial_init_32: COM1 at 115200 8N1, FIFO on, no interrupts.
serial_init_32:
    mov dx, 0x3F8 + 1
    xor al, al
    out dx, al                              # IER = 0
    mov dx, 0x3F8 + 3
    mov al, 0x80
    out dx, al                              # LCR: DLAB on
    mov dx, 0x3F8
    mov al, 1
    out dx, al                              # divisor low = 1 (115200 baud)
    mov dx, 0x3F8 + 1
    xor al, al
    out dx, al                              # divisor high = 0
    mov dx, 0x3F8 + 3
    mov al, 0x03
    out dx, al                              # LCR: 8N1, DLAB off
    mov dx, 0x3F8 + 2
    mov al, 0xC7
    out dx, al                              # FCR: enable and clear FIFOs
    mov dx, 0x3F8 + 4
    mov al, 0x03
    out dx, al                              # MCR: DTR | RTS
    ret

# --- data --------------------------------------------------------------------

.section .rodata.boot32, "a"
msg_prefix:         .asciz "IncroOS boot failed: "
msg_magic:          .asciz "not started by a Multiboot2 bootloader (bad magic in EAX)\r\n"
msg_cpuid:          .asciz "CPU has no CPUID instruction\r\n"
msg_long_mode:      .asciz "CPU does not support long mode (x86-64)\r\n"
msg_nx:             .asciz "CPU does not support the NX (no-execute) bit\r\n"
msg_boot_info:      .asciz "boot information pointer is null, misaligned or truncated\r\n"
msg_boot_info_size: .asciz "boot information larger than the kernel's copy buffer\r\n"

.balign 8
gdt64:
    .quad 0                                 # null descriptor
    .quad 0x00AF9A000000FFFF                # 0x08: 64-bit code, ring 0
    .quad 0x00CF92000000FFFF                # 0x10: data, ring 0
gdt64_end:
gdt64_pointer:
    .short gdt64_end - gdt64 - 1
    .long gdt64

.section .data.boot32, "aw"
.balign 4
.global boot_magic
boot_magic:         .long 0
.global boot_info_phys
boot_info_phys:     .long 0

.section .bss.boot, "aw", @nobits
.balign 8
.global boot_info_copy
boot_info_copy:     .skip {BOOT_INFO_MAX}

# Stacks: each has an unmapped guard page below it, so overflowing it
# page-faults (and then double-faults onto the IST stack) instead of
# silently running into other data.
.balign 4096
.global boot_stack_guard
boot_stack_guard:   .skip 4096
.global boot_stack_bottom
boot_stack_bottom:  .skip {BOOT_STACK_SIZE}
.global boot_stack_top
boot_stack_top:
.global double_fault_stack_guard
double_fault_stack_guard: .skip 4096
.global double_fault_stack_bottom
double_fault_stack_bottom: .skip {DOUBLE_FAULT_STACK_SIZE}
.global double_fault_stack_top
double_fault_stack_top:
.global nmi_stack_guard
nmi_stack_guard:    .skip 4096
.global nmi_stack_bottom
nmi_stack_bottom:   .skip {NMI_STACK_SIZE}
.global nmi_stack_top
nmi_stack_top:
