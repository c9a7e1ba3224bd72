"""Processes by PID, told apart from a later process that reused the PID by their start time."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def proc_start_time(pid: int) -> int:
    """The start time of a process in clock ticks since boot (stat field 22), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return 0
    # The command name may hold spaces and parentheses: fields restart after the last ')'.
    return int(raw[raw.rindex(b")") + 2 :].split()[19])


def wait_gone(pid: int, start_time: int, timeout: float = 5.0) -> bool:
    """Waits until the process that had this pid and start time is gone."""
    deadline = time.monotonic() + timeout
    while proc_start_time(pid) == start_time:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the thread that spawned it ends (so spawn from a thread that lives
    as long as the child should: a supervisor's)."""
    from boxnet.kernel import libc

    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above ran
        os._exit(1)


def dies_with_its_thread(argv: list[str]) -> list[str]:
    """argv, run so that the kernel kills it when the thread that started it ends (PR_SET_PDEATHSIG, which
    setpriv sets before it execs argv, and which nsenter's exec keeps): a capture tool or a trace monitor must
    not outlive a daemon that was killed. Start it from the thread that also waits for it."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


def end_child(process: subprocess.Popen | None, grace: float = 5) -> None:
    """A child of ours ends: SIGTERM, then SIGKILL after `grace` seconds; reaped. Nothing if it already ended."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
