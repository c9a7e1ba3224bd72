"""The default store: one SQLite file under BOXNET_ROOT, written through (WAL, synchronous=NORMAL).

Every write is its own transaction, so a daemon killed at any instant leaves the ledger consistent.
"""

from __future__ import annotations

import sqlite3
import threading

from boxnet.errors import Conflict


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, rev INTEGER NOT NULL)"
            )

    def get(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            row = self._db.execute("SELECT value, rev FROM kv WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, key: str, value: str, expect_revision: int | None = None) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT rev FROM kv WHERE key = ?", (key,)).fetchone()
                current = row[0] if row else 0
                if expect_revision is not None and current != expect_revision:
                    raise Conflict(f"store key {key!r} changed (revision {current}, expected {expect_revision})")
                revision = current + 1
                self._db.execute(
                    "INSERT INTO kv (key, value, rev) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, rev = excluded.rev",
                    (key, value, revision),
                )
                self._db.execute("COMMIT")
                return revision
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    def list(self, prefix: str) -> list[tuple[str, str]]:
        upper = prefix + "\U0010ffff"
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper)
            ).fetchall()
        return [(k, v) for k, v in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
