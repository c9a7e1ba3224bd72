"""The Firewall's kernel operations on their own, in a bare namespace with no daemon (so nothing repairs what
the test breaks on purpose)."""

from __future__ import annotations

import subprocess
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
