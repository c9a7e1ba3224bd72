"""Ending what a dead daemon left running, from its own ledger: each container's shim and init, by PID,
checked by the shim's start time so that a reused PID is left alone (the init dies with its shim anyway).
A container whose start the daemon did not finish has no PIDs in its record: its shim wrote its own
(shim.json in the container's directory) before it made anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal

from boxnet.runtime.launcher import read_shim_record
from boxnet.runtime.procs import proc_start_time


def end_recorded_containers(root: str) -> int:
    """Kills the running containers recorded under a daemon's state directory; returns how many."""
    database = os.path.join(root, "boxnet.db")
    if not os.path.exists(database):
        return 0
    from boxnet.engine.context import EngineConfig
    from boxnet.store.sqlite import SqliteStore

    store = SqliteStore(database)
    try:
        records = [json.loads(value) for _, value in store.list("containers/")]
    finally:
        store.close()
    ended = 0
    for record in records:
        state = record.get("state", {})
        shim_pid, shim_start, pid = state.get("shim_pid", 0), state.get("shim_start_time"), state.get("pid", 0)
        if not shim_pid and record.get("id"):
            shim = read_shim_record(EngineConfig(root).container_dir(record["id"]))
            if shim:
                shim_pid, shim_start = shim["shim_pid"], shim["shim_start_time"]
        if shim_pid and proc_start_time(shim_pid) == shim_start:
            for victim in (pid, shim_pid) if pid > 0 else (shim_pid,):  # kill(0) would signal our own group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
            ended += 1
    return ended
