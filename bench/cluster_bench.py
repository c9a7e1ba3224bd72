"""Benchmarks of issue #10: overlay throughput against VXLAN set up by hand on the same lab hosts, the time
from `run` on one node until a container on another resolves and reaches the new one, how soon a dead
node's endpoints are forgotten, and macvlan throughput against its parent. Labs and sandboxes only: every
packet stays in namespaces made here."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import tempfile
import time

from boxnet.lab import Lab, LabHost
from boxnet.testing.sandbox import OUTSIDE_GW, Sandbox

RAW_VNI = 9999


def _iperf(host: LabHost, argv: list[str], seconds: int) -> float:
    result = host.run(*argv, "-t", str(seconds), "-J", check=True, timeout=seconds + 30)
    return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def _raw_overlay(lab: Lab) -> list[str]:
    """The same devices as boxnet's overlay, made by hand: on each host a bridge, a VXLAN device with a static
    entry to the other host, and a veth into a namespace of its own with 192.168.99.I/24, MTU 1450."""
    made = []
    for index, host in enumerate(lab.hosts[:2], start=1):
        other = lab.hosts[2 - index]
        ns = f"{lab.name}-raw{index}"
        made.append(ns)
        commands = [
            ["ip", "netns", "add", ns],
            ["ip", "-n", host.name, "link", "add", "rawbr", "type", "bridge"],
            ["ip", "-n", host.name, "link", "add", "rawvx", "type", "vxlan", "id", str(RAW_VNI), "local",
             host.address, "dstport", "4789", "nolearning", "proxy"],
            ["ip", "-n", host.name, "link", "set", "rawvx", "mtu", "1450", "master", "rawbr", "up"],
            ["ip", "-n", host.name, "link", "set", "rawbr", "mtu", "1450", "up"],
            ["ip", "-n", host.name, "link", "add", "rawv", "mtu", "1450", "type", "veth", "peer", "name", "eth0",
             "netns", ns],
            ["ip", "-n", host.name, "link", "set", "rawv", "master", "rawbr", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "link", "set", "eth0", "address", f"02:99:00:00:00:0{index}", "up"],
            ["ip", "-n", ns, "addr", "add", f"192.168.99.{index}/24", "dev", "eth0"],
            ["bridge", "-n", host.name, "fdb", "add", f"02:99:00:00:00:0{3 - index}", "dev", "rawvx", "dst",
             other.address, "self", "permanent"],
            ["ip", "-n", host.name, "neigh", "add", f"192.168.99.{3 - index}", "lladdr",
             f"02:99:00:00:00:0{3 - index}", "dev", "rawvx", "nud", "permanent"],
        ]  # fmt: skip
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        # The raw namespace resolves the other side through the proxy on its host's VXLAN device.
        subprocess.run(["ip", "-n", ns, "neigh", "add", f"192.168.99.{3 - index}", "lladdr",
                        f"02:99:00:00:00:0{3 - index}", "dev", "eth0", "nud", "permanent"], check=True)  # fmt: skip
    return made


def bench_overlay_throughput(seconds: int = 5, rounds: int = 4) -> None:
    with Lab("bthr", hosts=2, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, h2 = lab.hosts
        raw = _raw_overlay(lab)
        try:
            h1.cli("network", "create", "-d", "overlay", "perf")
            h1.cli("run", "-d", "--name", "server", "--network", "perf", "iperf3", "-s")
            h2.cli("run", "-d", "--name", "client", "--network", "perf", "sleep", "infinity")
            server = subprocess.Popen(["ip", "netns", "exec", raw[0], "iperf3", "-s"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
            address = h1.client.get("/containers/server/json")["NetworkSettings"]["Networks"]["perf"]["IPAddress"]
            results: dict[str, list[float]] = {"boxnet": [], "raw": []}
            try:
                for _ in range(rounds):  # interleaved: the machine's noise hits both alike
                    run = h2.cli("exec", "client", "iperf3", "-c", address, "-t", str(seconds), "-J",
                                 timeout=seconds + 30)  # fmt: skip
                    results["boxnet"].append(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
                    results["raw"].append(_iperf(_RawHost(raw[1]), ["iperf3", "-c", "192.168.99.1"], seconds))
            finally:
                server.terminate()
                server.wait()
            boxnet, by_hand = statistics.median(results["boxnet"]), statistics.median(results["raw"])
            print(f"(o1) overlay TCP, container on h2 -> container on h1: {boxnet:.2f} Gbit/s; the same devices made "
                  f"by hand (bridge + VXLAN + veth): {by_hand:.2f} Gbit/s; ratio {boxnet / by_hand:.2f} "
                  f"(target >= 0.95; medians of {rounds} x {seconds} s, interleaved)")
        finally:
            for ns in raw:
                subprocess.run(["ip", "netns", "del", ns], check=False)


class _RawHost:
    """A hand-made namespace, run like a lab host."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def run(self, *argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True, text=True, check=check,
                              timeout=timeout)  # fmt: skip


PROBE = r"""
import os, socket, struct, sys, time
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(0.02)
for line in sys.stdin:
    name = line.strip()
    start = time.monotonic()
    while True:
        try:
            address = socket.gethostbyname(name)
        except OSError:
            time.sleep(0.002)
            continue
        header = struct.pack("!BBHHH", 8, 0, 0, 7, 1)
        sock.sendto(struct.pack("!BBHHH", 8, 0, checksum(header), 7, 1), (address, 0))
        try:
            data, peer = sock.recvfrom(256)
            if peer[0] == address and data[20] == 0:
                break
        except socket.timeout:
            pass
    print(f"{(time.monotonic() - start) * 1000:.1f}", flush=True)
"""


def bench_overlay_reach(runs: int = 20) -> None:
    """From `run -d` returning on h3 until a container on h1 resolves the new name and gets an echo reply."""
    with Lab("breach", hosts=3, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, _, h3 = lab.hosts
        h1.cli("network", "create", "-d", "overlay", "reach")
        h1.cli("run", "-d", "--name", "watcher", "--network", "reach", "sleep", "infinity")
        probe = subprocess.Popen([".venv/bin/python", "-m", "boxnet.cli.main", "exec", "-i", "watcher", "python3",
                                  "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env={**__import__("os").environ, **h1.env})  # fmt: skip
        assert probe.stdin and probe.stdout
        latencies, starts = [], []
        try:
            for index in range(runs):
                started = time.monotonic()
                h3.cli("run", "-d", "--name", f"t{index}", "--network", "reach", "sleep", "infinity")
                starts.append(time.monotonic() - started)
                probe.stdin.write(f"t{index}\n")
                probe.stdin.flush()
                latencies.append(float(probe.stdout.readline()))
        finally:
            probe.stdin.close()
            probe.wait(10)
        p50, p95 = statistics.median(latencies), sorted(latencies)[int(0.95 * (len(latencies) - 1))]
        print(f"(o2) `run` on h3 returned -> a container on h1 resolves and pings it: p50 {p50:.1f} ms, p95 {p95:.1f} "
              f"ms over {runs} runs (target p50 <= 100 ms); `run -d` itself: p50 "
              f"{statistics.median(starts) * 1000:.0f} ms")


def _peers_of(host: LabHost, network: str) -> set[str]:
    network_id = host.client.get(f"/networks/{network}")["Id"]
    listing = host.run("bridge", "-j", "fdb", "show", "dev", f"vx-{network_id[:12]}", check=True).stdout
    return {e.get("dst", "") for e in json.loads(listing) if e.get("dst")}


def bench_convergence(ttl: int = 3, runs: int = 3) -> None:
    """A node's daemon is killed (nobody renews its lease): how long until the others drop its endpoints."""
    with Lab("bconv", hosts=3, node_ttl=ttl, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, _, h3 = lab.hosts
        h1.cli("network", "create", "-d", "overlay", "conv")
        h1.cli("run", "-d", "--name", "a", "--network", "conv", "sleep", "infinity")
        h3.cli("run", "-d", "--name", "b", "--network", "conv", "sleep", "infinity")
        took = []
        for _ in range(runs):
            deadline = time.monotonic() + 10
            while h3.address not in _peers_of(h1, "conv") and time.monotonic() < deadline:
                time.sleep(0.05)
            killed = time.monotonic()
            h3.stop_daemon(signal.SIGKILL)
            while h3.address in _peers_of(h1, "conv"):
                time.sleep(0.05)
            took.append(time.monotonic() - killed)
            h3.start_daemon()
        print(f"(o3) a dead node's endpoints gone from its peers: median {statistics.median(took):.2f} s after its "
              f"daemon died, with a node TTL of {ttl} s (runs: {', '.join(f'{t:.2f}' for t in took)})")


def bench_macvlan(sandbox: Sandbox, seconds: int = 5, rounds: int = 4) -> None:
    """A container on a macvlan of the sandbox's uplink against the host itself on that uplink, both to an
    iperf3 server on the simulated outside."""
    server = sandbox.spawn_in(sandbox.outside, "iperf3", "-s", "-B", OUTSIDE_GW)
    sandbox.helpers.append(server)
    sandbox.cli("network", "create", "-d", "macvlan", "--subnet", "198.51.100.0/24", "--gateway", OUTSIDE_GW,
                "--ip-range", "198.51.100.128/27", "-o", "parent=uplink0", "lan")  # fmt: skip
    sandbox.cli("run", "-d", "--name", "m", "--network", "lan", "sleep", "infinity")
    time.sleep(0.5)
    results: dict[str, list[float]] = {"macvlan": [], "parent": []}
    for _ in range(rounds):
        run = sandbox.cli("exec", "m", "iperf3", "-c", OUTSIDE_GW, "-t", str(seconds), "-J", timeout=seconds + 30)
        results["macvlan"].append(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
        host = sandbox.in_host("iperf3", "-c", OUTSIDE_GW, "-t", str(seconds), "-J", check=True, timeout=seconds + 30)
        results["parent"].append(json.loads(host.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
    macvlan, parent = statistics.median(results["macvlan"]), statistics.median(results["parent"])
    print(f"(m) macvlan TCP, container -> outside: {macvlan:.2f} Gbit/s; the host on the parent: {parent:.2f} Gbit/s; "
          f"ratio {macvlan / parent:.2f} (medians of {rounds} x {seconds} s, interleaved)")
    sandbox.remove_everything()
