#!/usr/bin/env python3
"""Boots the shell ISO under OVMF (UEFI), waits for the shell prompt on
serial, takes a QEMU `screendump` of the framebuffer over QMP, and reads
the screen back as text: every cell must be, pixel for pixel, a glyph the
kernel draws, blended into one of its colour pairs exactly as
display::text_framebuffer does. It does so twice: at the mode GRUB picks
by itself (800x600 under OVMF: font8x8 with doubled rows in 8x16 cells)
and at 1280x800, 32 bpp (Noto Sans Mono 20 px in 9x20 cells), on a copy
of the ISO whose grub.cfg asks for that mode. The font for each size is
chosen by the kernel's rule (display::font, repeated below) and must
give the grid the kernel reported on serial. The glyphs come from the
files the kernel was built with: font8x8's table and the Noto rasters
the build embedded (the build's dependency files name both; no network,
no cargo call).

The text must be the end of what the kernel wrote to serial since the
console reached the screen, word for word (the screen breaks long lines
at words, serial does not), ending in the prompt "incroos> " with the
cursor cell (white on red) after it; the margins no cell covers must be
black. Keeps the screenshots as build/test-logs/screen-uefi.png and
screen-uefi-1280x800.png for people to look at."""

import glob
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib

ISO = sys.argv[1]
LOGS = "build/test-logs"
SOCKET = os.path.join(LOGS, "qmp.sock")
# (the mode grub.cfg asks for, None for GRUB's own choice; screenshot name)
RUNS = [(None, "screen-uefi"), ("1280x800x32", "screen-uefi-1280x800")]
BUILD_DEPS = "target/x86_64-unknown-none/*/deps"

# display::font: each face at a whole-number scale, narrowest cell first;
# the largest cell leaving MIN_COLUMNS columns and MIN_ROWS rows wins.
FONTS = [("font8x8", 8, (1, 2)), ("noto", 20, (1, 1)), ("noto", 24, (1, 1)),
         ("noto", 32, (1, 1)), ("noto", 20, (2, 2)), ("noto", 24, (2, 2)),
         ("noto", 32, (2, 2))]
MIN_COLUMNS, MIN_ROWS = 125, 25
# display::text_framebuffer::colors: (foreground, background) of each Color.
COLOURS = {
    "Normal": ((0xC0, 0xC0, 0xC0), (0, 0, 0)),
    "Warning": ((0xFF, 0xFF, 0x55), (0, 0, 0)),
    "Error": ((0xFF, 0xFF, 0xFF), (0xAA, 0, 0)),
    "Good": ((0x55, 0xFF, 0x55), (0, 0, 0)),
}
PRINTABLE = [chr(code) for code in range(ord(" "), ord("~") + 1)]


def dependency_files(crate, pattern):
    """Paths matching `pattern` in the dependency files of `crate`'s build."""
    found = set()
    for name in glob.glob(f"{BUILD_DEPS}/{crate}-*.d"):
        found.update(re.findall(pattern, open(name).read()))
    return found


def font8x8_rasters():
    """{char: 8 rows of 8 coverage values}, from the font8x8 source the
    kernel was built with (bit 0 of a row is its leftmost pixel)."""
    sources = dependency_files("font8x8", r"\S+/src/legacy\.rs")
    if not sources:
        fail(f"font8x8's src/legacy.rs not found in {BUILD_DEPS} (build first)")
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
    return {c: [[255 if rows[ord(c)][y] >> x & 1 else 0 for x in range(8)] for y in range(8)]
            for c in PRINTABLE}


def noto_rasters(height):
    """{char: rows of coverage values} of the Noto Sans Mono regular cut
    `height` px high, from the blob the kernel embedded: the glyphs of
    U+0020..U+007E back to back, each `height` rows of the raster width."""
    blobs = dependency_files("noto_sans_mono_bitmap",
                             rf"\S+/regular_size_{height}_unicode-basic-latin\.bin")
    if not blobs:
        fail(f"the {height} px Noto raster is not in the kernel's build ({BUILD_DEPS})")
    path = sorted(blobs)[-1]
    blob = open(path, "rb").read()
    width = len(blob) // (len(PRINTABLE) * height)
    size = width * height
    if width == 0 or size * len(PRINTABLE) != len(blob):
        fail(f"{path}: {len(blob)} bytes are no whole number of {height} px glyphs")
    return {c: [list(blob[n * size + y * width:n * size + (y + 1) * width]) for y in range(height)]
            for n, c in enumerate(PRINTABLE)}


def font_for(width, height):
    """The font the kernel draws a `width` x `height` screen in: its name,
    its cell size and {char: the cell's rows of coverage values}."""
    rasters = {}

    def load(face, size):
        if (face, size) not in rasters:
            rasters[face, size] = font8x8_rasters() if face == "font8x8" else noto_rasters(size)
        return rasters[face, size]

    def cell(face, size, scale):
        glyph = load(face, size)[" "]
        return len(glyph[0]) * scale[0], len(glyph) * scale[1]

    chosen = FONTS[0]
    for face, size, scale in reversed(FONTS):
        cell_width, cell_height = cell(face, size, scale)
        if width // cell_width >= MIN_COLUMNS and height // cell_height >= MIN_ROWS:
            chosen = (face, size, scale)
            break
    face, size, scale = chosen
    glyphs = {c: [[coverage for coverage in row for _ in range(scale[0])]
                  for row in raster for _ in range(scale[1])]
              for c, raster in load(face, size).items()}
    name = "font8x8, rows doubled" if face == "font8x8" else f"Noto Sans Mono {size} px"
    if scale[0] > 1:
        name += f" x{scale[0]}"
    return name, cell(face, size, scale), glyphs


def blend(foreground, background, coverage):
    """display::text_framebuffer::blend: each channel rounded to nearest."""
    return bytes((f * coverage + b * (255 - coverage) + 127) // 255
                 for f, b in zip(foreground, background))


def cell_images(glyphs):
    """{a cell's RGB bytes, row by row: (char, colour name)} for every
    glyph in every colour pair: each cell the kernel may have drawn."""
    images = {}
    for colour, (foreground, background) in COLOURS.items():
        shades = [blend(foreground, background, coverage) for coverage in range(256)]
        for c, rows in glyphs.items():
            image = b"".join(shades[coverage] for row in rows for coverage in row)
            # A blank cell on black looks the same in three pairs: Normal.
            images.setdefault(image, (c, colour))
    return images


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


def grub_mode_iso(mode):
    """A copy of ISO whose grub.cfg asks for the framebuffer `mode` under
    UEFI: the same kernel, modules and menu, rebuilt by grub-mkrescue as
    the Makefile builds the ISO."""
    target = os.path.join(LOGS, f"screen-{mode}.iso")
    tree = target + ".dir"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", ISO, "-extract", "/boot", tree + "/boot"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["chmod", "-R", "u+w", tree], check=True)
    grub = os.path.join(tree, "boot", "grub")
    config = open(os.path.join(grub, "grub.cfg")).read()
    # Keep only the configuration: grub-mkrescue adds GRUB itself again.
    shutil.rmtree(grub)
    os.makedirs(grub)
    # GRUB reads gfxpayload at `boot`: set it just before each entry boots.
    patched, entries = re.subn(
        r"^(\s*)boot$",
        rf'\1if [ "$grub_platform" = "efi" ]; then set gfxpayload={mode}; fi\n\1boot',
        config, flags=re.M)
    if not entries:
        fail(f"no 'boot' line in {ISO}'s grub.cfg to set gfxpayload before")
    with open(os.path.join(grub, "grub.cfg"), "w") as f:
        f.write(patched)
    made = subprocess.run(["grub-mkrescue", "-o", target, tree], capture_output=True, text=True)
    shutil.rmtree(tree)
    if made.returncode != 0:
        fail(f"grub-mkrescue for {mode}: {made.stderr.strip()[-300:]}")
    return target


def main():
    os.makedirs(LOGS, exist_ok=True)
    for mode, name in RUNS:
        iso = ISO if mode is None else grub_mode_iso(mode)
        try:
            boot_and_check(iso, mode or "GRUB's mode", name)
        finally:
            if iso != ISO:
                os.remove(iso)


def boot_and_check(iso, mode, name):
    """Boots `iso` under OVMF and checks its screen (see the module's doc)."""
    ppm, png = os.path.join(LOGS, name + ".ppm"), os.path.join(LOGS, name + ".png")
    for stale in (SOCKET, ppm):
        if os.path.exists(stale):
            os.remove(stale)
    qemu = subprocess.Popen(
        ["scripts/qemu.sh", iso, "uefi", "256M", "-display", "none", "-monitor", "none",
         "-serial", "stdio", "-qmp", f"unix:{SOCKET},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    why = None
    try:
        serial = wait_for_prompt(qemu, time.time() + 120)
        if serial is None:
            fail(f"{mode}: no shell prompt on serial within 120 s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(SOCKET)
        sock.recv(65536)  # greeting
        qmp(sock, "qmp_capabilities")
        # The console writes each text to serial first, then draws it on
        # the screen: the prompt on serial may still be on its way to the
        # framebuffer, so look again a few times before judging.
        for attempt in range(10):
            why = screenshot(sock, serial, ppm, png)
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
        fail(f"{mode}: {why}")


def screenshot(sock, serial, ppm, png):
    """Takes a screendump into `png`; returns why it does not show the end
    of `serial` with the prompt and cursor on its last text row, or None."""
    if os.path.exists(ppm):
        os.remove(ppm)
    reply = qmp(sock, "screendump", filename=os.path.abspath(ppm))
    if "error" in reply:
        fail(f"screendump: {reply['error']}")
    for _ in range(50):
        if os.path.exists(ppm) and os.path.getsize(ppm) > 0:
            break
        time.sleep(0.1)
    return check(ppm, png, serial)


def read_cells(width, rgb, grid, cell, images):
    """The screen's `grid` (columns, rows) of cells as text rows, a cell
    that is no glyph the kernel draws read as NUL; and each cell's colour
    pair's name (None for NUL)."""
    (columns, rows), (cell_width, cell_height) = grid, cell
    line, stride = cell_width * 3, width * 3
    texts, colours = [], []
    for row in range(rows):
        text, names = "", []
        for column in range(columns):
            first = (row * cell_height * width + column * cell_width) * 3
            image = b"".join(rgb[first + y * stride:first + y * stride + line]
                             for y in range(cell_height))
            character, colour = images.get(image, ("\0", None))
            text += character
            names.append(colour)
        texts.append(text)
        colours.append(names)
    return texts, colours


def margin_pixels(width, height, rgb, covered):
    """How many pixels right of or below the `covered` (width, height)
    area at the top left are not black."""
    covered_width, covered_height = covered
    lit = 0
    for y in range(height):
        start = (y * width + (covered_width if y < covered_height else 0)) * 3
        strip = rgb[start:(y + 1) * width * 3]
        lit += sum(1 for at in range(0, len(strip), 3) if strip[at:at + 3] != b"\0\0\0")
    return lit


def words(text):
    """Whitespace-separated words, as the screen can show them: escape
    sequences (the serial line echo) dropped, other characters as `?`."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    text = "".join(c if " " <= c <= "~" or c.isspace() else "?" for c in text)
    return text.split()


def check(ppm, png, serial):
    width, height, rgb = read_ppm(ppm)
    write_png(png, width, height, rgb)
    os.remove(ppm)
    reported = re.findall(
        r"framebuffer console: (\d+)x(\d+) pixels, (\d+) bpp, (\d+)x(\d+) characters", serial)
    if not reported:
        return "serial never said 'framebuffer console: ...'"
    screen_width, screen_height, bpp, columns, rows = map(int, reported[-1])
    if (screen_width, screen_height) != (width, height):
        return f"the kernel reported {screen_width}x{screen_height}, the screenshot is {width}x{height}"
    if bpp not in (24, 32):
        return f"{bpp} bpp: only 24 and 32 bpp keep the 8-bit channels this test compares"
    name, cell, glyphs = font_for(width, height)
    grid = (width // cell[0], height // cell[1])
    if (columns, rows) != grid:
        return (f"the kernel drew {columns}x{rows} characters; {name} in {cell[0]}x{cell[1]} "
                f"cells, its font for {width}x{height}, gives {grid[0]}x{grid[1]}")
    lit = margin_pixels(width, height, rgb, (grid[0] * cell[0], grid[1] * cell[1]))
    if lit:
        return f"{lit} pixels right of or below the text grid are not black (see {png})"
    texts, colours = read_cells(width, rgb, grid, cell, cell_images(glyphs))
    shown = [n for n, text in enumerate(texts) if text.strip()]
    if not shown:
        return f"no text on screen (see {png})"
    for n in shown:
        if "\0" in texts[n]:
            cells = "".join("#" if c == "\0" else c for c in texts[n]).rstrip()
            return (f"text row {n} holds cells (#) that are no glyph of {name} in the "
                    f"console's colours: {cells!r} (see {png})")
    last = shown[-1]
    # The prompt, then the cursor: a blank cell in the cursor's colours.
    if not texts[last].startswith("incroos> ") or texts[last][9:].strip() \
            or colours[last][9] != "Error":
        return f"last text row is not the prompt and cursor: {texts[last].rstrip()!r} (see {png})"
    # Word for word the end of what serial got since the console reached
    # the screen (the top row may begin inside a word that wrapped).
    attached = serial.rfind("framebuffer console:")
    expected = words(serial[attached:])
    on_screen = words("\n".join(texts[n] for n in range(shown[0], last + 1)))
    tail = expected[len(expected) - len(on_screen):]
    if len(on_screen) > len(expected) or tail[1:] != on_screen[1:] \
            or not tail[0].endswith(on_screen[0]):
        mismatch = next((n for n, (a, b) in enumerate(zip(tail, on_screen)) if a != b), 0)
        return (f"screen text differs from serial at word {mismatch} of {len(on_screen)}: "
                f"screen {on_screen[mismatch:mismatch + 6]}, serial {tail[mismatch:mismatch + 6]} (see {png})")
    print(f"screen (uefi) ... ok ({width}x{height}, {bpp} bpp: {name} in {cell[0]}x{cell[1]} cells, "
          f"{grid[0]}x{grid[1]}; {len(shown)} text rows, {len(on_screen)} words read back as serial "
          f"has them, prompt and cursor on row {last}; {png})")
    return None


main()
