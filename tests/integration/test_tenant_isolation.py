"""A container is a tenant: with Docker's default capabilities (NET_RAW included) it writes whatever frames it
likes, and none of them may take over its neighbours' or the host's traffic, or reach what the host keeps on
its loopback. Each attack is sent for real from a container's eth0 and looked for where it would land; each
comes with a control (the same frame, made honest, arrives), so that a test cannot pass by sending nothing."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import pytest

from boxnet.firewall.bridge_rules import link_local
from boxnet.testing import frames
from boxnet.testing.sandbox import Sandbox

FRAMES = (sys.executable, "-m", "boxnet.testing.frames")
BROADCAST = "ff:ff:ff:ff:ff:ff"


class Lan:
    """A user network with IPv4 and IPv6, an attacker and two victims on it."""

    def __init__(self, sandbox: Sandbox, *network_flags: str) -> None:
        self.sandbox = sandbox
        sandbox.cli("network", "create", "--ipv6", "--subnet", "10.77.0.0/24", "--subnet", "fd00:77::/64",
                    *network_flags, "lan")  # fmt: skip
        for name in ("attacker", "victim", "other"):
            sandbox.cli("run", "-d", "--name", name, "--network", "lan", "sleep", "300")
        self.gateway, self.gateway6 = "10.77.0.1", "fd00:77::1"

    def address(self, name: str, version: int = 4) -> str:
        settings = self.sandbox.inspect(name)["NetworkSettings"]["Networks"]["lan"]
        return settings["IPAddress"] if version == 4 else settings["GlobalIPv6Address"]

    def mac(self, name: str) -> str:
        return self.sandbox.inspect(name)["NetworkSettings"]["Networks"]["lan"]["MacAddress"]

    def arrives(self, frame: bytes, at: str, pattern: bytes, sender: str = "attacker") -> bool:
        """Sends frame from sender's eth0 while at listens on its own; True when a frame with pattern came."""
        return arrivals(self.sandbox, frame, at, pattern, sender) > 0


def arrivals(sandbox: Sandbox, frame: bytes, at: str, pattern: bytes, sender: str = "attacker",
             seconds: float = 1.0) -> int:  # fmt: skip
    listener = subprocess.Popen([*sandbox_cli(sandbox), "exec", at, *FRAMES, "listen", pattern.hex(), str(seconds)],
                                stdout=subprocess.PIPE, text=True, env=sandbox.env())  # fmt: skip
    assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
    sandbox.in_container(sender, *FRAMES, "send", frame.hex())
    out, _ = listener.communicate(timeout=30)
    return int(out.strip())


def sandbox_cli(sandbox: Sandbox) -> list[str]:
    return [sys.executable, "-m", "boxnet.cli.main"]


def test_frames_with_another_source_mac_or_address_go_nowhere(sandbox: Sandbox) -> None:
    lan = Lan(sandbox)
    attacker, victim, other = (lan.address(n) for n in ("attacker", "victim", "other"))
    own_mac, victim_mac, other_mac = lan.mac("attacker"), lan.mac("victim"), lan.mac("other")
    marker = b"boxnet-spoof-test"

    def udp(src_mac: str, src_ip: str) -> bytes:
        return frames.ethernet(victim_mac, src_mac, frames.ETH_P_IP, frames.udp4(src_ip, victim, 4000, 4001, marker))

    assert lan.arrives(udp(own_mac, attacker), "victim", marker)  # the control: honest, it arrives
    assert not lan.arrives(udp(other_mac, attacker), "victim", marker)  # another container's MAC
    assert not lan.arrives(udp(own_mac, other), "victim", marker)  # another container's address
    assert not lan.arrives(udp(own_mac, lan.gateway), "victim", marker)  # the gateway's address
    # A VLAN-tagged frame (priority tag, VLAN 0), which receivers take as untagged.
    tagged = frames.ethernet(victim_mac, own_mac, 0x8100, b"\x00\x00\x08\x00" + frames.udp4(other, victim, 4000,
                                                                                              4001, marker))
    assert not lan.arrives(tagged, "victim", marker)


def test_a_spoofed_source_does_not_leave_the_host(sandbox: Sandbox) -> None:
    lan = Lan(sandbox)
    gateway_mac = sandbox.in_container("attacker", "sh", "-c", f"ping -c1 -W1 {lan.gateway} >/dev/null; "
                                       f"ip neigh show {lan.gateway}").stdout.split("lladdr")[1].split()[0]
    marker = b"boxnet-leave-test"
    outside = "203.0.113.80"
    honest = frames.ethernet(gateway_mac, lan.mac("attacker"), frames.ETH_P_IP,
                             frames.udp4(lan.address("attacker"), outside, 4000, 4001, marker))
    spoofed = frames.ethernet(gateway_mac, lan.mac("attacker"), frames.ETH_P_IP,
                              frames.udp4("198.51.100.77", outside, 4000, 4001, marker))
    for frame, expected in ((honest, True), (spoofed, False)):
        capture = subprocess.Popen(["ip", "netns", "exec", sandbox.outside, "tcpdump", "-i", "seg", "-n", "-c", "1",
                                    "-l", "udp", "port", "4001"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        time.sleep(0.5)
        sandbox.in_container("attacker", *FRAMES, "send", frame.hex())
        try:
            seen = capture.communicate(timeout=2)[0]
        except subprocess.TimeoutExpired:
            capture.kill()
            seen = capture.communicate()[0]
        assert bool(seen.strip()) is expected, (expected, seen)


def test_arp_and_neighbour_spoofing_are_dropped(sandbox: Sandbox) -> None:
    lan = Lan(sandbox)
    attacker_mac, victim_mac = lan.mac("attacker"), lan.mac("victim")
    attacker, victim = lan.address("attacker"), lan.address("victim")

    def reply(claimed_ip: str, claimed_mac: str = attacker_mac) -> bytes:
        return frames.ethernet(victim_mac, attacker_mac, frames.ETH_P_ARP,
                               frames.arp(2, claimed_mac, claimed_ip, victim_mac, victim))

    def seen(frame: bytes, claimed_ip: str, claimed_mac: str = attacker_mac) -> bool:
        pattern = frames.mac_bytes(claimed_mac) + ipaddress.IPv4Address(claimed_ip).packed
        return lan.arrives(frame, "victim", pattern)

    assert seen(reply(attacker), attacker)  # the control: its own address
    assert not seen(reply(lan.gateway), lan.gateway)  # "the gateway is at my MAC"
    assert not seen(reply(lan.address("other")), lan.address("other"))
    assert not seen(reply(attacker, lan.mac("other")), attacker, lan.mac("other"))  # its IP at another's MAC
    probe = frames.ethernet(BROADCAST, attacker_mac, frames.ETH_P_ARP,
                            frames.arp(1, attacker_mac, "0.0.0.0", "00:00:00:00:00:00", victim))
    assert seen(probe, "0.0.0.0")  # an ARP probe (RFC 5227) teaches nobody anything: it passes
    # the victim still reaches the gateway through the bridge
    neigh = sandbox.in_container("victim", "sh", "-c", f"ping -c1 -W1 {lan.gateway} >/dev/null; ip neigh").stdout
    assert attacker_mac not in [line.split("lladdr")[1].split()[0] for line in neigh.splitlines()
                                if line.startswith(lan.gateway + " ") and "lladdr" in line]  # fmt: skip

    # IPv6: a neighbour advertisement for an address that is not the attacker's
    attacker6, victim6 = lan.address("attacker", 6), lan.address("victim", 6)
    own_ll = link_local(attacker_mac)

    def advert(target: str, lladdr: str = attacker_mac) -> bytes:
        return frames.ethernet(victim_mac, attacker_mac, frames.ETH_P_IPV6,
                               frames.neighbour_advert(own_ll, victim6, target, lladdr))

    def advert_seen(target: str, lladdr: str = attacker_mac) -> bool:
        return lan.arrives(advert(target, lladdr), "victim", ipaddress.IPv6Address(target).packed)

    assert advert_seen(attacker6)  # the control: its own address, its own MAC
    assert not advert_seen(lan.gateway6)
    assert not advert_seen(lan.address("other", 6))
    assert not advert_seen(link_local(lan.mac("other")))
    assert not advert_seen(attacker6, lan.mac("other"))  # its own address at another's MAC
    spoofed6 = frames.ethernet(victim_mac, attacker_mac, frames.ETH_P_IPV6,
                               frames.udp6(lan.address("other", 6), victim6, 4000, 4001, b"boxnet-v6-spoof"))
    assert not lan.arrives(spoofed6, "victim", b"boxnet-v6-spoof")
    honest6 = frames.ethernet(victim_mac, attacker_mac, frames.ETH_P_IPV6,
                              frames.udp6(attacker6, victim6, 4000, 4001, b"boxnet-v6-honest"))
    assert lan.arrives(honest6, "victim", b"boxnet-v6-honest")


def test_no_router_advertisement_from_a_container_reaches_anyone(sandbox: Sandbox) -> None:
    lan = Lan(sandbox)
    attacker_mac = lan.mac("attacker")
    advert = frames.ethernet("33:33:00:00:00:01", attacker_mac, frames.ETH_P_IPV6,
                             frames.router_advert(link_local(attacker_mac), "fd66::/64"))
    assert not lan.arrives(advert, "victim", ipaddress.IPv6Address("fd66::").packed[:8])
    routes = sandbox.in_container("victim", "ip", "-6", "route").stdout
    assert "fd66" not in routes and "via fe80" not in routes  # the only default route is boxnet's
    # containers take no router advertisements themselves, unless they ask
    assert sandbox.in_container("victim", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra").stdout.strip() == "0"
    asked = sandbox.cli("run", "--rm", "--network", "lan", "--sysctl", "net.ipv6.conf.eth0.accept_ra=1",
                        "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra").stdout  # fmt: skip
    assert asked.strip() == "1"


LOOPBACK_SERVICE = ("python3", "-c", "import socket, sys\n"
                    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)\n"
                    "import time; time.sleep(120)")  # fmt: skip


UDP_COUNTER = ("python3", "-c", "import socket, sys\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))\n"
               "s.settimeout(float(sys.argv[3])); print('listening', flush=True); n = 0\n"
               "try:\n while True: s.recv(100); n += 1\nexcept OSError: print(n)")  # fmt: skip


@pytest.mark.parametrize("network", ["bridge", "user", "internal"])
def test_the_hosts_loopback_services_are_out_of_reach(sandbox: Sandbox, network: str) -> None:
    """CVE-2020-8558: the bridges have route_localnet (so that the host's own 127.0.0.1 reaches published
    ports), which would let a container that sends a SYN for 127.0.0.1 to its gateway's MAC reach a service
    the host binds to loopback only; on an internal network that is also the host's loopback resolver
    (CVE-2024-29018)."""
    if network != "bridge":
        sandbox.cli("network", "create", *(["--internal"] if network == "internal" else []), network)
    sandbox.cli("run", "-d", "--name", "attacker", "--network", network, "sleep", "300")
    settings = next(iter(sandbox.inspect("attacker")["NetworkSettings"]["Networks"].values()))
    attacker, gateway, own_mac = settings["IPAddress"], settings["Gateway"], settings["MacAddress"]
    services = [subprocess.Popen(["ip", "netns", "exec", sandbox.host, *LOOPBACK_SERVICE, address, "7777"])
                for address in ("127.0.0.1", gateway)]  # fmt: skip
    try:
        neigh = sandbox.in_container("attacker", "sh", "-c", f"ping -c1 -W1 {gateway} >/dev/null; "
                                     f"ip neigh show {gateway}").stdout  # fmt: skip
        gateway_mac = neigh.split("lladdr")[1].split()[0]
        attacker_packed = ipaddress.IPv4Address(attacker).packed

        def answered(destination: str) -> bool:
            syn = frames.ethernet(gateway_mac, own_mac, frames.ETH_P_IP, frames.tcp_syn4(attacker, destination,
                                                                                          40000, 7777))
            pattern = ipaddress.IPv4Address(destination).packed + attacker_packed  # its answer: src, dst
            return arrivals(sandbox, syn, "attacker", pattern, sender="attacker") > 0

        assert answered(gateway)  # the control: the same SYN to the gateway's own address is answered
        assert not answered("127.0.0.1")
        counters = sandbox.in_host("nft", "list", "chain", "inet", "boxnet", "guard").stdout
        assert "packets 0 " not in counters.split("CVE-2020-8558")[0].splitlines()[-1]  # dropped there
        # A loopback source (127.0.0.2; the kernel refuses only 127.0.0.1) is no better.
        for source, expected in ((attacker, 1), ("127.0.0.2", 0)):
            receiver = subprocess.Popen(["ip", "netns", "exec", sandbox.host, *UDP_COUNTER, gateway, "7778", "1.5"],
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert receiver.stdout is not None and receiver.stdout.readline().strip() == "listening"
            udp = frames.ethernet(gateway_mac, own_mac, frames.ETH_P_IP,
                                  frames.udp4(source, gateway, 4000, 7778, b"to the host"))
            sandbox.in_container("attacker", *FRAMES, "send", udp.hex())
            assert int(receiver.communicate(timeout=10)[0]) == expected, source
    finally:
        for service in services:
            service.kill()
            service.wait()


UDP_ECHO_NAME = ("python3", "-c", "import socket, sys\n"
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5000))\n"
                 "while True:\n d, a = s.recvfrom(100); s.sendto(sys.argv[1].encode(), a)")  # fmt: skip
# Sends from one fixed port, as a long-lived UDP client does, and prints what answered, one line a second.
UDP_CLIENT = ("python3", "-c", "import socket, sys, time\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 45000)); s.settimeout(0.05)\n"
              "end = time.monotonic() + float(sys.argv[3]); seen = set()\n"
              "while time.monotonic() < end:\n"
              " s.sendto(b'x', (sys.argv[1], int(sys.argv[2])))\n"
              " try: seen.add(s.recv(100).decode())\n"
              " except OSError: pass\n"
              " time.sleep(0.02)\n"
              "print(' '.join(sorted(seen)))")  # fmt: skip


def test_a_flow_to_a_removed_container_does_not_reach_the_next_one_with_its_address(sandbox: Sandbox) -> None:
    """moby's TestConntrackFlowsLeak: a client keeps sending to a published UDP port; the container goes, and
    another takes its address without publishing that port. The old flow must not reach it."""
    sandbox.cli("network", "create", "--subnet", "10.78.0.0/24", "udpnet")
    sandbox.cli("run", "-d", "--name", "first", "--network", "udpnet", "--ip", "10.78.0.5", "-p", "5000:5000/udp",
                *UDP_ECHO_NAME, "first")  # fmt: skip
    client = subprocess.Popen(["ip", "netns", "exec", sandbox.attacker, *UDP_CLIENT, "198.51.100.2", "5000", "6"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.5)
    sandbox.cli("rm", "-f", "first")
    sandbox.cli("run", "-d", "--name", "second", "--network", "udpnet", "--ip", "10.78.0.5", *UDP_ECHO_NAME,
                "second")  # fmt: skip
    answers = client.communicate(timeout=30)[0].split()
    assert answers == ["first"]  # the first answered; the second, which published nothing, never heard of it
    # Published again, the port reaches the new container at once, although the client never stopped.
    sandbox.cli("rm", "-f", "second")
    client = subprocess.Popen(["ip", "netns", "exec", sandbox.attacker, *UDP_CLIENT, "198.51.100.2", "5000", "4"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1)
    sandbox.cli("run", "-d", "--name", "third", "--network", "udpnet", "-p", "5000:5000/udp", *UDP_ECHO_NAME,
                "third")  # fmt: skip
    assert client.communicate(timeout=30)[0].split() == ["third"]
