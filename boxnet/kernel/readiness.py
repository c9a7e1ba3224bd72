"""Waiting for file descriptors to become readable, with poll(2): the daemon holds a socket per published
port, so its descriptors go past 1024, which select(2) cannot watch ("filedescriptor out of range")."""

from __future__ import annotations

import select
from collections.abc import Iterable
from typing import Protocol


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def readable(sources: Iterable[int | _HasFileno], timeout: float | None = None) -> list[int]:
    """The descriptors among sources that are readable (or at end of file, or in error) within timeout
    seconds (None: however long it takes)."""
    poller = select.poll()
    for source in sources:
        poller.register(source, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout is None else max(timeout, 0) * 1000)]
