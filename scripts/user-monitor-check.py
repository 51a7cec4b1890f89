#!/usr/bin/env python3
"""Checks a running user program's protections from outside the kernel.

    user-monitor-check.py ISO [SPINS]

Boots ISO (a kernel that opens the shell) under `-cpu max` with the
serial port in a file and the monitor on a socket, types
`run spin SPINS` on the PS/2 keyboard and, while the probe spins in ring
3, asks the monitor:

* `info registers`: CPL 3 and CS 0x23 (the CPU is in the program, not in
  an interrupt handler; retried until it is), and CR4 with SMEP (bit 20),
  SMAP (bit 21) and UMIP (bit 11) set;
* `info tlb`: every mapping of that CR3. Every page with the user flag
  lies in the user half (PML4 entries 1..=255, 0x80_0000_0000 up to the
  canonical hole at 0x8000_0000_0000), there is at least one (the
  probe's code at 0x80_0040_0000, user, read-only and executable), and no
  page is both writable and executable.

`info tlb` shows each leaf entry's own flags, not those combined with the
tables above it; both checks are stricter for it (a leaf user, writable
or executable entry counts as such whatever its tables say). The same
CR3 and CPL 3 are seen after the dump, so it is the program's space.
Then the program must end by itself (`exited with code 0`) and the shell
answer again.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from qemu_monitor import PROMPT, command, connect, read_serial, wait_for_prompt

NAME = "user-monitor"
LOG = f"build/test-logs/{NAME}.log"
# The probe's `pause` loop ran about 5 million rounds a second under TCG
# on the 2-core VM (400 million in 80 s): some 10 s, time for the checks
# (a second or two) even on a loaded machine.
SPINS = 50_000_000
USER_START = 0x80_0000_0000
USER_END = 0x8000_0000_0000
PROBE_CODE = 0x80_0040_0000
USER_CS = 0x23
CR4_BITS = {"SMEP": 20, "SMAP": 21, "UMIP": 11}
# QEMU 7.2's `info tlb` line (target/i386/monitor.c, print_pte): virtual
# address (sign-extended), physical address, then one column per bit:
# NX, global, page size (a 2 MiB or 1 GiB leaf), dirty, accessed, cache
# disable, write-through, user, writable; '-' where clear.
TLB_LINE = re.compile(r"^([0-9a-f]{16}): ([0-9a-f]{16}) ([-X][-G][-P][-D][-A][-C][-T][-U][-W])$")
# How many tries to find the CPU in ring 3 (it leaves for timer ticks).
TRIES = 40


def main():
    iso = sys.argv[1]
    spins = int(sys.argv[2]) if len(sys.argv) > 2 else SPINS
    workdir = tempfile.mkdtemp(prefix="incroos-user-monitor-")
    log_path = os.path.join(workdir, "serial.log")
    monitor_path = os.path.join(workdir, "monitor.sock")
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, "bios", "256M", "-cpu", "max", "-display", "none",
         "-serial", f"file:{log_path}", "-monitor", f"unix:{monitor_path},server,nowait"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        why, summary = check(log_path, monitor_path, spins)
    finally:
        qemu.kill()
        qemu.wait()
        os.makedirs(os.path.dirname(LOG), exist_ok=True)
        if os.path.exists(log_path):
            shutil.copy(log_path, LOG)
        shutil.rmtree(workdir, ignore_errors=True)
    if why:
        print(f"{NAME} ... FAILED ({why}); serial log in {LOG}")
        return 1
    print(f"{NAME} ... ok ({summary})")
    return 0


def type_line(monitor, line):
    """Types `line` and Enter on the PS/2 keyboard (letters, digits,
    spaces and '-' only)."""
    keys = {" ": "spc", "-": "minus"}
    for char in line:
        command(monitor, "sendkey " + keys.get(char, char))
        # sendkey holds each key for 100 ms; the next must not overtake it.
        time.sleep(0.15)
    command(monitor, "sendkey ret")


def registers(monitor):
    """CPL, CS selector, CR3 and CR4 from `info registers`, or None."""
    text = command(monitor, "info registers").decode("utf-8", "replace")
    found = [re.search(pattern, text, re.M) for pattern in
             (r"CPL=(\d)", r"^CS =([0-9a-f]{4}) ", r"CR3=([0-9a-f]+)", r"CR4=([0-9a-f]+)")]
    if not all(found):
        return None
    cpl, cs, cr3, cr4 = (int(match.group(1), 16) for match in found)
    return cpl, cs, cr3, cr4


def parse_tlb(text):
    """Each mapping in `info tlb`'s answer as (virtual, flags), and the
    lines it could not read."""
    pages, unread = [], []
    # The first line echoes the command, the last is the next prompt.
    for line in text.replace("\r", "").splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("(qemu)"):
            continue
        match = TLB_LINE.match(line)
        if match:
            pages.append((int(match.group(1), 16), match.group(3)))
        else:
            unread.append(line)
    return pages, unread


def leaf_end(virt, flags):
    """Where the mapping at `virt` ends: 4 KiB, or for a large leaf 1 GiB
    when 1 GiB-aligned (the larger size when in doubt), else 2 MiB."""
    if "P" not in flags:
        return virt + 0x1000
    return virt + (0x4000_0000 if virt % 0x4000_0000 == 0 else 0x20_0000)


def check_mappings(pages):
    """What is wrong with the mappings `parse_tlb` read, or None."""
    if not pages:
        return "`info tlb` listed no mapping"
    user = [(virt, flags) for virt, flags in pages if "U" in flags]
    if not user:
        return "no user page in the program's space"
    for virt, flags in user:
        if virt < USER_START or leaf_end(virt, flags) > USER_END:
            return f"user page at {virt:#x} ({flags}) outside the user half"
    code = dict(user).get(PROBE_CODE)
    if code is None or "W" in code or "X" in code:
        return f"the probe's code at {PROBE_CODE:#x} is not user read + execute ({code})"
    for virt, flags in pages:
        if "W" in flags and "X" not in flags:
            return f"page at {virt:#x} is writable and executable ({flags})"
    return None


def in_ring3(monitor):
    """The registers once the CPU is seen in the user program, or None."""
    for _ in range(TRIES):
        state = registers(monitor)
        if state and state[0] == 3 and state[1] == USER_CS:
            return state
        time.sleep(0.25)
    return None


def check(log_path, monitor_path, spins):
    log = wait_for_prompt(log_path)
    if log is None:
        return "no shell prompt", None
    monitor = connect(monitor_path)
    if monitor is None:
        return "no QEMU monitor", None
    type_line(monitor, f"run spin {spins}")

    # The dump must be of the program's space: CPL 3 with the same CR3
    # before and after it.
    for _ in range(TRIES):
        before = in_ring3(monitor)
        if before is None:
            text = read_serial(log_path)
            crash = re.search(r"^!!! CPU EXCEPTION: .*", text[len(log):], re.M)
            if crash:
                return f"the kernel crashed instead: {crash.group(0)[4:]}", None
            if "program " in text[len(log):]:
                return "the program ended before the monitor saw it in ring 3", None
            return (f"the monitor never saw CPL 3 with CS {USER_CS:#x} "
                    f"in {TRIES} tries (is `run spin` running?)"), None
        tlb = command(monitor, "info tlb").decode("utf-8", "replace")
        after = registers(monitor)
        if after and after[:3] == (3, USER_CS, before[2]):
            break
    else:
        return "the CPU kept leaving ring 3 or its space during `info tlb`", None
    _, _, cr3, cr4 = before

    missing = [name for name, bit in CR4_BITS.items() if not cr4 >> bit & 1]
    if missing:
        return f"CR4={cr4:#x} lacks {', '.join(missing)}", None

    pages, unread = parse_tlb(tlb)
    if unread:
        return f"`info tlb` line not understood: {unread[0]!r}", None
    why = check_mappings(pages)
    if why:
        return why, None

    # The program ends by itself and the shell answers again.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = read_serial(log_path)[len(log):]
        if "CPU EXCEPTION" in text or ("program " in text and PROMPT in text):
            break
        time.sleep(0.5)
    else:
        return "the program did not end within 5 minutes", None
    if not re.search(r"^program exited with code 0;", text, re.M):
        ending = [line for line in text.splitlines() if line.startswith(("program ", "!!!"))]
        return f"the program did not exit with code 0: {ending[:1]}", None
    command(monitor, "quit")

    user = [(virt, flags) for virt, flags in pages if "U" in flags]
    executable = sum("X" not in flags for _, flags in user)
    writable = sum("W" in flags for _, flags in user)
    summary = (f"CR3 {cr3:#x}, CR4 {cr4:#x} with " + ", ".join(CR4_BITS) +
               f"; {len(pages)} mappings, {len(user)} user page{'s' if len(user) != 1 else ''} in "
               f"{min(v for v, _ in user):#x}..{max(leaf_end(v, f) for v, f in user):#x} "
               f"({executable} executable, {writable} writable), none writable and executable")
    return None, summary


if __name__ == "__main__":
    sys.exit(main())
