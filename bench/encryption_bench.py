"""Benchmarks of issue #12 on a lab of two: an encrypted overlay (VXLAN inside the nodes' WireGuard) against
raw WireGuard between the same two host namespaces (the same interfaces, no VXLAN, no containers). Labs only:
every packet stays in namespaces made here."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time

from boxnet.lab import Lab, LabHost


def _iperf(host: LabHost, argv: list[str], seconds: int) -> float:
    result = host.run(*argv, "-t", str(seconds), "-J", check=True, timeout=seconds + 30)
    return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def _wireguard_address(host: LabHost) -> str:
    shown = host.run("ip", "-4", "-o", "addr", "show", check=True).stdout.split()
    return next(shown[i + 1].split("/")[0] for i, word in enumerate(shown) if word == "inet"
                and shown[i + 1].startswith("100.64."))  # fmt: skip


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
        try:
            for _ in range(rounds):  # interleaved: the machine's noise hits both alike
                run = h2.cli("exec", "client", "iperf3", "-c", target, "-t", str(seconds), "-J",
                             timeout=seconds + 30)  # fmt: skip
                results["overlay"].append(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
                results["raw"].append(_iperf(h2, ["iperf3", "-c", raw_target, "-p", "5202"], seconds))
        finally:
            raw.terminate()
            raw.wait(5)
        overlay, plain = statistics.median(results["overlay"]), statistics.median(results["raw"])
        engine = "wireguard-go" if h1.run("sh", "-c", "ls /sys/module/wireguard").returncode else "kernel WireGuard"
        print(f"(e1) encrypted overlay: {overlay:.2f} Gbit/s; raw {engine} between the same namespaces: "
              f"{plain:.2f} Gbit/s; ratio {overlay / plain:.2f} (target >= 0.9; medians of {rounds}, interleaved)")
