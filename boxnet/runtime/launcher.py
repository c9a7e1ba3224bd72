"""Starting a container's shim and learning its PID; checking whether a recorded shim is still ours."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

from boxnet.errors import Internal, InvalidArgument

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


def spawn_shim(state_dir: str, spec: dict) -> tuple[int, int, int]:
    """Writes the spec and starts the shim; returns (shim pid, its start time, the container's pid)."""
    with open(os.path.join(state_dir, "config.json"), "w") as handle:
        json.dump(spec, handle)
    ready_r, ready_w = os.pipe()
    try:
        with open(os.path.join(state_dir, "shim.log"), "ab") as shim_log:
            shim = subprocess.Popen(
                [sys.executable, "-m", "boxnet.runtime.shim", state_dir, str(ready_w)],
                pass_fds=[ready_w], start_new_session=True, close_fds=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=shim_log,
            )  # fmt: skip
    finally:
        os.close(ready_w)
    shim_start = proc_start_time(shim.pid)
    try:
        message = _read_ready(ready_r)
    finally:
        os.close(ready_r)
    if "pid" not in message:
        shim.wait()
        error = message.get("error") or _shim_failure(state_dir) or "the container did not start"
        if error.startswith("exec "):
            raise InvalidArgument(error)
        raise Internal(error)
    # Whoever reaps the shim later (subprocess's own clean-up or the monitor) does not matter: the monitor
    # watches a pidfd, which says when the shim ended, and the shim leaves the exit status in exit.json.
    return shim.pid, shim_start, int(message["pid"])


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

