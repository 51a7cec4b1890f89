#!/usr/bin/env bash
# Boots an ISO under QEMU (TCG) and checks how the kernel ended.
#
#   boot-test.sh NAME ISO [options] [-- extra QEMU arguments]
#     --uefi            boot through OVMF instead of SeaBIOS
#     --mem SIZE        guest RAM (default 256M)
#     --exit N          expected QEMU exit status (default 33 = tests passed)
#     --expect REGEX    a line matching REGEX must appear on serial (repeatable)
#     --reject REGEX    no line may match REGEX (repeatable)
#     --timeout SECS    kill QEMU after SECS seconds (default 120) = failure
#     --hang            the kernel is expected to halt: a timeout is success
#                       (use a short --timeout), the --expect lines still count
#     --expect-log REGEX  the boot provokes a WARN or ERROR log line matching
#                       REGEX on purpose: one must appear (repeatable)
#     --allow-log REGEX WARN or ERROR log lines matching REGEX may appear
#                       (repeatable; for failures injected at random)
#     --fails-with REGEX  checks this script: the boot must fail its checks
#                       for a reason matching REGEX (then it is "ok")
#
# Any other `[WARN  source]` or `[ERROR source]` line fails the boot: a
# boot that logs an error nobody declared is not a pass. Lines the kernel
# writes `[expected LEVEL source]` come from an in-kernel test that
# provokes them and declares it (ktest::Expect); the runner checks those.
#
# The serial log is kept in build/test-logs/NAME.log. Prints one line,
# "boot NAME ... ok" or "boot NAME ... FAILED (why)" with the log's tail.
set -uo pipefail

name=$1 iso=$2
shift 2
uefi=0 mem=256M expected_exit=33 timeout_secs=120
patterns=() rejected=() expected_logs=() allowed_logs=() fails_with=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --uefi) uefi=1 ;;
        --mem) mem=$2; shift ;;
        --exit) expected_exit=$2; shift ;;
        --expect) patterns+=("$2"); shift ;;
        --reject) rejected+=("$2"); shift ;;
        --expect-log) expected_logs+=("$2"); shift ;;
        --allow-log) allowed_logs+=("$2"); shift ;;
        --fails-with) fails_with=$2; shift ;;
        --timeout) timeout_secs=$2; shift ;;
        --hang) expected_exit=hang ;;
        --) shift; break ;;
        *) echo "boot-test.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# Without other expectations, a clean exit means the in-kernel suite ran
# and reported no failure.
if [[ $expected_exit == 33 && ${#patterns[@]} == 0 ]]; then
    patterns+=("^ktest: [0-9]+ passed, 0 failed, 0 skipped")
fi

logdir=build/test-logs
mkdir -p "$logdir"
log=$logdir/$name.log
: >"$log"; : >"$log.qemu"

firmware=bios
[[ $uefi == 1 ]] && firmware=uefi

start=$(date +%s%N)
timeout --kill-after=5 "$timeout_secs" scripts/qemu.sh "$iso" "$firmware" "$mem" \
    -display none -monitor none -serial "file:$log" \
    "$@" </dev/null >>"$log.qemu" 2>&1
status=$?
tenths=$(( ($(date +%s%N) - start) / 100000000 ))
elapsed=$((tenths / 10)).$((tenths % 10))

why=""
if [[ $expected_exit == hang ]]; then
    [[ $status == 124 || $status == 137 ]] || why="QEMU exited ($status) instead of halting"
elif [[ $status == 124 || $status == 137 ]]; then
    why="timed out after ${timeout_secs}s"
elif [[ $status != "$expected_exit" ]]; then
    why="QEMU exit status $status, expected $expected_exit"
fi
if [[ -z $why ]]; then
    # Serial output uses \r\n; strip the \r before matching. The text is
    # read once: `tr | grep -q` under pipefail fails at random when grep
    # exits at its match while tr is still writing (SIGPIPE).
    text=$(tr -d '\r' <"$log")
    for pattern in "${patterns[@]}"; do
        if ! grep -Eq -- "$pattern" <<<"$text"; then
            why="no line matching /$pattern/"
            break
        fi
    done
    for pattern in "${rejected[@]}"; do
        if [[ -z $why ]] && grep -Eq -- "$pattern" <<<"$text"; then
            why="a line matches /$pattern/: $(grep -E -m1 -- "$pattern" <<<"$text")"
        fi
    done
    # The log's warnings and errors (a record may start mid-line, after a
    # test's name), each declared by --expect-log or --allow-log.
    problems=$(grep -E -- '\[(WARN|ERROR) +[^] ]+\] ' <<<"$text")
    for pattern in "${expected_logs[@]}"; do
        if [[ -z $why ]] && ! grep -Eq -- "$pattern" <<<"$problems"; then
            why="no WARN or ERROR line matching /$pattern/"
        fi
    done
    declared=("${expected_logs[@]}" "${allowed_logs[@]}")
    if [[ -z $why && -n $problems ]]; then
        if [[ ${#declared[@]} -gt 0 ]]; then
            undeclared=$(grep -Ev -f <(printf '%s\n' "${declared[@]}") <<<"$problems")
        else
            undeclared=$problems
        fi
        if [[ -n $undeclared ]]; then
            why="$(wc -l <<<"$undeclared") undeclared WARN or ERROR log lines, the first: $(head -n 1 <<<"$undeclared")"
        fi
    fi
fi

if [[ -n $fails_with ]]; then
    if [[ -n $why ]] && grep -Eq -- "$fails_with" <<<"$why"; then
        echo "boot $name ... ok (failed as it must: $why; ${elapsed}s)"
        exit 0
    fi
    why=${why:+"failed for another reason: $why"}
    why=${why:-"passed, but must fail with /$fails_with/"}
elif [[ -z $why ]]; then
    echo "boot $name ... ok (${elapsed}s)"
    exit 0
fi
echo "boot $name ... FAILED ($why, ${elapsed}s); last lines of $log:"
tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    | /'
[[ -s "$log.qemu" ]] && sed 's/^/    qemu: /' "$log.qemu" | tail -n 5
exit 1
