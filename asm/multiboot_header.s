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

    # framebuffer tag (type 5): optional (flags bit 0), no preferred size or
    # depth. Under UEFI GRUB hands over the firmware's framebuffer. With
    # this tag GRUB's `multiboot2` would pick a graphics mode on BIOS too
    # (it sets gfxpayload=auto); grub.cfg sets gfxpayload=text after it,
    # so BIOS boots keep VGA text mode.
    .balign 8
    .short 5
    .short 1
    .long 20
    .long 0                                         # width: no preference
    .long 0                                         # height: no preference
    .long 0                                         # depth: no preference

    # end tag (type 0, flags 0, size 8)
    .balign 8
    .short 0
    .short 0
    .long 8
multiboot_header_end:
