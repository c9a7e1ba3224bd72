"""An in-memory store with the same semantics as the SQLite one, for unit tests."""

from __future__ import annotations

import threading

from boxnet.errors import Conflict


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: str, expect_revision: int | None = None) -> int:
        with self._lock:
            current = self._data.get(key, ("", 0))[1]
            if expect_revision is not None and current != expect_revision:
                raise Conflict(f"store key {key!r} changed (revision {current}, expected {expect_revision})")
            self._data[key] = (value, current + 1)
            return current + 1

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def list(self, prefix: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted((k, v) for k, (v, _) in self._data.items() if k.startswith(prefix))

    def close(self) -> None:
        pass
