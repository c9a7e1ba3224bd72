"""(service-capture) A service's traffic on a lab of three, captured in the same run by `boxnet capture
service:web` (every task on every node, one pcapng, from the manager) and by plain tcpdump in each task's
network namespace (what one would do by hand on each node): packets captured, dropped by the kernel, CPU.

The traffic is iperf3 from a client container on the manager to the service's task on each node at once.
boxnet's CPU is what it runs for the capture on every node: its tcpdumps, the daemons (which turn pcap into
pcapng, stream it to the manager and merge it there; otherwise near idle) and the `boxnet capture` client.
Labs only: every packet stays in namespaces made here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from capture_bench import children, cpu_seconds

from boxnet.capture import pcapng
from boxnet.lab import Lab, LabHost

SECONDS = 5


def _inspect(host: LabHost, path: str) -> dict:
    client = host.client
    try:
        return client.get(path)
    finally:
        client.close()


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        for child in children(queue.pop()):
            found.append(child)
            queue.append(child)
    return found


def bench_service_capture(rounds: int = 3) -> None:
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
        daemons = [h.process.pid for h in lab.hosts if h.process is not None]
        load = " ".join(f"iperf3 -c {a} -t {SECONDS} -J > /tmp/ip{i}.json &" for i, a in enumerate(addresses))
        for round_number in range(rounds):
            directory = tempfile.mkdtemp(prefix="boxnet-bench-cap-")
            plain = [subprocess.Popen(["nsenter", f"--net={ns}", "tcpdump", "-i", "any", "-w",
                                       os.path.join(directory, f"plain{i}.pcap"), "tcp"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for i, ns in enumerate(namespaces)]  # fmt: skip
            before = {p: set(_descendants(p)) for p in daemons}
            out = os.path.join(directory, "boxnet.pcapng")
            capture = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "capture", "service:web", "-f", "tcp",
                                        "-w", out], env={**os.environ, **h1.env}, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)  # fmt: skip
            time.sleep(2.5)
            ours = [c for p in daemons for c in _descendants(p) if c not in before[p]]
            theirs = [c for p in plain for c in _descendants(p.pid)] + [p.pid for p in plain]

            def cpu(pids: list[int]) -> float:
                return sum(cpu_seconds(p) for p in pids)

            start = (cpu(daemons) + cpu(ours) + cpu_seconds(capture.pid), cpu(theirs))
            h1.cli("exec", "client", "sh", "-c", load + " wait", timeout=SECONDS + 60)
            end = (cpu(daemons) + cpu(ours) + cpu_seconds(capture.pid), cpu(theirs))
            rates = []
            for i in range(len(addresses)):
                shown = h1.cli("exec", "client", "cat", f"/tmp/ip{i}.json").stdout
                rates.append(json.loads(shown)["end"]["sum_received"]["bits_per_second"] / 1e9)
            capture.send_signal(signal.SIGINT)
            capture.communicate(timeout=60)
            plain_captured = plain_dropped = 0
            for process in plain:
                process.send_signal(signal.SIGINT)
                text = process.communicate(timeout=60)[1].decode()
                plain_captured += int(re.search(r"(\d+) packets captured", text).group(1))
                plain_dropped += int(re.search(r"(\d+) packets dropped by kernel", text).group(1))
            scanned = pcapng.scan_file(out)
            dropped = sum(i.dropped or 0 for i in scanned.interfaces)
            ours_cpu, plain_cpu = end[0] - start[0], end[1] - start[1]
            if round_number == 0:
                print(f"(service-capture) iperf3 to a service's 3 tasks on 3 nodes at once, {SECONDS} s, captured "
                      "twice: boxnet capture service:web (one pcapng) and tcpdump in each task's namespace")
            print(f"    round {round_number + 1}: {sum(rates):.2f} Gbit/s in all; tcpdump x3: {plain_captured:,} "
                  f"packets, {plain_dropped:,} dropped, CPU {plain_cpu:.2f} s; boxnet: {scanned.packets:,} packets "
                  f"({len(scanned.interfaces)} interfaces), {dropped:,} dropped, CPU {ours_cpu:.2f} s "
                  f"(ratio {ours_cpu / max(plain_cpu, 0.01):.2f}x)")  # fmt: skip
