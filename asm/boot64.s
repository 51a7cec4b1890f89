# 64-bit entry: first instructions in long mode. Loads the data segments,
# then calls the Rust entry `kernel_entry(magic, boot_info_phys, boot_info_copy)`.

.section .text.boot64, "ax"
.code64
long_mode_start:
    mov ax, 0x10                            # data selector of the boot GDT
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax

    mov edi, [rip + boot_magic]             # arg 1: Multiboot2 magic
    mov esi, [rip + boot_info_phys]         # arg 2: where GRUB put the boot info
    lea rdx, [rip + boot_info_copy]         # arg 3: our copy of it
    xor ebp, ebp                            # end of the frame-pointer chain for backtraces
    and rsp, -16
    call kernel_entry
1:  cli                                     # kernel_entry never returns
    hlt
    jmp 1b
