"""An in-memory cluster store with etcd's semantics (revisions, transactions, leases, watches, compaction),
for unit tests of what builds on it: IPAM leases, node liveness, watchers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from boxnet.store.cluster import Compacted, Compare, Delete, Entry, Event, Operation, Put, StoreUnavailable


class MemoryClusterStore:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._history: list[Event] = []
        self._revision = 1
        self._compacted = 0
        self._leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, deadline)
        self._next_lease = 1000
        self._changed = threading.Condition()
        self.available = True  # tests flip it to play a store that is down

    # ---- helpers -----------------------------------------------------------------------------------
    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("the cluster store is unavailable")
        now = self._clock()
        for lease, (_, deadline) in list(self._leases.items()):
            if deadline <= now:
                self._drop_lease(lease)

    def _drop_lease(self, lease: int) -> None:
        self._leases.pop(lease, None)
        doomed = [key for key, entry in self._entries.items() if entry.lease == lease]
        if doomed:
            self._revision += 1
            for key in doomed:
                self._remove(key)

    def _write(self, key: str, value: str, lease: int) -> None:
        if lease and lease not in self._leases:
            raise StoreUnavailable(f"lease {lease} not found")
        old = self._entries.get(key)
        self._entries[key] = Entry(key, value, self._revision, old.create_revision if old else self._revision, lease)
        self._history.append(Event("put", key, value, self._revision))

    def _remove(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._history.append(Event("delete", key, "", self._revision))

    def _holds(self, compare: Compare) -> bool:
        entry = self._entries.get(compare.key)
        actual: int | str = {
            "create": entry.create_revision if entry else 0, "mod": entry.mod_revision if entry else 0,
            "value": entry.value if entry else "", "lease": entry.lease if entry else 0,
        }[compare.target]  # fmt: skip
        return actual == compare.expected

    def _apply(self, operations: list[Operation]) -> None:
        if not operations:
            return
        self._revision += 1
        for operation in operations:
            if isinstance(operation, Put):
                self._write(operation.key, operation.value, operation.lease)
            elif operation.prefix:
                for key in [k for k in self._entries if k.startswith(operation.key)]:
                    self._remove(key)
            else:
                self._remove(operation.key)
        self._changed.notify_all()

    # ---- the protocol ------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        with self._changed:
            self._check()
            return self._entries.get(key)

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        with self._changed:
            self._check()
            return sorted((e for k, e in self._entries.items() if k.startswith(prefix)), key=lambda e: e.key), \
                self._revision  # fmt: skip

    def put(self, key: str, value: str, lease: int = 0) -> int:
        with self._changed:
            self._check()
            self._apply([Put(key, value, lease)])
            return self._revision

    def delete(self, key: str, prefix: bool = False) -> int:
        with self._changed:
            self._check()
            count = sum(1 for k in self._entries if (k.startswith(key) if prefix else k == key))
            if count:
                self._apply([Delete(key, prefix)])
            return count

    def txn(self, compares: list[Compare], success: list[Operation], failure: list[Operation] = ()) -> bool:
        with self._changed:
            self._check()
            held = all(self._holds(c) for c in compares)
            self._apply(list(success if held else failure))
            return held

    def grant(self, ttl: int) -> int:
        with self._changed:
            self._check()
            self._next_lease += 1
            self._leases[self._next_lease] = (ttl, self._clock() + ttl)
            return self._next_lease

    def keepalive(self, lease: int) -> int:
        with self._changed:
            self._check()
            if lease not in self._leases:
                return 0
            ttl = self._leases[lease][0]
            self._leases[lease] = (ttl, self._clock() + ttl)
            return ttl

    def revoke(self, lease: int) -> None:
        with self._changed:
            self._check()
            self._drop_lease(lease)
            self._changed.notify_all()

    def expire(self) -> None:
        """Lets leases whose time has come expire now (etcd does it by itself; tests with a fake clock call this)."""
        with self._changed:
            self._check()
            self._changed.notify_all()

    def compact(self, revision: int) -> None:
        with self._changed:
            self._compacted = revision
            self._history = [e for e in self._history if e.revision >= revision]

    def watch(self, prefix: str, start_revision: int) -> _MemoryWatch:
        return _MemoryWatch(self, prefix, start_revision)

    def close(self) -> None:
        pass


class _MemoryWatch:
    def __init__(self, store: MemoryClusterStore, prefix: str, start_revision: int) -> None:
        self.store, self.prefix, self.next_revision = store, prefix, start_revision
        self.closed = False

    def __iter__(self) -> Iterator[list[Event]]:
        store = self.store
        while not self.closed:
            with store._changed:
                if not store.available:
                    raise StoreUnavailable("the watch stream ended")
                if self.next_revision < store._compacted:
                    raise Compacted(store._compacted)
                batch = [e for e in store._history
                         if e.revision >= self.next_revision and e.key.startswith(self.prefix)]  # fmt: skip
                if not batch:
                    self.next_revision = max(self.next_revision, store._revision + 1)
                    store._changed.wait(0.05)
                    continue
                self.next_revision = batch[-1].revision + 1
            yield batch

    def close(self) -> None:
        self.closed = True
