#!/usr/bin/env python3
"""Captures the ACPI tables QEMU gives a machine, as host-test fixtures.

    capture-acpi.py ISO all                      every machine in MACHINES
    capture-acpi.py ISO NAME                     one machine in MACHINES
    capture-acpi.py ISO NAME bios|uefi [--mem SIZE] [extra QEMU arguments...]
                                                 any other machine (256M
                                                 of RAM unless --mem)

Boots ISO (a kernel that opens the shell: `make build/test-shell.iso`)
with the serial port in a file and the monitor on a socket. At the
prompt it reads from the boot report where the boot information is and
where each ACPI table is (the kernel lists them), saves each table with
the monitor's `pmemsave`, and takes the RSDP out of the saved boot
information's Multiboot2 ACPI tag (type 15, else 14), exactly the bytes
the kernel parsed. Writes tests/fixtures/acpi/NAME/rsdp.bin and
SIG@ADDRESS.bin per table; the host tests in src/acpi/tests.rs and
src/acpi/tests/numa.rs read them back.
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


def numa_nodes(*nodes):
    """QEMU arguments for NUMA nodes 0, 1, ... given as (RAM, CPUs) pairs:
    a RAM backend per node ("256M"; None: no memory) and a CPU range ("0-1";
    None: no CPUs)."""
    args = []
    for node, (ram, cpus) in enumerate(nodes):
        option = f"node,nodeid={node}"
        if ram is not None:
            args += ["-object", f"memory-backend-ram,id=m{node},size={ram}"]
            option += f",memdev=m{node}"
        if cpus is not None:
            option += f",cpus={cpus}"
        args += ["-numa", option]
    return args


def numa_distances(*distances):
    """QEMU arguments for (from, to, distance) triples (the SLIT)."""
    return [arg for source, destination, value in distances
            for arg in ("-numa", f"dist,src={source},dst={destination},val={value}")]


# The fixtures of tests/fixtures/acpi/: name -> (firmware, RAM, QEMU
# arguments); docs/acpi.md says what each one holds.
MACHINES = {
    "seabios-pc-smp2-of-4": ("bios", "256M", ["-smp", "2,maxcpus=4"]),
    "ovmf-q35-smp4": ("uefi", "256M", ["-machine", "q35", "-smp", "4"]),
    "ovmf-pc": ("uefi", "256M", []),
    # Two nodes of two CPUs and 256 MiB each, 21 apart.
    "seabios-pc-numa2": (
        "bios", "512M",
        ["-smp", "4"] + numa_nodes(("256M", "0-1"), ("256M", "2-3"))
        + numa_distances((0, 1, 21))),
    # Three nodes, the third memory-only; every distance given, all
    # different, so that a row/column mix-up shows.
    "ovmf-q35-numa3": (
        "uefi", "768M",
        ["-machine", "q35", "-smp", "4"]
        + numa_nodes(("256M", "0-1"), ("256M", "2-3"), ("256M", None))
        + numa_distances((0, 1, 21), (1, 0, 22), (0, 2, 31), (2, 0, 32),
                         (1, 2, 41), (2, 1, 42))),
    # Node 1's 2 GiB all above 4 GiB (the pc machine keeps 3 GiB below
    # the PCI hole); no distances, so no SLIT.
    "seabios-pc-numa2-above-4g": (
        "bios", "5G",
        ["-smp", "4"] + numa_nodes(("3G", "0-1"), ("2G", "2-3"))),
    # Node 1's 3 GiB split by the PCI hole (1 GiB below, 2 GiB above
    # 4 GiB), a hot-pluggable memory range, and CPUs 2 and 3 possible but
    # not present.
    "ovmf-pc-numa2-hotplug": (
        "uefi", "5G,slots=2,maxmem=8G",
        ["-smp", "2,maxcpus=4"] + numa_nodes(("2G", "0-1"), ("3G", "2-3"))
        + numa_distances((0, 1, 28))),
}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    iso, name = sys.argv[1], sys.argv[2]
    if len(sys.argv) == 3:
        names = list(MACHINES) if name == "all" else [name]
        for each in names:
            if each not in MACHINES:
                sys.exit(f"capture-acpi: no machine {each!r} (known: all, {', '.join(MACHINES)})")
            firmware, mem, extra = MACHINES[each]
            capture(iso, each, firmware, mem, extra)
        return
    firmware, extra, mem = sys.argv[3], sys.argv[4:], "256M"
    if extra[:1] == ["--mem"] and len(extra) >= 2:
        mem, extra = extra[1], extra[2:]
    capture(iso, name, firmware, mem, extra)


def capture(iso, name, firmware, mem, extra):
    """Boots one machine and saves its tables as fixture NAME."""
    out = os.path.join("tests", "fixtures", "acpi", name)
    workdir = tempfile.mkdtemp(prefix="incroos-acpi-")
    log_path = os.path.join(workdir, "serial.log")
    monitor_path = os.path.join(workdir, "monitor.sock")
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, firmware, mem, "-display", "none",
         "-serial", f"file:{log_path}", "-monitor", f"unix:{monitor_path},server,nowait"]
        + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log = wait_for_prompt(log_path)
        if log is None:
            sys.exit(f"capture-acpi: {name}: no shell prompt")
        monitor = connect(monitor_path)
        if monitor is None:
            sys.exit(f"capture-acpi: {name}: no QEMU monitor")
        info = re.search(r"boot info: +(\d+) bytes at (0x[0-9a-f]+)", log)
        tables = re.findall(r"^  ([A-Z0-9]{4}) (0x[0-9a-f]+) +(\d+) bytes", log, re.M)
        if not info or not tables:
            sys.exit(f"capture-acpi: {name}: the boot report lists no boot information or tables")
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
