#!/usr/bin/env python3
"""Captures the ACPI tables QEMU gives a machine, as host-test fixtures.

    capture-acpi.py ISO NAME bios|uefi [extra QEMU arguments...]

Boots ISO (a kernel that opens the shell) with the serial port in a file
and the monitor on a socket. At the prompt it reads from the boot report
where the boot information is and where each ACPI table is (the kernel
lists them), saves each table with the monitor's `pmemsave`, and takes
the RSDP out of the saved boot information's Multiboot2 ACPI tag (type 15,
else 14), exactly the bytes the kernel parsed. Writes
tests/fixtures/acpi/NAME/rsdp.bin and SIG@ADDRESS.bin per table; the host
tests in src/acpi/tests.rs read them back.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from qemu_monitor import command, connect, wait_for_prompt


def main():
    iso, name, firmware, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    out = os.path.join("tests", "fixtures", "acpi", name)
    workdir = tempfile.mkdtemp(prefix="incroos-acpi-")
    log_path = os.path.join(workdir, "serial.log")
    monitor_path = os.path.join(workdir, "monitor.sock")
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, firmware, "256M", "-display", "none",
         "-serial", f"file:{log_path}", "-monitor", f"unix:{monitor_path},server,nowait"]
        + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log = wait_for_prompt(log_path)
        if log is None:
            sys.exit("capture-acpi: no shell prompt")
        monitor = connect(monitor_path)
        if monitor is None:
            sys.exit("capture-acpi: no QEMU monitor")
        info = re.search(r"boot info: +(\d+) bytes at (0x[0-9a-f]+)", log)
        tables = re.findall(r"^  ([A-Z0-9]{4}) (0x[0-9a-f]+) +(\d+) bytes", log, re.M)
        if not info or not tables:
            sys.exit("capture-acpi: the boot report lists no boot information or tables")
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.makedirs(out)
        boot_info = os.path.join(workdir, "boot-info.bin")
        command(monitor, f"pmemsave {info.group(2)} {info.group(1)} \"{boot_info}\"")
        for signature, address, length in tables:
            path = os.path.join(out, f"{signature}@{int(address, 16):x}.bin")
            command(monitor, f"pmemsave {address} {length} \"{os.path.abspath(path)}\"")
        command(monitor, "quit")
        wait_for_file(boot_info, int(info.group(1)))
        with open(boot_info, "rb") as source:
            rsdp = rsdp_from_tags(source.read())
        with open(os.path.join(out, "rsdp.bin"), "wb") as sink:
            sink.write(rsdp)
        print(f"capture-acpi: {len(tables)} tables and the RSDP in {out}")
    finally:
        qemu.kill()
        qemu.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_for_file(path, size, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) >= size:
            return
        time.sleep(0.1)
    sys.exit(f"capture-acpi: {path} was not written")


def rsdp_from_tags(info):
    """The RSDP copy in a Multiboot2 information structure's ACPI tag."""
    found = {}
    offset = 8
    while offset + 8 <= len(info):
        kind, size = struct.unpack_from("<II", info, offset)
        if kind == 0 or size < 8:
            break
        if kind in (14, 15):
            found[kind] = info[offset + 8:offset + size]
        offset = (offset + size + 7) & ~7
    if not found:
        sys.exit("capture-acpi: the boot information has no ACPI tag")
    return found.get(15, found.get(14))


if __name__ == "__main__":
    main()
