#!/usr/bin/env bash
# Drives the memory debug shell through the serial port, the way
# `printf '...' | make run` does, and checks every command's answer,
# including the error lines for bad input, line editing with a terminal's
# keys (arrows, Home/End, Delete, history, Ctrl-U/C/W/K), that each error
# is printed once (by the shell; no log line repeats it, and no WARN or
# ERROR line appears but the suite's own `[expected ...]` ones), that the
# kernel keeps answering and powers off on `shutdown`; user programs
# (`run`) exit with their codes, a bad access ends one and the shell goes
# on, and none leaves an address space behind; then, in a second boot,
# that `reboot` ends QEMU (started with -no-reboot) as its help says.
set -uo pipefail

iso=$1 firmware=${2:-bios}
log=build/test-logs/shell-$firmware.log
mkdir -p build/test-logs

# Line editing over serial, as a VT100 terminal sends it. Each line runs
# `free` on an address of its own, so its answer shows what the editor
# made of the keys (the address is never allocated: `free` reports it).
esc=$'\e' up=$'\e[A' down=$'\e[B' right=$'\e[C' left=$'\e[D'
del=$'\x7f' bs=$'\x08' ctrl_c=$'\x03' ctrl_k=$'\x0b' ctrl_u=$'\x15' ctrl_w=$'\x17'
edits=(
    # Home, Right three times, insert: "free 0x4321".
    "fre 0x4321${esc}[H${right}${right}${right}e"
    # Left twice, Delete the X, End, 7, DEL (Backspace), 78: "free 0x5678".
    "free 0x5X6${left}${left}${esc}[3~${esc}[F7${del}78"
    # Up: "free 0x5678" again (one history entry for both); Up Up: "free 0x4321".
    "${up}"
    "${up}${up}"
    # Up and Down keep the line being typed: "free 0x9abc".
    "fr${up}${up}${down}${down}ee 0x9abc"
    # Ctrl-U erases what came before: "free 0xdef" alone.
    "bogus1${ctrl_u}free 0xdef"
    # Ctrl-C drops the line: nothing runs, "^C" and a fresh prompt.
    "free 0xbad${ctrl_c}"
    # BS, Home and End in their other spellings: "free 0x111".
    "ree 0x1X${bs}${esc}OHf${esc}OF1${esc}[1~${esc}[4~1"
    # Ctrl-W erases a word, Ctrl-K the rest of the line: "free 0x22".
    "free 0x22 junk${ctrl_w}${bs}zzz${left}${left}${left}${ctrl_k}"
)

commands=(
    help
    meminfo
    slabinfo
    mmap
    'walk 0x10000000'
    'walk 0x0000800000000000'
    maps
    'maps 0x100000 0x200000'
    'alloc 4096'
    'free 0x1234'
    'frames 1'
    'alloc 99999999999'
    'frames 100'
    'frames 0'
    'walk zz'
    bogus
    "alloc 1$(printf '%128s' '')999"
    # User programs on a fresh boot, before the suite has run any.
    'run hello'
    'run read 0x100000'
    'run touch 1M'
    'run bogus'
    meminfo
    test
    test
    slabinfo
    bench
    meminfo
    slabinfo
    'alloc 15M'
    'test heap::'
    bench
    meminfo
    physmap
    cpus
    "${edits[@]}"
    shutdown
)

printf '%s\n' "${commands[@]}" | timeout 300 scripts/run.sh "$iso" "$firmware" 256M >"$log" 2>&1
status=$?

expect=(
    'meminfo +PMM, VMM, heap and object-cache statistics'
    'slabinfo +every object cache: object size, objects in use/total, slabs, pages'
    'reboot +reset the machine; QEMU started with -no-reboot \(make run, cargo run\) exits instead'
    '^PMM: +[0-9]+ frames total \([0-9.]+ MiB\), [0-9]+ free \([0-9.]+ MiB\), [0-9]+ used \([0-9.]+ [KM]iB\), [0-9]+ reserved \([0-9.]+ KiB\)$'
    '^      largest free run [0-9]+ frames \([0-9.]+ MiB\)$'
    '^VMM: +PML4 at 0x[0-9a-f]+, [0-9]+ page tables \([0-9.]+ [KM]iB\)$'
    '^heap: 1 MiB \(1048576 B\) mapped, [0-9]+ B used, [0-9.]+ KiB \([0-9]+ B\) free, peak [0-9.]+ KiB \([0-9]+ B\); [0-9]+ live'
    'verify: ok'
    '^      magazines: [0-9]+ requests and frees, [0-9]+ took the heap lock \(hit rate [0-9]+%\), [0-9]+ slots cached; [0-9]+ reclaims gave back [0-9]+ pages$'
    '^slab: 0 caches, 0 of 0 objects in use \(0 B\), 0 in magazines, 0 slabs in 0 pages \(0 B\)$'
    '^cache +size +align +in use/total +cached +slabs +slab +pages +allocs +frees +hit +fail +bad$'
    '^0 caches \(of 32\): 0 of 0 objects in use, 0 slabs, 0 pages \(0 B\)$'
    '^ktest-record +40 +8 +0/0 +0 +0 +4K +0 +[1-9][0-9]* +[1-9][0-9]* +[0-9]+% +0 +0$'
    '^ktest-stamp +64 +8 +0/0 +0 +0 +4K +0 +[1-9][0-9]* +[1-9][0-9]* +[0-9]+% +0 +0$'
    # 5,000 pairs: the first allocation refills the magazine under the
    # lock (a batch of 16), the other 9,999 calls need no lock.
    '^bench-64 +64 +8 +0/63 +17 +1 +4K +1 +5000 +5000 +99% +0 +0$'
    '^slab: 3 caches, 0 of 63 objects in use \(0 B\), 17 in magazines, 1 slab in 1 page \(4 KiB\)$'
    '^2 caches \(of 32\): 0 of 0 objects in use, 0 slabs, 0 pages \(0 B\)$'
    '^3 caches \(of 32\): 0 of 63 objects in use, 1 slab, 1 page \(4 KiB\)$'
    '^memory map \([0-9]+ entries'
    '=> physical 0x[0-9a-f]+'
    'not canonical'
    '^[0-9]+ runs'
    'kmalloc\(4096\) = 0x10'
    'kfree\(0x1234\) failed: pointer was never allocated'
    'kmalloc\(99999999999\) failed: heap exhausted'
    '^allocated 100 frames \(400 KiB\) in [0-9]+ runs?:$'
    '^  0x[0-9a-f]+-0x[0-9a-f]+ \([0-9]+ frames, [0-9]+ KiB\)$'
    '^allocated 1 frame \(4 KiB\) in 1 run:$'
    '^  0x[0-9a-f]+-0x[0-9a-f]+ \(1 frame, 4 KiB\)$'
    'freed them again: ([0-9]+) free before, \1 after$'
    'usage: frames <n>'
    'usage: walk <vaddr>'
    'unknown command "bogus"'
    'line too long: 138 characters, at most 128; nothing was run'
    '^ktest: [0-9]+ passed, 0 failed'
    'PMM alloc\+free frame +[0-9]+'
    'kmalloc\+kfree 64 B +[0-9]+'
    'cache alloc\+free 64 B +[0-9]+'
    'kmalloc\(15728640\) = 0x10'
    'out of memory: not enough heap for this test'
    '^0x00000000 \|RK[^|]{62}\|$'
    '^0x0c000000 \|[^|]{64}\|$'
    "^\\.=free #=used R=reserved/firmware K=kernel M=modules ' '=no RAM; cell=1 MiB, row=64 MiB$"
    '^1 CPUs online; [0-9]+ work IPIs sent, 0 shootdowns reached other CPUs'
    '^  CPU 0: APIC id 0, 0 work IPIs received, 0 shootdowns served$'
    '^hello from user mode$'
    '^program exited with code 21; '
    '^program ended by the kernel: page fault \(#PF\) at RIP 0x[0-9a-f]+: read, protection violation, user mode at 0x100000 \(outside the user half\);'
    '^program exited with code 256; [0-9]+ pages? resident, 256 filled on demand$'
    '^user: 0 address spaces alive \([0-9]+ since boot\), 0 pages resident \(0 B\); faults: 256 demand-zero, 0 copied, 0 taken over; 1 program ended by the kernel$'
    'kfree\(0x9abc\) failed'
    'kfree\(0xdef\) failed'
    'free 0xbad\^C$'
    'kfree\(0x111\) failed'
    'kfree\(0x22\) failed'
    'shutting down'
)
why=""
# Read once: `tr | grep -q` under pipefail fails at random (SIGPIPE to tr
# when grep exits at its match).
text=$(tr -d '\r' <"$log")
crash=$(grep -m1 '^!!! CPU EXCEPTION' <<<"$text")
[[ -z $crash ]] || why="after '$(grep '^incroos> ' <<<"${text%%"$crash"*}" | tail -n 1)': ${crash#'!!! '}"
[[ -n $why || $status == 0 ]] || why="run.sh exited $status"
for pattern in "${expect[@]}"; do
    [[ -n $why ]] && break
    grep -Eq -- "$pattern" <<<"$text" || why="no line matching /$pattern/"
done
# Each error once: the shell's line, no log line repeating it.
if [[ -z $why && $(grep -c 'kfree(0x1234)' <<<"$text") -ne 1 ]]; then
    why="kfree(0x1234)'s error was not printed exactly once"
fi
# No warning or error but the suite's own (written "[expected ...]").
if [[ -z $why ]] && grep -Eq '\[(WARN|ERROR) +[^] ]+\] ' <<<"$text"; then
    why="a WARN or ERROR line: $(grep -E -m1 '\[(WARN|ERROR) +[^] ]+\] ' <<<"$text")"
fi
# User programs: `run` with an unknown program prints its usage once, and
# after the three runs (and, in the last meminfo, the suite's) no address
# space is left.
if [[ -z $why && $(grep -c '^usage: run <program> \[arg\]' <<<"$text") -ne 1 ]]; then
    why="run bogus did not print run's usage exactly once"
fi
if [[ -z $why ]] && ! grep '^user: ' <<<"$text" | tail -n 1 |
        grep -Eq '^user: 0 address spaces alive \([1-9][0-9]* since boot\), 0 pages resident'; then
    why="the last meminfo's user line does not say 0 address spaces alive: $(grep '^user: ' <<<"$text" | tail -n 1)"
fi
# The over-long line must not have run in part.
if [[ -z $why ]] && grep -Eq 'kmalloc\(1\) =' <<<"$text"; then
    why="the start of an over-long line was run"
fi
# Lines run twice: typed, then recalled with Up.
for address in 0x4321 0x5678; do
    if [[ -z $why && $(grep -Ec "kfree\\($address\\) failed" <<<"$text") -ne 2 ]]; then
        why="kfree($address) did not run twice (typed, then recalled with Up)"
    fi
done
# Erased and cancelled lines must not run.
if [[ -z $why ]] && grep -Eq 'kfree\(0xbad\)|unknown command "bogus1' <<<"$text"; then
    why="an erased or cancelled line was run"
fi
# The whole suite twice: every test leaves the machine as it found it.
if [[ -z $why && $(grep -Ec '^ktest: [0-9]+ passed, 0 failed' <<<"$text") -ne 2 ]]; then
    why="the suite did not pass twice in a row from the shell"
fi
# A prompt for each line, and one more after Ctrl-C.
if [[ $(grep -c '^incroos> ' <<<"$text") -lt $(( ${#commands[@]} + 1 )) ]]; then
    why=${why:-"the shell stopped answering before the last command"}
fi
# `reboot` under QEMU with -no-reboot (qemu.sh): QEMU exits at once, with
# status 0. A kernel that hung instead would keep run.sh waiting for 30 s
# of quiet, past the timeout.
if [[ -z $why ]]; then
    reboot_log=build/test-logs/shell-$firmware-reboot.log
    printf 'reboot\n' | timeout 25 scripts/run.sh "$iso" "$firmware" 256M >"$reboot_log" 2>&1
    reboot_status=$?
    if [[ $reboot_status != 0 ]]; then
        why="reboot: run.sh exited $reboot_status (QEMU did not exit on the reset); see $reboot_log"
    elif ! tr -d '\r' <"$reboot_log" | grep '^rebooting (a QEMU started with -no-reboot exits instead)\.\.\.$' >/dev/null; then
        why="reboot did not say that QEMU exits; see $reboot_log"
    fi
fi
if [[ -z $why ]]; then
    echo "shell ($firmware) ... ok"
    exit 0
fi
echo "shell ($firmware) ... FAILED ($why); last lines of $log:"
tr -d '\r' <"$log" | tail -n 30 | sed 's/^/    | /'
exit 1
