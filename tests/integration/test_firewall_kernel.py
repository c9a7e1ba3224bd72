"""The Firewall's kernel operations on their own, in a bare namespace with no daemon (so nothing repairs what
the test breaks on purpose)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from boxnet.engine.firewall import Firewall
from boxnet.engine.registry import Registry
from boxnet.firewall import ruleset
from boxnet.kernel import netns
from boxnet.store.memory import MemoryStore


@pytest.fixture
def bare_namespace() -> Iterator[str]:
    name = f"bxk{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def nft_in(path: str, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net={path}", "nft", *args], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_ports_leave_even_when_one_is_already_gone(bare_namespace: str) -> None:
    """Ports leave in one transaction per map; an entry deleted behind boxnet's back makes the kernel refuse
    that batch, and the rest still go, one by one."""
    firewall = Firewall()
    rules = [ruleset.PortRule("tcp", port, "172.17.0.2", port) for port in (9001, 9002, 9003)]
    netns.run_in(bare_namespace, firewall.rebuild, Registry(MemoryStore()))
    netns.run_in(bare_namespace, firewall.add_ports, rules)
    nft_in(bare_namespace, "delete element inet boxnet pub4_any { tcp . 9002 }")
    netns.run_in(bare_namespace, firewall.remove_ports, rules)
    assert "elements" not in nft_in(bare_namespace, "list map inet boxnet pub4_any")
    netns.run_in(bare_namespace, firewall.remove_ports, rules)  # idempotent


def test_conntrack_entries_of_one_address_go_and_no_other(bare_namespace: str) -> None:
    """Both families: IPv4 through the kernel's filtered flush, IPv6 by dump and match (the kernel's IPv6
    filter is inverted, which would delete every other entry instead)."""
    import socket

    from boxnet.kernel import conntrack

    peer = bare_namespace.replace("/run/netns/", "") + "p"
    subprocess.run(["ip", "netns", "add", peer], check=True)
    try:
        subprocess.run(["ip", "-n", peer, "link", "add", "name", "cta", "type", "veth", "peer", "name", "ctb", "netns",
                        bare_namespace.rsplit("/", 1)[1]], check=True)  # fmt: skip
        for ns, ifname, addresses in ((f"/run/netns/{peer}", "cta", ("10.9.0.2/24", "10.9.0.3/24", "fd09::2/64",
                                                                     "fd09::3/64")),
                                      (bare_namespace, "ctb", ("10.9.0.1/24", "fd09::1/64"))):  # fmt: skip
            for address in addresses:
                subprocess.run(["nsenter", f"--net={ns}", "ip", "addr", "add", address, "dev", ifname, "nodad"],
                               check=True)  # fmt: skip
            subprocess.run(["nsenter", f"--net={ns}", "ip", "link", "set", ifname, "up"], check=True)
        nft_in(bare_namespace, "add table inet t; add chain inet t c { type filter hook input priority 0; }; "
               "add rule inet t c ct state new counter")  # fmt: skip
        send = "import socket,sys\nfor src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n" \
               " s = socket.socket(socket.AF_INET6 if ':' in src else socket.AF_INET, socket.SOCK_DGRAM)\n" \
               " s.bind((src, 0)); s.sendto(b'x', (dst, 9))"
        subprocess.run(["ip", "netns", "exec", peer, sys.executable, "-c", send, "10.9.0.2", "10.9.0.1", "10.9.0.3",
                        "10.9.0.1", "fd09::2", "fd09::1", "fd09::3", "fd09::1"], check=True)  # fmt: skip
        deadline = time.monotonic() + 3  # the first IPv6 packets wait for neighbour discovery
        while len(netns.run_in(bare_namespace, conntrack.original_addresses, socket.AF_INET6)) < 2:
            assert time.monotonic() < deadline, "the IPv6 flows never arrived"
            time.sleep(0.05)
        entries = netns.run_in(bare_namespace, lambda: {f: conntrack.original_addresses(f)
                                                        for f in (socket.AF_INET, socket.AF_INET6)})  # fmt: skip
        assert ("10.9.0.2", "10.9.0.1") in entries[socket.AF_INET] and ("fd09::2", "fd09::1") in entries[
            socket.AF_INET6]
        netns.run_in(bare_namespace, conntrack.forget_address, "10.9.0.2")
        netns.run_in(bare_namespace, conntrack.forget_address, "fd09::2")
        after = netns.run_in(bare_namespace, lambda: {f: conntrack.original_addresses(f)
                                                      for f in (socket.AF_INET, socket.AF_INET6)})  # fmt: skip
        assert after[socket.AF_INET] == [("10.9.0.3", "10.9.0.1")]
        assert after[socket.AF_INET6] == [("fd09::3", "fd09::1")]
    finally:
        subprocess.run(["ip", "netns", "del", peer], check=True)
