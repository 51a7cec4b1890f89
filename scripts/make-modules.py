#!/usr/bin/env python3
"""Writes self-checking boot modules for the integrity test.

    make-modules.py DIR COUNT SIZE

Creates DIR/mod0.bin .. DIR/mod{COUNT-1}.bin, each SIZE pseudo-random
bytes (seeded by the index, so builds are reproducible), and prints the GRUB
lines loading them, on one line separated by "; ", for grub/test.cfg.in's
@MODULES@. Each module's command line carries its FNV-1a 64 hash
("fnv1a=0x..."): the kernel copies the command lines at entry, so the
kernel test integrity::boot_modules_are_intact can re-hash every module
after the suite against a value no overwrite of the module can reach.
"""
import os
import random
import sys


def fnv1a(data):
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def main():
    directory, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if size < 1:
        sys.exit("make-modules.py: SIZE must be at least 1")
    os.makedirs(directory, exist_ok=True)
    lines = []
    for index in range(count):
        payload = random.Random(index).randbytes(size)
        with open(os.path.join(directory, f"mod{index}.bin"), "wb") as out:
            out.write(payload)
        lines.append(
            f"module2 /boot/modules/mod{index}.bin mod{index} fnv1a={fnv1a(payload):#018x}"
        )
    print("; ".join(lines))


if __name__ == "__main__":
    main()
