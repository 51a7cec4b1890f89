#!/usr/bin/env python3
"""Injects real NMIs from QEMU's monitor into the kernel's shell.

    nmi-test.py ISO

Boots ISO (a kernel that opens the shell) with the serial port in a file
and the monitor on a socket; at the prompt, sends `nmi` (every CPU gets
one), checks that the kernel reports it and goes on, types `meminfo` on
the PS/2 keyboard with `sendkey` (with Ctrl-U, Left and, to run it again,
Up) and checks the answers, then sends a second NMI. Fails on a CPU
exception report, a missing line, or a timeout.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

LOG = "build/test-logs/nmi.log"


def main():
    iso = sys.argv[1]
    os.makedirs(os.path.dirname(LOG), exist_ok=True)
    # A previous run's log would show a prompt before this QEMU has booted.
    if os.path.exists(LOG):
        os.remove(LOG)
    workdir = tempfile.mkdtemp(prefix="incroos-nmi-")
    monitor_path = os.path.join(workdir, "monitor.sock")
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, "bios", "256M", "-display", "none", "-serial", f"file:{LOG}",
         "-monitor", f"unix:{monitor_path},server,nowait"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        why = run(monitor_path)
    finally:
        qemu.kill()
        qemu.wait()
    if why:
        print(f"nmi ... FAILED ({why}); last lines of {LOG}:")
        for line in read_log().splitlines()[-15:]:
            print(f"    | {line}")
        return 1
    print("nmi ... ok (two NMIs from the monitor reported and survived; the shell answered between them)")
    return 0


def read_log():
    try:
        with open(LOG, "rb") as log:
            return log.read().decode("utf-8", "replace").replace("\r", "")
    except FileNotFoundError:
        return ""


def wait_for(text, seconds=60, after=0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        log = read_log()
        if "CPU EXCEPTION" in log:
            return None
        found = log.find(text, after)
        if found >= 0:
            return found
        time.sleep(0.1)
    return None


def run(monitor_path):
    prompt = wait_for("incroos> ", 120)
    if prompt is None:
        return "no shell prompt"
    monitor = None
    for _ in range(50):
        try:
            monitor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            monitor.connect(monitor_path)
            break
        except OSError:
            time.sleep(0.1)
    else:
        return "cannot reach the QEMU monitor"

    def command(text):
        monitor.sendall(text.encode() + b"\n")
        time.sleep(0.3)

    command("nmi")
    first = wait_for("NMI: 1 received (1 in all)", after=prompt)
    if first is None:
        return "no report of the first NMI"
    # On the PS/2 keyboard, with its editing keys: "bogus" erased by
    # Ctrl-U, then "memnfo" with an "i" put in after three Left: "meminfo".
    keys = [*"bogus", "ctrl-u", *"memnfo", "left", "left", "left", "i", "ret"]
    for key in keys:
        command(f"sendkey {key}")
    answer = wait_for("verify: ok", after=first)
    if answer is None:
        return "the shell did not answer meminfo (edited on the keyboard) after the NMI"
    # Up recalls it.
    command("sendkey up")
    command("sendkey ret")
    if wait_for("verify: ok", after=answer + 1) is None:
        return "Up on the keyboard did not run meminfo again"
    if "unknown command" in read_log()[first:]:
        return "the line erased with Ctrl-U was run"
    command("nmi")
    if wait_for("NMI: 1 received (2 in all)", after=first) is None:
        return "no report of the second NMI"
    if "CPU EXCEPTION" in read_log():
        return "an exception report"
    command("quit")
    return None


if __name__ == "__main__":
    sys.exit(main())
