"""Helpers the test scripts share for a QEMU started with its serial port
in a file and its monitor on a Unix socket (see smp-check.py,
capture-acpi.py)."""
import socket
import time

PROMPT = "incroos> "


def read_serial(log_path):
    """The serial log so far, as text with CRs dropped ('' if none yet)."""
    try:
        with open(log_path, "rb") as log:
            return log.read().decode("utf-8", "replace").replace("\r", "")
    except FileNotFoundError:
        return ""


def wait_for_prompt(log_path, seconds=240):
    """The serial log once the shell's prompt appears in it, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = read_serial(log_path)
        if PROMPT in text:
            return text
        time.sleep(0.2)
    return None


def read_until_prompt(monitor):
    """Everything the monitor sends up to and including its next prompt."""
    data = b""
    while not data.endswith(b"(qemu) "):
        chunk = monitor.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def connect(path, timeout=20):
    """A connection to the monitor socket at `path`, past its banner, or
    None if QEMU never opened it."""
    for _ in range(100):
        try:
            monitor = socket.socket(socket.AF_UNIX)
            monitor.connect(path)
            monitor.settimeout(timeout)
            read_until_prompt(monitor)
            return monitor
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.1)
    return None


def command(monitor, line):
    """Sends one monitor command and returns its answer (none for quit)."""
    monitor.sendall(line.encode() + b"\n")
    if line == "quit":
        return b""
    return read_until_prompt(monitor)
