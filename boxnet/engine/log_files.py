"""A container's log file (container.log: one JSON entry per line, written by its shim), read from an offset
and followed while the container runs; for `logs`, `attach` and a service's task logs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine
    from boxnet.model.container import Container


def log_path(engine: Engine, container: Container) -> str:
    return os.path.join(engine.config.container_dir(container.id), "container.log")


def open_log(path: str) -> Any:
    """The container's log, opened once: its entries stay readable after an --rm container's files are gone."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def read_log_lines(log: Any, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete entries from offset to the end, and the offset after the last of them."""
    if log is None:
        return [], offset
    chunks = []
    position = offset
    while chunk := os.pread(log.fileno(), 1 << 20, position):
        chunks.append(chunk)
        position += len(chunk)
    data = b"".join(chunks)
    complete = data.rfind(b"\n") + 1
    entries = [json.loads(line) for line in data[:complete].splitlines() if line.strip()]
    return entries, offset + complete


def follow(engine: Engine, container: Container, log: Any, offset: int, emit: Callable[[dict[str, Any]], None],
           until_started_and_ended: bool = False, interval: float = 0.05) -> None:  # fmt: skip
    """Sends what the log gains until the container stops running (with until_started_and_ended, a
    container not started yet is waited for first, as `run` attaches before it starts)."""
    started = container.state.status == "running"
    while True:
        alive = container.id in engine.view.containers
        status = container.state.status
        started = started or status == "running"
        entries, offset = read_log_lines(log, offset)
        for entry in entries:
            emit(entry)
        waiting = until_started_and_ended and status in ("created", "starting") and not started
        if not alive or (status != "running" and not waiting):
            entries, offset = read_log_lines(log, offset)  # what the last moments wrote
            for entry in entries:
                emit(entry)
            return
        time.sleep(interval)


def entries(engine: Engine, container: Container, tail: int | None, keep_following: bool,
            interval: float = 0.05) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The log's entries (the last `tail` of them, all with None), then with keep_following what it gains
    while the container runs."""
    log = open_log(log_path(engine, container))
    try:
        found, offset = read_log_lines(log, 0)
        if tail is not None:
            found = found[-tail:] if tail else []
        yield from found
        while keep_following:
            running = container.id in engine.view.containers and container.state.status == "running"
            found, offset = read_log_lines(log, offset)
            yield from found
            if not running:
                yield from read_log_lines(log, offset)[0]
                return
            time.sleep(interval)
    finally:
        if log is not None:
            log.close()
