"""A node's liveness: a lease in the cluster store, kept alive while the daemon runs.

What hangs on the lease (the node's `alive` key, later its endpoints) vanishes from every peer within the
TTL once the node stops renewing it: dead, partitioned or gone. A lease that expired while the store was out
of reach is replaced, and whoever hangs keys on it is told to put them again (`on_new_lease`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from boxnet.errors import BoxnetError
from boxnet.store.cluster import ClusterStore

log = logging.getLogger(__name__)


class Liveness:
    def __init__(self, store: ClusterStore, key: str, value: str, ttl: int) -> None:
        self.store, self.key, self.value, self.ttl = store, key, value, ttl
        self.lease = 0
        self.on_new_lease: list[Callable[[int], None]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Takes the first lease now (so the node is alive when this returns), then renews it in the background."""
        self._renew_or_replace()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
        self._thread.start()

    def _renew_or_replace(self) -> None:
        if self.lease and self.store.keepalive(self.lease) > 0:
            return
        if self.lease:
            log.warning("the node's lease %x expired; taking a new one", self.lease)
        self.lease = self.store.grant(self.ttl)
        self.store.put(self.key, self.value, self.lease)
        for callback in self.on_new_lease:
            callback(self.lease)

    def _run(self) -> None:
        while not self._stopping.wait(self.ttl / 3):
            try:
                self._renew_or_replace()
            except BoxnetError as exc:
                log.warning("could not renew the node's lease: %s", exc.message)

    def stop(self, revoke: bool) -> None:
        """Stops renewing; with revoke, the node's keys go at once (a clean leave or shutdown)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if revoke and self.lease:
            try:
                self.store.revoke(self.lease)
            except BoxnetError as exc:
                log.warning("could not revoke the node's lease (it expires in %d s): %s", self.ttl, exc.message)
