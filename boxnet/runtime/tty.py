"""Terminals from a container's own devpts instance: `ttyname` works inside, and no host terminal is seen."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441  # the slave from the master itself, with no path to look up (Linux 4.13)


def open_pty(ptmx: str, size: list[int] | None = None) -> tuple[int, int]:
    """(master, slave) of a new pseudo-terminal of the devpts instance ptmx belongs to, with its size
    ([rows, columns]) set when given."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        if size and all(size):
            set_size(master, size[0], size[1])
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
