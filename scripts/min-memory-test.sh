#!/usr/bin/env bash
# Finds the smallest RAM (in MiB) the kernel accepts for ISO and checks
# that the whole in-kernel suite passes there, and that one MiB less is
# refused with the "not enough memory" message, not a crash later.
#
#   min-memory-test.sh NAME ISO [extra boot-test.sh options]
#
# Bisects between 16 and 64 MiB; every boot it makes goes through
# boot-test.sh, so each probe's log is kept as build/test-logs/NAME-<MiB>m.log.
set -uo pipefail
name=$1 iso=$2
shift 2

# accepted MiB: 0 if the kernel refused the machine, 1 if the suite ran
# and passed; any other ending fails the whole test.
probe() {
    local mib=$1 log=build/test-logs/$name-${1}m.log
    shift
    if scripts/boot-test.sh "$name-${mib}m" "$iso" --mem "${mib}M" "$@" >/dev/null; then
        return 0
    fi
    if grep -q 'IncroOS boot failed: physical memory manager: not enough memory' "$log"; then
        return 1
    fi
    echo "min-memory $name ... FAILED at ${mib} MiB (neither refused nor passed); last lines of $log:"
    tr -d '\r' <"$log" | tail -n 15 | sed 's/^/    | /'
    exit 1
}

low=16 high=64   # low is refused, high is accepted
probe $low "$@" && { echo "min-memory $name ... FAILED (accepted $low MiB)"; exit 1; }
probe $high "$@" || { echo "min-memory $name ... FAILED (refused $high MiB)"; exit 1; }
while (( high - low > 1 )); do
    mid=$(( (low + high) / 2 ))
    if probe $mid "$@"; then high=$mid; else low=$mid; fi
done
refusal=$(tr -d '\r' <"build/test-logs/$name-${low}m.log" | grep -o 'not enough memory.*')
echo "min-memory $name ... ok (smallest accepted ${high} MiB runs the suite; ${low} MiB: $refusal)"
