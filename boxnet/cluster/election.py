"""The leader among managers: whoever holds the `leader` key, put on its own lease in a create-if-absent
transaction. It leads until its lease ends (it dies, or cannot reach the store for a TTL); then the key goes
and another manager takes it. Every write a leader makes carries `guard()`, the key's create revision: a
deposed leader's writes fail instead of racing the new leader's (etcd's own election works the same way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from boxnet.cluster import keys
from boxnet.store.cluster import ClusterStore, Compare, Delete, Put, absent

log = logging.getLogger(__name__)

LEADER = keys.PREFIX + "leader"


@dataclass(frozen=True)
class Term:
    """One leader's tenure: who, and the create revision of its key (unique to this tenure)."""

    node_id: str
    revision: int


class Election:
    def __init__(self, store: ClusterStore, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        self.term: Term | None = None  # ours, while we lead

    def campaign(self, lease: int) -> bool:
        """Takes the lead if nobody holds it; True while this node leads."""
        if self.store.txn([absent(LEADER)], [Put(LEADER, self.node_id, lease)]):
            entry = self.store.get(LEADER)
            if entry is not None and entry.value == self.node_id:
                self.term = Term(self.node_id, entry.create_revision)
                log.info("this node leads the swarm (term %d)", entry.create_revision)
        else:
            current = self.current()
            if self.term is not None and current != self.term:
                log.warning("this node no longer leads the swarm (now %s)", current.node_id if current else "nobody")
                self.term = None
        return self.term is not None

    def current(self) -> Term | None:
        entry = self.store.get(LEADER)
        return Term(entry.value, entry.create_revision) if entry else None

    def guard(self) -> Compare:
        """The condition of every write the leader makes: its tenure still holds."""
        if self.term is None:
            raise RuntimeError("not the leader")
        return Compare(LEADER, "create", self.term.revision)

    def resign(self) -> None:
        if self.term is not None:
            self.store.txn([self.guard()], [Delete(LEADER)])
            self.term = None
