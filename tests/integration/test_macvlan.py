"""macvlan networks: containers straight on the parent's LAN (the sandbox's uplink), untagged or on an 802.1q
sub-interface, with the tools (capture, topology, trace) following them."""

from __future__ import annotations

import json
import os
import time

import pytest
from test_capture import start_capture, tshark
from test_connectivity import ping, probe_from_container, probe_from_ns, wait_listening

from boxnet.testing.sandbox import ATTACKER_ADDR, OUTSIDE_GW, WEB_ADDR, Sandbox

LAN = ("--subnet", "198.51.100.0/24", "--gateway", OUTSIDE_GW, "--ip-range", "198.51.100.128/27")


def test_containers_on_a_macvlan_network_are_on_the_lan_with_their_own_address(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "-d", "macvlan", *LAN, "-o", "parent=uplink0", "lan")
    sandbox.cli("run", "-d", "--name", "a", "--network", "lan", "python3", "-m", "http.server", "80")
    sandbox.cli("run", "-d", "--name", "b", "--network", "lan", "sleep", "300")
    address_a, address_b = sandbox.ip_of("a"), sandbox.ip_of("b")
    assert address_a.startswith("198.51.100.1") and address_a != address_b
    wait_listening(sandbox, "a", 80)
    # Out through the LAN's router with no NAT: the web server sees the container's own address.
    assert probe_from_container(sandbox, "b", WEB_ADDR) == address_b
    # A neighbour on the LAN reaches the container directly, and the container sees the neighbour's address.
    assert probe_from_ns(sandbox, sandbox.attacker, address_a) is not None
    assert ping(sandbox, "b", address_a) and ping(sandbox, "a", ATTACKER_ADDR)
    assert sandbox.in_container("a", "getent", "hosts", "b").stdout.split()[0] == address_b  # embedded DNS
    # Its MAC is its own on the wire: the neighbour's ARP cache holds it.
    mac = sandbox.inspect("a")["NetworkSettings"]["Networks"]["lan"]["MacAddress"]
    neighbours = sandbox.in_ns(sandbox.attacker, "ip", "neigh", "show", address_a).stdout
    assert mac in neighbours
    network = sandbox.client.get("/networks/lan")
    assert network["Driver"] == "macvlan" and network["Options"]["parent"] == "uplink0"
    assert network["Scope"] == "local"


def test_macvlan_refuses_what_it_cannot_do_by_name(sandbox: Sandbox) -> None:
    before = sandbox.kernel_state()
    for args, message in [
        (("-o", "parent=nosuch0"), "parent interface nosuch0 does not exist"),
        ((), "needs -o parent=IFACE"),
        (("-o", "parent=uplink0", "-o", "macvlan_mode=hub"), "not one of"),
        (("-o", "parent=nosuch0.10"), "parent interface nosuch0 (of nosuch0.10) does not exist"),
    ]:
        result = sandbox.cli("network", "create", "-d", "macvlan", *LAN, *args, "bad", check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
    sandbox.cli("network", "create", "-d", "macvlan", *LAN, "-o", "parent=uplink0", "lan")
    again = sandbox.cli("network", "create", "-d", "macvlan", "--subnet", "192.0.2.0/24", "-o", "parent=uplink0",
                        "lan2", check=False)  # fmt: skip
    assert "network lan is already using parent interface uplink0" in again.stderr
    published = sandbox.cli("run", "-d", "--name", "p", "--network", "lan", "-p", "80", "sleep", "1", check=False)
    assert "network lan (macvlan) does not publish ports" in published.stderr
    sandbox.cli("network", "rm", "lan")
    assert sandbox.kernel_state() == before


def vlan_support(sandbox: Sandbox) -> bool:
    probe = sandbox.in_ns(sandbox.outside, "ip", "link", "add", "link", "seg", "name", "seg.99", "type", "vlan",
                          "id", "99")  # fmt: skip
    sandbox.in_ns(sandbox.outside, "ip", "link", "del", "seg.99")
    return probe.returncode == 0


def test_an_8021q_parent_is_refused_by_name_where_the_kernel_has_no_vlans(sandbox: Sandbox) -> None:
    if vlan_support(sandbox):
        pytest.skip("this kernel has 802.1q: the next test covers tagged parents")
    before = sandbox.kernel_state()
    result = sandbox.cli("network", "create", "-d", "macvlan", "--subnet", "192.0.2.0/24", "-o", "parent=uplink0.20",
                         "v20", check=False)  # fmt: skip
    assert result.returncode != 0 and "no 802.1q VLAN support" in result.stderr, result.stderr
    assert "v20" not in sandbox.cli("network", "ls").stdout
    assert sandbox.kernel_state() == before


def test_an_8021q_parent_is_made_tagged_and_removed_with_its_network(sandbox: Sandbox) -> None:
    if not vlan_support(sandbox):
        pytest.skip("this kernel has no 802.1q VLAN support (8021q); the test above covers the refusal")
    # The LAN's side of VLAN 20: the segment's bridge answers on 192.0.2.1, tagged.
    sandbox.in_ns(sandbox.outside, "ip", "link", "add", "link", "seg", "name", "seg.20", "type", "vlan", "id", "20",
                  check=True)  # fmt: skip
    sandbox.in_ns(sandbox.outside, "ip", "addr", "add", "192.0.2.1/24", "dev", "seg.20", check=True)
    sandbox.in_ns(sandbox.outside, "ip", "link", "set", "seg.20", "up", check=True)
    # A sub-interface the user made stays when the network that used it goes.
    sandbox.in_host("ip", "link", "add", "link", "uplink0", "name", "uplink0.30", "type", "vlan", "id", "30",
                    check=True)  # fmt: skip
    try:
        sandbox.cli("network", "create", "-d", "macvlan", "--subnet", "192.0.2.0/24", "--gateway", "192.0.2.1",
                    "-o", "parent=uplink0.20", "v20")  # fmt: skip
        details = json.loads(sandbox.in_host("ip", "-d", "-j", "link", "show", "uplink0.20", check=True).stdout)[0]
        assert details["linkinfo"]["info_kind"] == "vlan" and details["linkinfo"]["info_data"]["id"] == 20
        sandbox.cli("run", "-d", "--name", "t", "--network", "v20", "sleep", "300")
        # On the wire, between the host and the LAN, the container's echo requests carry tag 20.
        path = os.path.join(sandbox.root, "tagged.pcap")
        tcpdump = sandbox.spawn_in(sandbox.outside, "tcpdump", "-i", f"to-{sandbox.host[-4:]}", "-U", "-c", "2",
                                   "-w", path, "vlan 20 and icmp")  # fmt: skip
        time.sleep(0.7)
        assert ping(sandbox, "t", "192.0.2.1")
        tcpdump.wait(timeout=10)
        frames = tshark(path, "-T", "fields", "-e", "vlan.id", "-e", "ip.src")
        assert f"20\t{sandbox.ip_of('t')}" in frames, frames
        sandbox.cli("network", "create", "-d", "macvlan", "--subnet", "192.0.3.0/24", "-o", "parent=uplink0.30",
                    "v30")  # fmt: skip
        sandbox.cli("rm", "-f", "t")
        sandbox.cli("network", "rm", "v20", "v30")
        assert sandbox.in_host("ip", "link", "show", "uplink0.20").returncode != 0
        assert sandbox.in_host("ip", "link", "show", "uplink0.30").returncode == 0
    finally:
        sandbox.in_host("ip", "link", "del", "uplink0.30")


def test_capture_topology_and_trace_follow_macvlan_endpoints(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "-d", "macvlan", *LAN, "-o", "parent=uplink0", "lan")
    sandbox.cli("run", "-d", "--name", "m", "--network", "lan", "sleep", "300")
    address = sandbox.ip_of("m")
    path = os.path.join(sandbox.root, "m.pcapng")
    capture = start_capture(sandbox, "capture", "m", "-c", "2", "-f", "icmp", "-w", path)
    assert ping(sandbox, "m", ATTACKER_ADDR)
    capture.communicate(timeout=20)
    sources = set(tshark(path, "-T", "fields", "-e", "ip.src"))
    assert sources == {address, ATTACKER_ADDR}, sources
    topology = json.loads(sandbox.cli("topology", "--format", "json").stdout)
    network = next(n for n in topology["Networks"] if n["Name"] == "lan")
    assert network["Devices"]["parent"]["Name"] == "uplink0" and network["Devices"]["parent"]["Ifindex"] > 0
    container = next(c for c in topology["Containers"] if c["Name"] == "m")
    eth0 = next(i for i in container["Interfaces"] if i["Name"] == "eth0")
    assert eth0["Kind"] == "macvlan" and eth0["Parent"] == "uplink0" and eth0["HostVeth"] == ""
    trace = sandbox.cli("trace", "m", ATTACKER_ADDR, check=False).stdout
    assert "macvlan: eth0 on parent uplink0 (mode bridge)" in trace, trace
    assert "route on the host" not in trace, trace
