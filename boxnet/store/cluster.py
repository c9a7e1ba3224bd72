"""The cluster store protocol: what etcd gives (revisions, transactions, leases, watches from a revision),
for the objects every node shares. The local store (base.py) keeps the objects of one host.

Revisions are the store's: one counter for the whole key space, so a watch can resume exactly where it left
off. Keys and values are text (JSON); the prefix of a deployment is the client's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from boxnet.errors import Unavailable


class StoreUnavailable(Unavailable):
    """No member of the cluster store answered (or it has no quorum)."""


class Compacted(Exception):
    """A watch asked for history the store no longer has: re-list, then watch from `revision`."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted up to {revision}")
        self.revision = revision


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    mod_revision: int
    create_revision: int
    lease: int = 0


@dataclass(frozen=True)
class Event:
    kind: Literal["put", "delete"]
    key: str
    value: str  # "" for a delete
    revision: int


@dataclass(frozen=True)
class Compare:
    """key's create revision, mod revision or value `==` expected (create revision 0: the key is absent)."""

    key: str
    target: Literal["create", "mod", "value", "lease"]
    expected: int | str


def absent(key: str) -> Compare:
    return Compare(key, "create", 0)


def unchanged_since(key: str, mod_revision: int) -> Compare:
    return Compare(key, "mod", mod_revision)


@dataclass(frozen=True)
class Put:
    key: str
    value: str
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False


Operation = Put | Delete


class Watch(Protocol):
    def __iter__(self) -> Iterator[list[Event]]:
        """Batches of events in revision order; raises Compacted, or StoreUnavailable when the stream ends."""

    def close(self) -> None: ...


class ClusterStore(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every key under prefix, and the store revision they were read at (watch from revision + 1)."""

    def put(self, key: str, value: str, lease: int = 0) -> int:
        """Returns the revision of the write."""

    def delete(self, key: str, prefix: bool = False) -> int:
        """How many keys went."""

    def txn(self, compares: list[Compare], success: list[Operation], failure: list[Operation] = ()) -> bool:
        """All of success if every compare holds, else all of failure, atomically. True if the compares held."""

    def grant(self, ttl: int) -> int:
        """A new lease of ttl seconds; keys put with it vanish when it expires or is revoked."""

    def keepalive(self, lease: int) -> int:
        """Refreshes a lease; its remaining TTL, 0 if it has expired."""

    def revoke(self, lease: int) -> None: ...

    def watch(self, prefix: str, start_revision: int) -> Watch: ...

    def close(self) -> None: ...
