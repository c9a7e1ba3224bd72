"""Watches container shims through pidfds and reports each one's end, with the container's exit status."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def read_exit_status(state_dir: str) -> tuple[int, str]:
    """The container's exit code as its shim recorded it; 137 (killed) when no record was left."""
    try:
        with open(os.path.join(state_dir, "exit.json")) as handle:
            data = json.load(handle)
        return int(data.get("exit_code", 137)), data.get("error", "")
    except (OSError, ValueError):
        return 137, "the container's supervisor ended without recording an exit status"


class Monitor:
    def __init__(self, on_exit: Callable[[str], None]) -> None:
        self._on_exit = on_exit
        self._poll = select.poll()
        self._by_fd: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="boxnet-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)

    def watch(self, container_id: str, shim_pid: int) -> bool:
        """Starts watching a shim; False when it has already ended (the caller handles that at once)."""
        try:
            fd = os.pidfd_open(shim_pid)
        except ProcessLookupError:
            return False
        with self._lock:
            self._by_fd[fd] = (container_id, shim_pid)
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")
        return True

    def _run(self) -> None:
        while not self._stopping:
            for fd, _ in self._poll.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    container_id, shim_pid = self._by_fd.pop(fd)
                    self._poll.unregister(fd)
                os.close(fd)
                # Adopted after a restart, or already reaped by subprocess's own clean-up: both are fine.
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(shim_pid, os.WNOHANG)
                try:
                    self._on_exit(container_id)
                except Exception:
                    log.exception("handling the end of container %s failed", container_id[:12])
