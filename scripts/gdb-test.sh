#!/usr/bin/env bash
# Checks the gdb workflow: QEMU with its gdb stub, gdb in batch mode with
# scripts/gdbinit, a hardware breakpoint in Rust code, a backtrace naming
# Rust functions, then a software breakpoint and a step.
set -uo pipefail

iso=$1
kernel=build/kernel.elf
log=build/test-logs/gdb.log
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
    >"$log" 2>&1

fail() {
    echo "gdb workflow ... FAILED ($1); see $log:"
    sed 's/^/    | /' "$log" | tail -n 20
    exit 1
}
grep -q "Breakpoint 1, incroos::kernel::kernel_entry" "$log" || fail "hardware breakpoint on kernel_entry not hit"
grep -Eq "^#0 +incroos::kernel::kernel_entry .* at src/main.rs:[0-9]+" "$log" || fail "no Rust frame with source line in bt"
grep -Eq "Breakpoint 2, .*incroos::arch::x86_64::init" "$log" || fail "software breakpoint in Rust not hit"
grep -Eq "^#1 +.*incroos::kernel::kernel_entry" "$log" || fail "bt from init does not show its caller"
grep -Eq "^rip +0x[0-9a-f]+" "$log" || fail "could not step and read RIP"
# README: the address form names the function's own file, not a macro's.
grep -Eq "^Breakpoint 3, incroos::shell::session::run .* at src/shell/session.rs:[0-9]+" "$log" ||
    fail "incroos-break incroos::shell::session::run did not stop at its entry in src/shell/session.rs"
grep -Eq "^PMM: +[0-9]+ frames total" "$log" || fail "incroos-meminfo printed no PMM counters"
grep -Eq "^ +node 0: [0-9]+ frames, [0-9]+ free, [0-9]+ free 2 MiB chunks" "$log" \
    || fail "incroos-meminfo printed no per-node counters"
grep -Eq "^heap: +1048576 bytes mapped" "$log" || fail "incroos-meminfo printed no heap counters"
grep -Eq "walk 0x0000000010000000" "$log" || fail "incroos-walk did not run"
grep -Eq "=> physical 0x[0-9a-f]+ \(4 KiB page\)" "$log" || fail "incroos-walk found no 4 KiB page at the heap base"
grep -Eq "=> not mapped" "$log" || fail "incroos-walk did not report an unmapped address"
echo "gdb workflow ... ok"
