#!/usr/bin/env python3
"""Boots the shell ISO under OVMF (UEFI), waits for the shell prompt on
serial, takes a QEMU `screendump` of the framebuffer over QMP, and checks
that the kernel's console text is on screen: not blank, and the last text
row shows the prompt "incroos> " (8 glyphs, then empty cells). Keeps the
screenshot as build/test-logs/screen-uefi.png for people to look at."""

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import zlib

ISO = sys.argv[1]
LOGS = "build/test-logs"
PPM = os.path.join(LOGS, "screen-uefi.ppm")
PNG = os.path.join(LOGS, "screen-uefi.png")
SOCKET = os.path.join(LOGS, "qmp.sock")
CELL_W, CELL_H = 8, 16


def fail(why):
    print(f"screen (uefi) ... FAILED ({why})")
    sys.exit(1)


def wait_for_prompt(qemu, deadline):
    seen = b""
    while time.time() < deadline:
        ready, _, _ = select.select([qemu.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(qemu.stdout.fileno(), 4096)
            if not chunk:
                return False
            seen = (seen + chunk)[-4096:]
            if b"incroos> " in seen:
                return True
    return False


def qmp(sock, command, **arguments):
    message = {"execute": command}
    if arguments:
        message["arguments"] = arguments
    sock.sendall(json.dumps(message).encode() + b"\n")
    buffer = b""
    while True:
        buffer += sock.recv(65536)
        for line in buffer.split(b"\n"):
            if line.strip():
                reply = json.loads(line)
                if "return" in reply or "error" in reply:
                    return reply
        buffer = buffer[buffer.rfind(b"\n") + 1:] if b"\n" in buffer else buffer


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    fields, index = [], 0
    while len(fields) < 4:
        while data[index:index + 1].isspace():
            index += 1
        end = index
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[index:end])
        index = end
    assert fields[0] == b"P6", "not a binary PPM"
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[index + 1:]


def write_png(path, width, height, rgb):
    rows = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows, 6)))
        f.write(chunk(b"IEND", b""))


def main():
    os.makedirs(LOGS, exist_ok=True)
    for stale in (SOCKET, PPM):
        if os.path.exists(stale):
            os.remove(stale)
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", ISO, "uefi", "256M", "-display", "none", "-monitor", "none",
         "-serial", "stdio", "-qmp", f"unix:{SOCKET},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_prompt(qemu, time.time() + 120):
            fail("no shell prompt on serial within 120 s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(SOCKET)
        sock.recv(65536)  # greeting
        qmp(sock, "qmp_capabilities")
        # The console writes each text to serial first, then draws it on
        # the screen: the prompt on serial may still be on its way to the
        # framebuffer, so look again a few times before judging.
        for attempt in range(10):
            why = screenshot(sock)
            if why is None or attempt == 9:
                break
            time.sleep(0.5)
        qmp(sock, "quit")
    finally:
        try:
            qemu.wait(timeout=10)
        except subprocess.TimeoutExpired:
            qemu.kill()
    if why:
        fail(why)


def screenshot(sock):
    """Takes a screendump into PNG; returns why it is not the console with
    the prompt on its last text row, or None."""
    if os.path.exists(PPM):
        os.remove(PPM)
    reply = qmp(sock, "screendump", filename=os.path.abspath(PPM))
    if "error" in reply:
        fail(f"screendump: {reply['error']}")
    for _ in range(50):
        if os.path.exists(PPM) and os.path.getsize(PPM) > 0:
            break
        time.sleep(0.1)
    return check(PPM)


def check(ppm):
    width, height, rgb = read_ppm(ppm)
    write_png(PNG, width, height, rgb)
    os.remove(ppm)

    def lit(x, y):
        at = (y * width + x) * 3
        return rgb[at] + rgb[at + 1] + rgb[at + 2] > 150

    total = sum(1 for y in range(height) for x in range(width) if lit(x, y))
    share = total / (width * height)
    if not 0.005 < share < 0.6:
        return f"{share:.1%} of the screen is lit: blank or garbage (see {PNG})"

    def cell_lit(column, row):
        return any(lit(column * CELL_W + x, row * CELL_H + y) for y in range(CELL_H) for x in range(CELL_W))

    rows = height // CELL_H
    last = max((r for r in range(rows) if any(cell_lit(c, r) for c in range(width // CELL_W))), default=None)
    if last is None:
        return "no text row found"
    cells = [cell_lit(c, last) for c in range(12)]
    # "incroos> ": eight glyphs, then the space after the prompt and nothing.
    if cells[:8] != [True] * 8 or any(cells[9:]):
        return f"last text row is not the shell prompt: lit cells {cells} (see {PNG})"
    print(f"screen (uefi) ... ok ({width}x{height}, {share:.1%} lit, prompt on text row {last}; {PNG})")
    return None


main()
