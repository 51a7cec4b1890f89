# The copy between kernel and user memory behind copy_from_user and
# copy_to_user (src/arch/x86_64/usercopy.rs), and its fixup table.
#
# The Rust side has already checked that the user range lies inside the
# user half, so the only faults the copy can take are a page fault on a
# user page (not mapped, or not permitted) or, in theory, a #GP. Such a
# fault does not end the kernel: the exception dispatcher finds the
# faulting RIP in usercopy_fixup_table and resumes at the entry's fixup
# label, with every register as it was at the fault.

.section .text.usercopy, "ax"
.code64

# usercopy_copy(dst: *mut u8, src: *const u8, len: usize, smap: u64) -> usize
# Copies len bytes forward with rep movsb. With smap != 0 the copy runs
# between stac and clac (both are #UD on a CPU without SMAP, so the caller
# passes 0 there). Returns how many bytes were not copied: 0, or after a
# fault the count left in RCX. A fault in rep movsb is precise: RSI and
# RDI point at the byte that faulted, RCX counts it and the bytes after,
# every byte before it has been copied and none after it (SDM vol. 2,
# REP; vol. 3, "Fast-String Operation and Out-of-Order Stores").
.global usercopy_copy
usercopy_copy:
    mov r8, rcx                             # r8: SMAP on; survives a fault (TrapFrame)
    mov rcx, rdx                            # rcx: count for rep movsb
    test r8, r8
    jz 1f
    stac                                    # RFLAGS.AC = 1: user pages reachable
1:
.global usercopy_copy_instruction
usercopy_copy_instruction:
    rep movsb                               # the only instruction that touches user memory
# Reached directly (RCX = 0) or through the fixup table (RCX = bytes left).
.global usercopy_copy_fixup
usercopy_copy_fixup:
    mov rax, rcx                            # bytes not copied
    test r8, r8
    jz 2f
    clac                                    # RFLAGS.AC = 0: SMAP guards again
2:  ret

# Pairs of (instruction that may fault on a user address, where to resume).
.section .rodata.usercopy, "a"
.balign 8
.global usercopy_fixup_table
usercopy_fixup_table:
    .quad usercopy_copy_instruction, usercopy_copy_fixup
.global usercopy_fixup_table_end
usercopy_fixup_table_end:
