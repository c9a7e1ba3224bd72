"""The cluster store on a real etcd member (TLS, client certificates), supervised as a manager runs it.

The member listens on loopback ports of the test's own choosing: nothing leaves the machine."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time

import pytest

from boxnet.cluster import pki
from boxnet.cluster.etcd_member import EtcdMember, MemberConfig
from boxnet.runtime.procs import proc_start_time
from boxnet.store.cluster import Put, StoreUnavailable, absent
from boxnet.store.etcd import Credentials, EtcdStore
from boxnet.store.watcher import PrefixWatcher


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_credentials(directory: str, name: str, ca: bytes, ca_key: bytes) -> Credentials:
    key = pki.new_key()
    cert = pki.sign(ca, ca_key, pki.csr_for(key, name), name, ["127.0.0.1"])
    paths = {}
    for kind, data in (("ca", ca), ("cert", cert), ("key", key)):
        paths[kind] = os.path.join(directory, f"{name}-{kind}.pem")
        with open(paths[kind], "wb") as handle:
            handle.write(data)
    return Credentials(paths["ca"], paths["cert"], paths["key"])


@pytest.fixture
def member(tmp_path):
    ca, ca_key = pki.new_ca("test")
    credentials = write_credentials(str(tmp_path), "n1", ca, ca_key)
    config = MemberConfig(str(tmp_path / "etcd"), "n1", "127.0.0.1", "test-cluster", credentials,
                          client_port=free_port(), peer_port=free_port())  # fmt: skip
    etcd = EtcdMember(config)
    etcd.start(f"n1={config.peer_url}", "new")
    yield etcd, credentials, (ca, ca_key, tmp_path)
    etcd.stop()


def test_etcd_store_semantics_over_tls(member) -> None:
    etcd, credentials, (_, _, tmp_path) = member
    store = EtcdStore([etcd.config.client_url], credentials)
    revision = store.put("/t/a", "1")
    assert store.get("/t/a").value == "1" and store.get("/t/a").mod_revision == revision
    assert store.txn([absent("/t/ip/10.0.0.2")], [Put("/t/ip/10.0.0.2", "node1")])
    assert not store.txn([absent("/t/ip/10.0.0.2")], [Put("/t/ip/10.0.0.2", "node2")])
    lease = store.grant(2)
    store.put("/t/alive/n1", "", lease)
    assert store.keepalive(lease) == 2
    store.revoke(lease)
    assert store.get("/t/alive/n1") is None and store.keepalive(lease) == 0
    entries, _ = store.range("/t/")
    assert [e.key for e in entries] == ["/t/a", "/t/ip/10.0.0.2"]
    assert store.delete("/t/", prefix=True) == 2
    # A client without a certificate of this CA gets nothing.
    other_ca, other_key = pki.new_ca("other")
    stranger = EtcdStore([etcd.config.client_url], write_credentials(str(tmp_path), "x", other_ca, other_key))
    with pytest.raises((StoreUnavailable, ssl.SSLError)):
        stranger.get("/t/a")
    store.close()


def test_a_watch_survives_the_member_being_killed_and_misses_nothing(member) -> None:
    etcd, credentials, _ = member
    store = EtcdStore([etcd.config.client_url], credentials, timeout=2)
    store.put("/w/a", "1")
    seen: list[tuple[str, str]] = []
    watcher = PrefixWatcher(store, "/w/", lambda entries: seen.extend(("put", e.key) for e in entries),
                            lambda events: seen.extend((e.kind, e.key) for e in events), retry_seconds=0.2)
    watcher.start()
    try:
        assert watcher.synced.wait(5)
        store.put("/w/b", "2")
        _wait(lambda: ("put", "/w/b") in seen)
        os.kill(etcd.pid, signal.SIGKILL)  # the supervisor starts it again, from its data directory
        _wait(lambda: etcd.restarts == 1 and etcd.healthy(), 15)
        store.put("/w/c", "3")
        store.delete("/w/a")
        _wait(lambda: ("delete", "/w/a") in seen, 10)
        assert seen == [("put", "/w/a"), ("put", "/w/b"), ("put", "/w/c"), ("delete", "/w/a")]
        assert watcher.resyncs == 1
    finally:
        watcher.stop()
        store.close()


def test_stopping_the_member_ends_its_process(member) -> None:
    etcd, _, _ = member
    pid, start_time = etcd.pid, proc_start_time(etcd.pid)
    assert start_time
    etcd.stop()
    assert proc_start_time(pid) != start_time  # reaped by stop(): no zombie either
    assert not os.path.exists(etcd.config.pid_file)


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
