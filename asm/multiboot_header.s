# Multiboot2 header: GRUB looks for it in the first 32 KiB of the kernel file.
# linker.ld places this section first in the image.
# Assembled through global_asm! in src/arch/x86_64/boot.rs (Intel syntax).

.section .multiboot_header, "a"
.balign 8
multiboot_header_start:
    .long {MB2_HEADER_MAGIC}                        # magic
    .long 0                                         # architecture: i386, 32-bit protected mode
    .long multiboot_header_end - multiboot_header_start   # header length
    # checksum: magic + architecture + length + checksum == 0 (mod 2^32)
    .long 0x100000000 - ({MB2_HEADER_MAGIC} + (multiboot_header_end - multiboot_header_start))

    # end tag (type 0, flags 0, size 8)
    .balign 8
    .short 0
    .short 0
    .long 8
multiboot_header_end:
