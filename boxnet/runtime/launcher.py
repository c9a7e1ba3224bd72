"""Starting a container's shim and learning its PID; checking whether a recorded shim is still ours."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

from boxnet.errors import Internal, InvalidArgument
from boxnet.runtime.forkserver import ForkServerClient

START_TIMEOUT = 30.0


def proc_start_time(pid: int) -> int:
    """The start time of a process in clock ticks since boot (stat field 22), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return 0
    # The command name may hold spaces and parentheses: fields restart after the last ')'.
    return int(raw[raw.rindex(b")") + 2 :].split()[19])


class ShimLauncher:
    """Starts shims through the fork-server (about a millisecond each), or a fresh interpreter if asked."""

    def __init__(self, use_forkserver: bool = True) -> None:
        self._forkserver = ForkServerClient() if use_forkserver else None

    def spawn(self, state_dir: str, spec: dict) -> tuple[int, int, int]:
        """Writes the spec and starts the shim; returns (shim pid, its start time, the container's pid)."""
        with open(os.path.join(state_dir, "config.json"), "w") as handle:
            json.dump(spec, handle)
        ready_r, ready_w = os.pipe()
        try:
            if self._forkserver is not None:
                self._forkserver.request(state_dir, ready_w)
            else:
                subprocess.Popen(
                    [sys.executable, "-m", "boxnet.runtime.shim", state_dir, str(ready_w)],
                    pass_fds=[ready_w], start_new_session=True, close_fds=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
        finally:
            os.close(ready_w)
        try:
            message = _read_ready(ready_r)
        finally:
            os.close(ready_r)
        if "pid" not in message:
            error = message.get("error") or _shim_failure(state_dir) or "the container did not start"
            if error.startswith("exec "):
                raise InvalidArgument(error)
            raise Internal(error)
        shim_pid = int(message["shim_pid"])
        return shim_pid, proc_start_time(shim_pid), int(message["pid"])

    def close(self) -> None:
        if self._forkserver is not None:
            self._forkserver.close()


def _read_ready(fd: int) -> dict:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], START_TIMEOUT)
        if not ready:
            return {"error": f"the shim sent nothing within {START_TIMEOUT:.0f}s"}
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {"error": f"the shim sent {data[:200]!r}"}


def _shim_failure(state_dir: str) -> str:
    try:
        with open(os.path.join(state_dir, "shim.log"), errors="replace") as handle:
            lines = handle.read().strip().splitlines()
        return lines[-1] if lines else ""
    except OSError:
        return ""

