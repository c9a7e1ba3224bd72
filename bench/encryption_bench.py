"""Benchmarks of issue #12 on a lab of two: an encrypted overlay (VXLAN inside the nodes' WireGuard) against
raw WireGuard between the same two host namespaces (the same interfaces, no VXLAN, no containers). Labs only:
every packet stays in namespaces made here."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from capture_bench import TICKS

from boxnet.lab import Lab, LabHost
from boxnet.testing.sandbox import pids_of


def _iperf(host: LabHost, argv: list[str], seconds: int) -> float:
    result = host.run(*argv, "-t", str(seconds), "-J", check=True, timeout=seconds + 30)
    return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def _wireguard_address(host: LabHost) -> str:
    shown = host.run("ip", "-4", "-o", "addr", "show", check=True).stdout.split()
    return next(shown[i + 1].split("/")[0] for i, word in enumerate(shown) if word == "inet"
                and shown[i + 1].startswith("100.64."))  # fmt: skip


def _busy_seconds() -> float:
    """CPU time the whole machine spent busy (every CPU, user + system + softirq...), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS  # all but idle and iowait


def _wireguard_go_seconds(hosts: list[LabHost]) -> tuple[float, float]:
    """(user, system) CPU time of the wireguard-go processes in these hosts' namespaces (found by namespace and
    executable). System time includes the kernel's receive path, which a TUN write runs in the writer's own
    context: for the overlay, VXLAN decapsulation, the bridge and the veth."""
    inodes = {os.stat(f"/run/netns/{h.name}").st_ino for h in hosts}
    user = system = 0.0
    for pid in pids_of("wireguard-go", inodes):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / TICKS
            system += int(fields[12]) / TICKS
    return user, system


def bench_encrypted_overlay(seconds: int = 5, rounds: int = 4) -> None:
    with Lab("benc", hosts=2, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, h2 = lab.hosts
        h1.cli("network", "create", "-d", "overlay", "--opt", "encrypted", "sealed")
        h1.cli("run", "-d", "--name", "server", "--network", "sealed", "iperf3", "-s")
        h2.cli("run", "-d", "--name", "client", "--network", "sealed", "sleep", "infinity")
        target = h1.client.get("/containers/server/json")["NetworkSettings"]["Networks"]["sealed"]["IPAddress"]
        raw_target = _wireguard_address(h1)
        raw = subprocess.Popen(["ip", "netns", "exec", h1.name, "iperf3", "-s", "-B", raw_target, "-p", "5202"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1)
        results: dict[str, list[float]] = {"overlay": [], "raw": []}
        # CPU seconds per gigabyte moved: the machine's, and wireguard-go's user and system time
        costs: dict[str, list[tuple[float, float, float]]] = {"overlay": [], "raw": []}

        def measured(kind: str, run: Callable[[], float]) -> None:
            busy, (user, system) = _busy_seconds(), _wireguard_go_seconds(lab.hosts)
            rate = run()
            gigabytes = rate * seconds / 8
            after_user, after_system = _wireguard_go_seconds(lab.hosts)
            costs[kind].append(((_busy_seconds() - busy) / gigabytes, (after_user - user) / gigabytes,
                                (after_system - system) / gigabytes))  # fmt: skip
            results[kind].append(rate)

        def overlay_run() -> float:
            run = h2.cli("exec", "client", "iperf3", "-c", target, "-t", str(seconds), "-J", timeout=seconds + 30)
            return json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9

        try:
            for _ in range(rounds):  # interleaved: the machine's noise hits both alike
                measured("overlay", overlay_run)
                measured("raw", lambda: _iperf(h2, ["iperf3", "-c", raw_target, "-p", "5202"], seconds))
        finally:
            raw.terminate()
            raw.wait(5)
        overlay, plain = statistics.median(results["overlay"]), statistics.median(results["raw"])
        engine = "wireguard-go" if h1.run("sh", "-c", "ls /sys/module/wireguard").returncode else "kernel WireGuard"
        print(f"(e1) encrypted overlay: {overlay:.2f} Gbit/s; raw {engine} between the same namespaces: "
              f"{plain:.2f} Gbit/s; ratio {overlay / plain:.2f} (target >= 0.9; medians of {rounds}, interleaved)")
        for kind in ("overlay", "raw"):
            machine, user, system = (statistics.median(c[i] for c in costs[kind]) for i in range(3))
            print(f"     {kind:>7}: CPU per GB moved: {machine:.1f} s on the machine, of which wireguard-go "
                  f"{user:.1f} s user + {system:.1f} s system ({os.cpu_count()} CPUs, both nodes on them)")
