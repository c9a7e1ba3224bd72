"""(service-capture) A service's traffic on a lab of three, captured by `boxnet capture service:web` (every
task on every node, one pcapng, from the manager) and by plain tcpdump in each task's network namespace (what
one would do by hand on each node): packets captured, dropped by the kernel, and the CPU each adds.

The traffic is iperf3 from a client container on the manager to the service's task on each node at once,
paced so that every run moves the same. The CPU is the machine's busy time, every process and softirq: the
nodes all share this machine, so this is the whole cluster's cost. Labs only: every packet stays in
namespaces made here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from encryption_bench import _busy_seconds

from boxnet.capture import pcapng
from boxnet.lab import Lab, LabHost

SECONDS = 5


def _inspect(host: LabHost, path: str) -> dict:
    client = host.client
    try:
        return client.get(path)
    finally:
        client.close()


def bench_service_capture(rounds: int = 3) -> None:
    """Paced traffic, so that every run moves the same: the CPU a capture adds is then comparable."""
    with Lab("bcap", hosts=3, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1 = lab.hosts[0]
        h1.cli("network", "create", "-d", "overlay", "--attachable", "front")
        h1.cli("service", "create", "--name", "web", "--mode", "global", "--network", "front", "host", "iperf3", "-s")
        deadline = time.monotonic() + 60
        while True:
            tasks = [t for t in _inspect(h1, "/tasks") if t["Status"]["State"] == "running"]
            if len(tasks) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        h1.cli("run", "-d", "--name", "client", "--network", "front", "sleep", "infinity")
        addresses = [t["NetworksAttachments"][0]["Addresses"][0].split("/")[0] for t in tasks]
        namespaces = [_inspect(h, f"/containers/{c}/json")["NetworkSettings"]["SandboxKey"]
                      for h in lab.hosts for c in h.cli("ps", "-q").stdout.split()
                      if _inspect(h, f"/containers/{c}/json")["Config"]["Labels"].get("com.docker.swarm.task.id")]
        def traffic(rate: str) -> float:
            """iperf3 to every task at once; the total Gbit/s."""
            limit = f"-b {rate}" if rate else ""
            load = " ".join(f"iperf3 -c {a} -t {SECONDS} {limit} -J > /tmp/ip{i}.json &"
                            for i, a in enumerate(addresses))  # fmt: skip
            h1.cli("exec", "client", "sh", "-c", load + " wait", timeout=SECONDS + 60)
            total = 0.0
            for i in range(len(addresses)):
                shown = h1.cli("exec", "client", "cat", f"/tmp/ip{i}.json").stdout
                total += json.loads(shown)["end"]["sum_received"]["bits_per_second"] / 1e9
            return total

        print(f"(service-capture) iperf3 to a service's 3 tasks on 3 nodes at once, paced, {SECONDS} s a run; each "
              "round runs it three times: not captured, captured by tcpdump in each task's namespace, captured by "
              "boxnet capture service:web (one pcapng, from the manager). A capture's CPU is the machine's busy time "
              "(every process, softirqs too) less the uncaptured run's")  # fmt: skip
        for rate in ("150M", "500M"):
            rows = []
            for _ in range(rounds):
                busy = _busy_seconds()
                traffic(rate)
                baseline = _busy_seconds() - busy
                plain_n, plain_d, plain_busy = _tcpdumps(namespaces, lambda r=rate: traffic(r))
                ours_n, ours_d, ours_busy, total = _boxnet(h1, lambda r=rate: traffic(r))
                rows.append((total, plain_n, plain_d, plain_busy - baseline, ours_n, ours_d, ours_busy - baseline))
            medians = [statistics.median(column) for column in zip(*rows, strict=True)]
            total, plain_n, plain_d, plain_cpu, ours_n, ours_d, ours_cpu = medians
            print(f"    {rate}bit/s a task ({total:.2f} Gbit/s in all): tcpdump x3: {plain_n:,.0f} packets, "
                  f"{plain_d:,.0f} dropped, CPU {plain_cpu:.2f} s ({plain_cpu / max(plain_n, 1) * 1e6:.0f} µs a "
                  f"packet); boxnet: {ours_n:,.0f} packets, {ours_d:,.0f} dropped, CPU {ours_cpu:.2f} s "
                  f"({ours_cpu / max(ours_n, 1) * 1e6:.0f} µs a packet); ratio {ours_cpu / max(plain_cpu, 0.01):.2f}x "
                  f"(medians of {rounds})")  # fmt: skip


def _tcpdumps(namespaces: list[str], traffic: Callable[[], float]) -> tuple[int, int, float]:
    directory = tempfile.mkdtemp(prefix="boxnet-bench-cap-")
    plain = [subprocess.Popen(["nsenter", f"--net={ns}", "tcpdump", "-i", "any", "-w",
                               os.path.join(directory, f"plain{i}.pcap"), "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i, ns in enumerate(namespaces)]  # fmt: skip
    time.sleep(1.5)
    busy = _busy_seconds()
    traffic()
    used = _busy_seconds() - busy
    captured = dropped = 0
    for process in plain:
        process.send_signal(signal.SIGINT)
        text = process.communicate(timeout=60)[1].decode()
        captured += int(re.search(r"(\d+) packets captured", text).group(1))
        dropped += int(re.search(r"(\d+) packets dropped by kernel", text).group(1))
    shutil.rmtree(directory, ignore_errors=True)
    return captured, dropped, used


def _boxnet(manager: LabHost, traffic: Callable[[], float]) -> tuple[int, int, float, float]:
    directory = tempfile.mkdtemp(prefix="boxnet-bench-cap-")
    out = os.path.join(directory, "boxnet.pcapng")
    capture = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "capture", "service:web", "-f", "tcp", "-w",
                                out], env={**os.environ, **manager.env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(2.5)
    busy = _busy_seconds()
    total = traffic()
    used = _busy_seconds() - busy
    capture.send_signal(signal.SIGINT)
    capture.communicate(timeout=60)
    scanned = pcapng.scan_file(out)
    shutil.rmtree(directory, ignore_errors=True)
    return scanned.packets, sum(i.dropped or 0 for i in scanned.interfaces), used, total
