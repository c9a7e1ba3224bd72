"""Starting a container's shim and learning its PID; checking whether a recorded shim is still ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from boxnet.errors import Internal, InvalidArgument
from boxnet.kernel.readiness import readable
from boxnet.runtime.forkserver import ForkServerClient
from boxnet.runtime.procs import proc_start_time
from boxnet.runtime.shim import INVALID_SETUP

START_TIMEOUT = 30.0


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
            if error.startswith(("exec ", INVALID_SETUP)):
                raise InvalidArgument(error)
            raise Internal(error)
        shim_pid = int(message["shim_pid"])
        return shim_pid, proc_start_time(shim_pid), int(message["pid"])

    def close(self) -> None:
        if self._forkserver is not None:
            self._forkserver.close()


def read_shim_record(state_dir: str) -> dict | None:
    """What a shim wrote of itself as it began (shim.json): its pid and start time, for a daemon that died
    before it learnt them."""
    try:
        with open(os.path.join(state_dir, "shim.json")) as handle:
            record = json.load(handle)
        return {"shim_pid": int(record["shim_pid"]), "shim_start_time": int(record["shim_start_time"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_ready(fd: int) -> dict:
    data = b""
    while True:
        ready = readable([fd], START_TIMEOUT)
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

