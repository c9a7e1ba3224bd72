"""Restart policies in time: a container its policy brings back is started again after a back-off, as Docker
does it (100 ms, doubling with each restart in a row, at most a minute; a container that ran at least 10 s
starts its back-off afresh). The decision itself is RestartPolicy.restarts_after."""

from __future__ import annotations

import threading
from collections.abc import Callable

FIRST_DELAY = 0.1
LONGEST_DELAY = 60.0
RAN_LONG_ENOUGH = 10.0


def backoff(restarts: int, ran_seconds: float) -> float:
    if ran_seconds >= RAN_LONG_ENOUGH:
        return FIRST_DELAY
    return min(FIRST_DELAY * 2 ** min(restarts, 16), LONGEST_DELAY)


class RestartScheduler:
    def __init__(self, restart: Callable[[str, bool], None]) -> None:
        self._restart = restart
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    def schedule(self, container_id: str, restarts: int, ran_seconds: float, with_the_daemon: bool = False) -> None:
        """with_the_daemon: started as the daemon starts (policy `always` brings back even what was stopped
        by hand)."""
        timer = threading.Timer(backoff(restarts, ran_seconds), self._fire, args=(container_id, with_the_daemon))
        timer.daemon = True
        with self._lock:
            previous = self._timers.pop(container_id, None)
            self._timers[container_id] = timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def _fire(self, container_id: str, with_the_daemon: bool) -> None:
        with self._lock:
            self._timers.pop(container_id, None)
        self._restart(container_id, with_the_daemon)

    def cancel(self, container_id: str) -> None:
        with self._lock:
            timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()

    def pending(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._timers

    def close(self) -> None:
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
