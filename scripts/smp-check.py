#!/usr/bin/env python3
"""Checks from outside the kernel that every CPU was brought up.

    smp-check.py ISO bios|uefi CPUS [extra QEMU arguments...]

Boots ISO (a kernel that opens the shell) with `-smp CPUS`, the serial
port in a file and the monitor on a socket. At the prompt it asks the
monitor for `info registers -a` and checks that every CPU is in 64-bit
mode (a CS64 code segment) with paging on (CR0.PG) and long mode active
(EFER.LMA), none left in the reset state; and that the boot report says
CPUS online.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from qemu_monitor import connect, read_until_prompt, wait_for_prompt


def main():
    iso, firmware, cpus, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    workdir = tempfile.mkdtemp(prefix="incroos-smp-")
    log_path = os.path.join(workdir, "serial.log")
    monitor_path = os.path.join(workdir, "monitor.sock")
    name = f"smp-check-{firmware}-{cpus}"
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, firmware, "256M", "-smp", str(cpus), "-display", "none",
         "-serial", f"file:{log_path}", "-monitor", f"unix:{monitor_path},server,nowait"] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        why = check(log_path, monitor_path, cpus)
    finally:
        qemu.kill()
        qemu.wait()
        os.makedirs("build/test-logs", exist_ok=True)
        if os.path.exists(log_path):
            shutil.copy(log_path, f"build/test-logs/{name}.log")
        shutil.rmtree(workdir, ignore_errors=True)
    if why:
        print(f"{name} ... FAILED ({why}); serial log in build/test-logs/{name}.log")
        return 1
    print(f"{name} ... ok ({cpus} CPUs in 64-bit mode with paging on, seen by the QEMU monitor)")
    return 0


def check(log_path, monitor_path, cpus):
    log = wait_for_prompt(log_path)
    if log is None:
        return "no shell prompt"
    if not re.search(rf"^CPUs: +{cpus} online", log, re.M):
        return f"the boot report does not say {cpus} online"
    monitor = connect(monitor_path)
    if monitor is None:
        return "no QEMU monitor"
    monitor.sendall(b"info registers -a\n")
    text = read_until_prompt(monitor).decode("utf-8", "replace")
    blocks = re.split(r"\r?\nCPU#(\d+)", text)[1:]
    if len(blocks) // 2 != cpus:
        return f"the monitor shows {len(blocks) // 2} CPUs, expected {cpus}"
    for number, block in zip(blocks[0::2], blocks[1::2]):
        cr0 = re.search(r"CR0=([0-9a-f]+)", block)
        efer = re.search(r"EFER=([0-9a-f]+)", block)
        if not cr0 or not efer:
            return f"CPU#{number}: no CR0/EFER in the dump"
        if not int(cr0.group(1), 16) & (1 << 31):
            return f"CPU#{number}: paging is off (CR0={cr0.group(1)})"
        if not int(efer.group(1), 16) & (1 << 10):
            return f"CPU#{number}: long mode not active (EFER={efer.group(1)})"
        if "CS64" not in block:
            return f"CPU#{number}: not in a 64-bit code segment"
    return None


if __name__ == "__main__":
    sys.exit(main())
