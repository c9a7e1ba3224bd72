"""The cluster store's semantics (in memory, as etcd's), the prefix watcher, and join tokens."""

from __future__ import annotations

import time

import pytest

from boxnet.cluster import pki
from boxnet.errors import Forbidden, InvalidArgument
from boxnet.store.cluster import Delete, Put, absent, unchanged_since
from boxnet.store.cluster_memory import MemoryClusterStore
from boxnet.store.etcd import prefix_end
from boxnet.store.watcher import PrefixWatcher


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_revisions_transactions_and_leases() -> None:
    clock = Clock()
    store = MemoryClusterStore(clock)
    first = store.put("a/1", "x")
    assert store.get("a/1").mod_revision == first
    # Create-if-absent: only one of two contenders gets an address.
    assert store.txn([absent("ipam/10.0.0.2")], [Put("ipam/10.0.0.2", "node1")])
    assert not store.txn([absent("ipam/10.0.0.2")], [Put("ipam/10.0.0.2", "node2")])
    assert store.get("ipam/10.0.0.2").value == "node1"
    entry = store.get("a/1")
    assert not store.txn([unchanged_since("a/1", entry.mod_revision - 1)], [Put("a/1", "stale")])
    assert store.txn([unchanged_since("a/1", entry.mod_revision)], [Put("a/1", "y"), Delete("ipam/", prefix=True)])
    assert store.get("a/1").value == "y" and store.get("ipam/10.0.0.2") is None
    lease = store.grant(10)
    store.put("alive/n1", "", lease)
    clock.now = 8
    assert store.keepalive(lease) == 10
    clock.now = 17
    assert store.get("alive/n1") is not None
    clock.now = 19
    assert store.get("alive/n1") is None and store.keepalive(lease) == 0
    entries, revision = store.range("a/")
    assert [e.key for e in entries] == ["a/1"] and revision >= entries[0].mod_revision


def test_the_watcher_resumes_after_an_outage_and_relists_after_a_compaction() -> None:
    store = MemoryClusterStore()
    store.put("eps/a", "1")
    snapshots: list[list[str]] = []
    seen: list[tuple[str, str, str]] = []
    watcher = PrefixWatcher(store, "eps/", lambda entries: snapshots.append([e.key for e in entries]),
                            lambda events: seen.extend((e.kind, e.key, e.value) for e in events), retry_seconds=0.05)
    watcher.start()
    try:
        assert watcher.synced.wait(2) and snapshots == [["eps/a"]]
        store.put("eps/b", "2")
        store.put("other/x", "ignored")
        _wait(lambda: ("put", "eps/b", "2") in seen)
        store.available = False  # the store goes away; writes made meanwhile by others land when it is back
        time.sleep(0.2)
        store.available = True
        store.delete("eps/a")
        _wait(lambda: ("delete", "eps/a", "") in seen)
        assert watcher.resyncs == 1 and [s for s in seen if s[1] == "eps/b"] == [("put", "eps/b", "2")]
        # Away while the history it needs is compacted: it lists again instead of missing changes.
        store.available = False
        time.sleep(0.2)
        with store._changed:  # the watcher cannot look before both are done
            store.available = True
            store.put("eps/c", "3")
            store.compact(store.range("")[1] + 1)
        _wait(lambda: ["eps/b", "eps/c"] in snapshots)
        assert watcher.resyncs == 2
    finally:
        watcher.stop()


def _wait(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_prefix_end_is_etcds() -> None:
    import base64

    assert base64.b64decode(prefix_end("app/")) == b"app0"
    assert base64.b64decode(prefix_end("")) == b"\0"


def test_join_tokens_carry_the_ca_digest_and_a_role() -> None:
    ca, key = pki.new_ca("c1")
    other_ca, _ = pki.new_ca("c2")
    worker, manager = pki.new_token(ca), pki.new_token(ca)
    assert worker.startswith("SWMTKN-1-") and len(worker) == 85 and worker != manager
    pki.check_ca(worker, ca)
    with pytest.raises(Forbidden, match="does not match"):
        pki.check_ca(worker, other_ca)
    tokens = {"worker": worker, "manager": manager}
    assert pki.role_of(manager, tokens) == "manager" and pki.role_of(worker, tokens) == "worker"
    with pytest.raises(Forbidden):
        pki.role_of(pki.new_token(ca), tokens)
    for bad in ("", "SWMTKN-1-abc-def", worker[:-1] + "!"):
        with pytest.raises(InvalidArgument):
            pki.parse_token(bad)
    # The node's certificate is named after the node, whatever its request says.
    from cryptography import x509

    node_key = pki.new_key()
    cert = x509.load_pem_x509_certificate(pki.sign(ca, key, pki.csr_for(node_key, "liar"), "node7", ["198.18.0.7"]))
    assert "node7" in cert.subject.rfc4514_string()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"198.18.0.7", "127.0.0.1"}


def test_one_leader_at_a_time_and_a_deposed_one_cannot_write() -> None:
    from boxnet.cluster.election import Election

    clock = Clock()
    store = MemoryClusterStore(clock)
    first, second = Election(store, "m1"), Election(store, "m2")
    lease1, lease2 = store.grant(10), store.grant(10)
    assert first.campaign(lease1) and not second.campaign(lease2)
    assert store.txn([first.guard()], [Put("/boxnet/tasks/a", "by m1")])
    guard_of_the_old_term = first.guard()
    clock.now = 9  # m1 stops renewing (dead or cut off); m2 keeps its lease
    assert store.keepalive(lease2) == 10
    clock.now = 12
    assert second.campaign(lease2) and second.current().node_id == "m2"
    # m1 still thinks it leads until it looks: its writes fail all the same.
    assert not store.txn([guard_of_the_old_term], [Put("/boxnet/tasks/a", "by a deposed m1")])
    assert store.get("/boxnet/tasks/a").value == "by m1"
    assert not first.campaign(store.grant(10)) and first.term is None
    second.resign()
    assert first.campaign(store.grant(10))
