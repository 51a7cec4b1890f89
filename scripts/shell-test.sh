#!/usr/bin/env bash
# Drives the memory debug shell through the serial port, the way
# `printf '...' | make run` does, and checks every command's answer,
# including the error lines for bad input, and that the kernel keeps
# answering and powers off on `shutdown`.
set -uo pipefail

iso=$1 firmware=${2:-bios}
log=build/test-logs/shell-$firmware.log
mkdir -p build/test-logs

timeout 300 scripts/run.sh "$iso" "$firmware" 256M >"$log" 2>&1 <<'COMMANDS'
help
meminfo
mmap
walk 0x10000000
walk 0x0000800000000000
maps
maps 0x100000 0x200000
alloc 4096
free 0x1234
alloc 99999999999
frames 100
frames 0
walk zz
bogus
alloc 1                                                                                                                                999
test
test
bench
meminfo
alloc 15M
test heap::
bench
meminfo
shutdown
COMMANDS
status=$?

expect=(
    'meminfo +PMM, VMM and heap statistics'
    '^PMM: +[0-9]+ frames total'
    'verify: ok'
    '^memory map \([0-9]+ entries'
    '=> physical 0x[0-9a-f]+'
    'not canonical'
    '^[0-9]+ runs'
    'kmalloc\(4096\) = 0x10'
    'kfree\(0x1234\) failed: pointer was never allocated'
    'kmalloc\(99999999999\) failed: heap exhausted'
    'allocated 100 frames'
    'freed them again: ([0-9]+) free before, \1 after$'
    'usage: frames <n>'
    'usage: walk <vaddr>'
    'unknown command "bogus"'
    'line too long: 138 characters, at most 128; nothing was run'
    '^ktest: [0-9]+ passed, 0 failed'
    'PMM alloc\+free frame +[0-9]+'
    'kmalloc\+kfree 64 B +[0-9]+'
    'kmalloc\(15728640\) = 0x10'
    'out of memory: not enough heap for this test'
    'shutting down'
)
why=""
[[ $status == 0 ]] || why="run.sh exited $status"
# Read once: `tr | grep -q` under pipefail fails at random (SIGPIPE to tr
# when grep exits at its match).
text=$(tr -d '\r' <"$log")
for pattern in "${expect[@]}"; do
    [[ -n $why ]] && break
    grep -Eq -- "$pattern" <<<"$text" || why="no line matching /$pattern/"
done
# The over-long line must not have run in part.
if [[ -z $why ]] && grep -Eq 'kmalloc\(1\) =' <<<"$text"; then
    why="the start of an over-long line was run"
fi
# The whole suite twice: every test leaves the machine as it found it.
if [[ -z $why && $(grep -Ec '^ktest: [0-9]+ passed, 0 failed' <<<"$text") -ne 2 ]]; then
    why="the suite did not pass twice in a row from the shell"
fi
if [[ $(grep -c '^incroos> ' <<<"$text") -lt 24 ]]; then
    why=${why:-"the shell stopped answering before the last command"}
fi
if [[ -z $why ]]; then
    echo "shell ($firmware) ... ok"
    exit 0
fi
echo "shell ($firmware) ... FAILED ($why); last lines of $log:"
tr -d '\r' <"$log" | tail -n 30 | sed 's/^/    | /'
exit 1
