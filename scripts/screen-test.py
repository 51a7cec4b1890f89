#!/usr/bin/env python3
"""Boots the shell ISO under OVMF (UEFI), waits for the shell prompt on
serial, takes a QEMU `screendump` of the framebuffer over QMP, and reads
the screen back as text: every 8x16 cell is matched against the kernel's
font (font8x8's glyphs, each row doubled, from the build's source)
in whatever colours it was drawn. The text must be the end of what the
kernel wrote to serial since the console reached the screen, word for
word (the screen breaks long lines at words, serial does not), ending in
the prompt "incroos> " with the cursor cell (white on red) after it.
Keeps the screenshot as build/test-logs/screen-uefi.png for people to
look at."""

import glob
import json
import os
import re
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
# The cursor cell's background (display::text_framebuffer, Color::Error).
CURSOR_BACKGROUND = (0xAA, 0, 0)


def font_glyphs():
    """The kernel's glyphs, {8 rows of 8 bits (bit 0 leftmost): char}, read
    from the font8x8 source the kernel was built with (the build's
    dependency files name it; no network, no cargo call)."""
    sources = set()
    for name in glob.glob("target/x86_64-unknown-none/*/deps/font8x8-*.d"):
        sources.update(re.findall(r"\S+/src/legacy\.rs", open(name).read()))
    if not sources:
        fail("font8x8's src/legacy.rs not found in target/x86_64-unknown-none/*/deps (build first)")
    source = open(sorted(sources)[-1]).read()
    table = source[source.index("pub const BASIC_LEGACY"):]
    table = table[table.index("= [") + 3:]
    table = table[:table.index("];")]
    rows = []
    for entry in re.findall(r"NOTHING_TO_DISPLAY|\[[^\]]*\]", table):
        if entry == "NOTHING_TO_DISPLAY":
            rows.append((0,) * 8)
        else:
            rows.append(tuple(int(value, 16) for value in re.findall(r"0x[0-9A-Fa-f]+", entry)))
    glyphs = {}
    for code in range(ord(" "), ord("~") + 1):
        glyphs.setdefault(rows[code], chr(code))
    return glyphs


def fail(why):
    print(f"screen (uefi) ... FAILED ({why})")
    sys.exit(1)


def wait_for_prompt(qemu, deadline):
    """Serial output up to the shell prompt, or None."""
    seen = b""
    while time.time() < deadline:
        ready, _, _ = select.select([qemu.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(qemu.stdout.fileno(), 4096)
            if not chunk:
                return None
            seen += chunk
            if b"incroos> " in seen[-4096:]:
                return seen.decode("utf-8", "replace")
    return None


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
    glyphs = font_glyphs()
    try:
        serial = wait_for_prompt(qemu, time.time() + 120)
        if serial is None:
            fail("no shell prompt on serial within 120 s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(SOCKET)
        sock.recv(65536)  # greeting
        qmp(sock, "qmp_capabilities")
        # The console writes each text to serial first, then draws it on
        # the screen: the prompt on serial may still be on its way to the
        # framebuffer, so look again a few times before judging.
        for attempt in range(10):
            why = screenshot(sock, glyphs, serial)
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


def screenshot(sock, glyphs, serial):
    """Takes a screendump into PNG; returns why it does not show the end of
    `serial` with the prompt and cursor on its last text row, or None."""
    if os.path.exists(PPM):
        os.remove(PPM)
    reply = qmp(sock, "screendump", filename=os.path.abspath(PPM))
    if "error" in reply:
        fail(f"screendump: {reply['error']}")
    for _ in range(50):
        if os.path.exists(PPM) and os.path.getsize(PPM) > 0:
            break
        time.sleep(0.1)
    return check(PPM, glyphs, serial)


def read_cells(width, height, rgb, glyphs):
    """The screen as text rows; a cell matching no glyph reads as NUL. Also
    the background colour of each cell, row by row."""
    def pixel(x, y):
        at = (y * width + x) * 3
        return tuple(rgb[at:at + 3])

    rows, backgrounds = [], []
    for row in range(height // CELL_H):
        text, colours = "", []
        for column in range(width // CELL_W):
            pixels = [[pixel(column * CELL_W + x, row * CELL_H + y) for x in range(CELL_W)]
                      for y in range(CELL_H)]
            # Two colours at most: each in turn as the background, the
            # other as the glyph (some glyphs, such as 0, are mostly lit).
            colours_here = sorted({colour for line in pixels for colour in line})
            character, background = "\0", colours_here[0]
            if len(colours_here) == 1:
                character = " "
            for candidate in colours_here if len(colours_here) == 2 else []:
                bits = [sum(1 << x for x in range(CELL_W) if line[x] != candidate) for line in pixels]
                doubled = all(bits[2 * n] == bits[2 * n + 1] for n in range(CELL_H // 2))
                if doubled and tuple(bits[0::2]) in glyphs:
                    character, background = glyphs[tuple(bits[0::2])], candidate
                    break
            text += character
            colours.append(background)
        rows.append(text)
        backgrounds.append(colours)
    return rows, backgrounds


def words(text):
    """Whitespace-separated words, as the screen can show them: escape
    sequences (the serial line echo) dropped, other characters as `?`."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    text = "".join(c if " " <= c <= "~" or c.isspace() else "?" for c in text)
    return text.split()


def check(ppm, glyphs, serial):
    width, height, rgb = read_ppm(ppm)
    write_png(PNG, width, height, rgb)
    os.remove(ppm)
    rows, backgrounds = read_cells(width, height, rgb, glyphs)
    shown = [n for n, text in enumerate(rows) if text.strip()]
    if not shown:
        return f"no text on screen (see {PNG})"
    for n in shown:
        if "\0" in rows[n]:
            cells = "".join("#" if c == "\0" else c for c in rows[n]).rstrip()
            return f"text row {n} holds cells that are no glyph of the font (#): {cells!r} (see {PNG})"
    last = shown[-1]
    # The prompt, then the cursor: a blank cell in the cursor's colours.
    if not rows[last].startswith("incroos> ") or rows[last][9:].strip() \
            or backgrounds[last][9] != CURSOR_BACKGROUND:
        return f"last text row is not the prompt and cursor: {rows[last].rstrip()!r} (see {PNG})"
    # Word for word the end of what serial got since the console reached
    # the screen (the top row may begin inside a word that wrapped).
    attached = serial.rfind("framebuffer console:")
    if attached < 0:
        return "serial never said 'framebuffer console:'"
    expected = words(serial[attached:])
    on_screen = words("\n".join(rows[n] for n in range(shown[0], last + 1)))
    tail = expected[len(expected) - len(on_screen):]
    if len(on_screen) > len(expected) or tail[1:] != on_screen[1:] \
            or not tail[0].endswith(on_screen[0]):
        mismatch = next((n for n, (a, b) in enumerate(zip(tail, on_screen)) if a != b), 0)
        return (f"screen text differs from serial at word {mismatch} of {len(on_screen)}: "
                f"screen {on_screen[mismatch:mismatch + 6]}, serial {tail[mismatch:mismatch + 6]} (see {PNG})")
    print(f"screen (uefi) ... ok ({width}x{height}; {len(shown)} text rows, {len(on_screen)} words "
          f"read back as serial has them, prompt and cursor on row {last}; {PNG})")
    return None


main()
