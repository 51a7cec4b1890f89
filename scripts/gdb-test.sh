#!/usr/bin/env bash
# Checks the gdb workflow: QEMU with its gdb stub, gdb in batch mode with
# scripts/gdbinit, a hardware breakpoint in Rust code, a backtrace naming
# Rust functions, then a software breakpoint and a step, and the helpers.
# A second session boots SUITE_ISO (the in-kernel suite, whose first user
# program makes a system call) to walk a user address space.
#
#   gdb-test.sh ISO SUITE_ISO
set -uo pipefail

iso=$1 suite_iso=$2
kernel=build/kernel.elf
log=build/test-logs/gdb.log
user_log=build/test-logs/gdb-user.log
mkdir -p build/test-logs
port=$((20000 + RANDOM % 20000))

scripts/qemu.sh "$iso" bios 128M \
    -display none -monitor none -serial null -gdb "tcp::$port" -S 2>/dev/null &
qemu=$!
trap 'kill $qemu 2>/dev/null; wait $qemu 2>/dev/null' EXIT
sleep 0.5

timeout 60 gdb -q -batch -nx "$kernel" \
    -ex "set pagination off" \
    -ex "set architecture i386:x86-64" \
    -ex "target remote localhost:$port" \
    -ex "hbreak kernel_entry" \
    -ex "continue" \
    -ex "bt" \
    -ex "break incroos::arch::x86_64::init" \
    -ex "continue" \
    -ex "bt" \
    -ex "next" \
    -ex "info registers rip" \
    -ex "delete" \
    -ex "source scripts/incroos-gdb.py" \
    -ex "incroos-break incroos::shell::session::run" \
    -ex "continue" \
    -ex "incroos-meminfo" \
    -ex "incroos-walk 0x10000000" \
    -ex "incroos-walk 0xdead0000" \
    -ex 'incroos-walk 0x10000000 $cr3' \
    -ex 'incroos-walk 0x10000000 $incroos_pml4(0)' \
    -ex "incroos-spaces" \
    >"$log" 2>&1
kill $qemu 2>/dev/null
wait $qemu 2>/dev/null

fail() {
    echo "gdb workflow ... FAILED ($1); see $2:"
    sed 's/^/    | /' "$2" | tail -n 20
    exit 1
}
grep -q "Breakpoint 1, incroos::kernel::kernel_entry" "$log" || fail "hardware breakpoint on kernel_entry not hit" "$log"
grep -Eq "^#0 +incroos::kernel::kernel_entry .* at src/main.rs:[0-9]+" "$log" || fail "no Rust frame with source line in bt" "$log"
grep -Eq "Breakpoint 2, .*incroos::arch::x86_64::init" "$log" || fail "software breakpoint in Rust not hit" "$log"
grep -Eq "^#1 +.*incroos::kernel::kernel_entry" "$log" || fail "bt from init does not show its caller" "$log"
grep -Eq "^rip +0x[0-9a-f]+" "$log" || fail "could not step and read RIP" "$log"
# README: the address form names the function's own file, not a macro's.
grep -Eq "^Breakpoint 3, incroos::shell::session::run .* at src/shell/session.rs:[0-9]+" "$log" ||
    fail "incroos-break incroos::shell::session::run did not stop at its entry in src/shell/session.rs" "$log"
grep -Eq "^PMM: +[0-9]+ frames total" "$log" || fail "incroos-meminfo printed no PMM counters" "$log"
grep -Eq "^ +node 0: [0-9]+ frames, [0-9]+ free, [0-9]+ free 2 MiB chunks" "$log" \
    || fail "incroos-meminfo printed no per-node counters" "$log"
grep -Eq "^heap: +1048576 bytes mapped" "$log" || fail "incroos-meminfo printed no heap counters" "$log"
grep -Eq "walk 0x0000000010000000" "$log" || fail "incroos-walk did not run" "$log"
grep -Eq "=> physical 0x[0-9a-f]+ \(4 KiB page\)" "$log" || fail "incroos-walk found no 4 KiB page at the heap base" "$log"
grep -Eq "=> not mapped" "$log" || fail "incroos-walk did not report an unmapped address" "$log"
# The three walks of 0x10000000 (the kernel's PML4 implied, then given as
# $cr3 and as $incroos_pml4(0), CPU 0 being in the kernel) agree.
[[ $(grep -c "^walk 0x0000000010000000 (PML4 at 0x[0-9a-f]*, given," "$log") == 2 ]] ||
    fail "incroos-walk did not take a PML4 argument twice" "$log"
[[ $(grep -A5 "^walk 0x0000000010000000" "$log" | grep "=> physical" | sort -u | wc -l) == 1 ]] ||
    fail "incroos-walk found other pages from the kernel's PML4 given explicitly" "$log"
kernel_pml4=$(sed -n 's/^kernel: PML4 at \(0x[0-9a-f]*\)$/\1/p' "$log")
[[ -n $kernel_pml4 ]] || fail "incroos-spaces printed no kernel PML4" "$log"
grep -q "^CPU 0: the kernel's own tables$" "$log" || fail "incroos-spaces: CPU 0 not on the kernel's tables" "$log"
grep -q "^CR3 of the selected CPU: $kernel_pml4$" "$log" || fail "incroos-spaces: CR3 is not the kernel's PML4" "$log"

# A user program's space: stopped in its first system call, CPU 0 runs on
# it (CR3), its code is a 4 KiB user page there and nothing in the kernel's.
port=$((20000 + RANDOM % 20000))
scripts/qemu.sh "$suite_iso" bios 128M \
    -display none -monitor none -serial null -gdb "tcp::$port" -S 2>/dev/null &
qemu=$!
sleep 0.5
timeout 240 gdb -q -batch -nx "$kernel" \
    -ex "set pagination off" \
    -ex "set architecture i386:x86-64" \
    -ex "target remote localhost:$port" \
    -ex "source scripts/incroos-gdb.py" \
    -ex "hbreak kernel_entry" \
    -ex "continue" \
    -ex "delete" \
    -ex "break syscall_dispatch" \
    -ex "continue" \
    -ex "incroos-spaces" \
    -ex 'incroos-walk 0x8000400000 $incroos_pml4(0)' \
    -ex 'incroos-walk 0x8000400000 $cr3' \
    -ex "incroos-walk 0x8000400000" \
    >"$user_log" 2>&1
grep -Eq "^Breakpoint 2, (0x[0-9a-f]+ in )?(incroos::user::syscall::)?syscall_dispatch " "$user_log" ||
    fail "no stop in syscall_dispatch (no user program's system call)" "$user_log"
user_pml4=$(sed -n 's/^CPU 0: user space at 0x[0-9a-f]*, PML4 at \(0x[0-9a-f]*\)$/\1/p' "$user_log")
[[ -n $user_pml4 ]] || fail "incroos-spaces: CPU 0 has no user space loaded in a system call" "$user_log"
grep -q "^CR3 of the selected CPU: $user_pml4$" "$user_log" ||
    fail "incroos-spaces: CR3 is not the user space's PML4 ($user_pml4)" "$user_log"
[[ $(grep -c "^walk 0x0000008000400000 (PML4 at $user_pml4, given," "$user_log") == 2 ]] ||
    fail "incroos-walk did not start from the user PML4 given as \$incroos_pml4(0) and \$cr3" "$user_log"
[[ $(grep -Ec "^  PT  \[  0\] = 0x[0-9a-f]+  P U( A)?$" "$user_log") == 2 ]] ||
    fail "the probe's code is not a user, read-only, executable 4 KiB page" "$user_log"
[[ $(grep -c "=> physical 0x[0-9a-f]* (4 KiB page)" "$user_log") == 2 ]] ||
    fail "incroos-walk found no 4 KiB page for the probe's code" "$user_log"
grep -A2 "^walk 0x0000008000400000 (PML4 at 0x[0-9a-f]*, the kernel's," "$user_log" | grep -q "=> not mapped" ||
    fail "the probe's code is mapped in the kernel's PML4" "$user_log"
echo "gdb workflow ... ok"
