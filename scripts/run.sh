#!/usr/bin/env bash
# Boots the ISO in QEMU for `make run` / `make run-uefi`.
#
# On a terminal: serial console and QEMU monitor multiplexed on stdio
# (Ctrl-A X quits, Ctrl-A C toggles the monitor).
# With piped input (`printf 'meminfo\nshutdown\n' | make run`): each input
# line is typed into the kernel's shell only after its prompt appears, since
# the firmware and the UART set-up discard characters that arrive early.
set -uo pipefail

iso=$1 firmware=$2 mem=$3
shift 3
args=("$@")
[[ -n ${DISPLAY:-} ]] || args+=(-display none)
qemu=(scripts/qemu.sh "$iso" "$firmware" "$mem")

if [[ -t 0 ]]; then
    exec "${qemu[@]}" "${args[@]}" -serial mon:stdio
fi

prompt='incroos> '
coproc QEMU { exec "${qemu[@]}" "${args[@]}" -monitor none -serial stdio 2>&1; }
# Our own copies of the pipes: bash closes the coprocess's when QEMU exits,
# and the output still has to be read to its end after a `shutdown`.
exec {out}<&"${QEMU[0]}" {in}>&"${QEMU[1]}"
qemu_pid=$QEMU_PID

# Copies QEMU's output to ours until the shell prompt shows; fails on EOF.
wait_for_prompt() {
    local tail='' char
    while IFS= read -r -N 1 -u "$out" -t 300 char; do
        printf '%s' "$char"
        tail="${tail}${char}"
        (( ${#tail} > ${#prompt} )) && tail=${tail:1}
        [[ $tail == "$prompt" ]] && return 0
    done
    return 1
}

while IFS= read -r line; do
    wait_for_prompt || break
    printf '%s\r' "$line" >&"$in"
done
# Input is done: show the rest until QEMU exits (shutdown) or goes quiet.
while IFS= read -r -N 1 -u "$out" -t 30 char; do
    printf '%s' "$char"
done
kill "$qemu_pid" 2>/dev/null
wait "$qemu_pid" 2>/dev/null
status=$?
# 0: powered off by `shutdown`; 143: we stopped it after it went quiet.
[[ $status == 0 || $status == 143 ]] && exit 0
exit "$status"
