"""Benchmarks of issue #11 on a lab of three: `service create` until N tasks run, connections and throughput
through a VIP against a task's own address, and how soon a new task gets traffic and a removed one stops."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time

from boxnet.lab import Lab, LabHost

SINK = ["python3", "-c", "import socket\ns = socket.socket(); s.setsockopt(1, 2, 1); s.bind(('', 9)); s.listen(4096)\n"
        "while True:\n c, _ = s.accept(); c.close()"]  # fmt: skip
WHOAMI = ["python3", "-c", "import socket, socketserver\nclass H(socketserver.BaseRequestHandler):\n"
          " def handle(self): self.request.sendall(socket.gethostname().encode())\n"
          "socketserver.ThreadingTCPServer.allow_reuse_address = True\n"
          "socketserver.ThreadingTCPServer(('', 7), H).serve_forever()"]  # fmt: skip


def _create(host: LabHost, name: str, replicas: int, args: list[str], network: str) -> None:
    client = host.client
    try:
        client.post("/services/create", {"Name": name, "Mode": {"Replicated": {"Replicas": replicas}},
                                         "TaskTemplate": {"ContainerSpec": {"Image": "host", "Args": args},
                                                          "Networks": [{"Target": network}]}})  # fmt: skip
    finally:
        client.close()


def _running(host: LabHost, name: str) -> list[dict]:
    client = host.client
    try:
        return [t for t in client.get("/tasks", filters=json.dumps({"service": {name: True}}))
                if t["Status"]["State"] == "running"]
    finally:
        client.close()


def bench_service_start() -> None:
    with Lab("bsvc", hosts=3, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1 = lab.hosts[0]
        h1.cli("network", "create", "-d", "overlay", "n")
        network = h1.client.get("/networks/n")["Id"]
        for count in (1, 10, 50):
            started = time.monotonic()
            _create(h1, f"s{count}", count, ["sleep", "600"], network)
            while len(_running(h1, f"s{count}")) < count:
                time.sleep(0.05)
            took = time.monotonic() - started
            print(f"(s1) service create -> {count} task(s) running across 3 hosts: {took:.2f} s")
            h1.cli("service", "rm", f"s{count}")
            while any(e for e in _running(h1, f"s{count}")):
                time.sleep(0.1)


# The name is resolved once, before the clock starts: the loop measures connections, not DNS questions.
CONNECT = ("import socket, sys, time\naddress = socket.gethostbyname(sys.argv[1]); n = int(sys.argv[2])\n"
           "t = time.monotonic()\nfor _ in range(n):\n s = socket.create_connection((address, 9), 2); s.close()\n"
           "print(n / (time.monotonic() - t))")


def bench_vip(seconds: int = 5, rounds: int = 4) -> None:
    with Lab("bvip", hosts=2, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, h2 = lab.hosts
        h1.cli("network", "create", "-d", "overlay", "--attachable", "n")
        network = h1.client.get("/networks/n")["Id"]
        _create(h1, "perf", 1, ["iperf3", "-s"], network)
        _create(h1, "sink", 1, SINK, network)
        while len(_running(h1, "perf")) < 1 or len(_running(h1, "sink")) < 1:
            time.sleep(0.1)
        h2.cli("run", "-d", "--name", "c", "--network", "n", "sleep", "infinity")
        time.sleep(1)
        direct = {name: next(a["Addresses"][0] for a in _running(h1, name)[0]["NetworksAttachments"]
                             if a["Network"]["ID"] == network) for name in ("perf", "sink")}  # fmt: skip
        rates: dict[str, list[float]] = {"vip": [], "direct": []}
        speeds: dict[str, list[float]] = {"vip": [], "direct": []}
        for _ in range(rounds):
            for kind, perf, sink in (("vip", "perf", "sink"), ("direct", direct["perf"], direct["sink"])):
                run = h2.cli("exec", "c", "iperf3", "-c", perf, "-t", str(seconds), "-J", timeout=seconds + 30)
                speeds[kind].append(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
                rates[kind].append(float(h2.cli("exec", "c", "python3", "-c", CONNECT, sink, "2000").stdout))
        vip_speed, direct_speed = statistics.median(speeds["vip"]), statistics.median(speeds["direct"])
        vip_rate, direct_rate = statistics.median(rates["vip"]), statistics.median(rates["direct"])
        print(f"(s2) through the VIP: {vip_speed:.2f} Gbit/s and {vip_rate:.0f} connections/s; to the task's own "
              f"address: {direct_speed:.2f} Gbit/s and {direct_rate:.0f}/s; ratios {vip_speed / direct_speed:.2f} "
              f"and {vip_rate / direct_rate:.2f} (target >= 0.95; medians of {rounds}, interleaved)")


def bench_mesh(seconds: int = 5, rounds: int = 4) -> None:
    """The routing mesh from h1's own namespace to a task on h2: through h1's published port (DNAT, then
    masquerade into the ingress network), against the task's ingress address straight over the same VXLAN
    path (h1 has an address there); and through h2's port, where the task is local and sees the client."""
    with Lab("bmesh", hosts=2, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, h2 = lab.hosts
        for name, args, port in (("perf", ["iperf3", "-s"], 5201), ("sink", SINK, 9)):
            h1.cli("service", "create", "--name", name, "--constraint", "node.hostname==bmesh-h2", "-p",
                   f"{port}:{port}", "host", *args)  # fmt: skip
        while len(_running(h1, "perf")) < 1 or len(_running(h1, "sink")) < 1:
            time.sleep(0.1)
        ingress = h1.client.get("/networks/ingress")["Id"]
        own = {name: next(a["Addresses"][0].split("/")[0] for a in _running(h1, name)[0]["NetworksAttachments"]
                          if a["Network"]["ID"] == ingress) for name in ("perf", "sink")}  # fmt: skip
        time.sleep(1)
        paths = {"mesh via h1": (h1.address, h1.address), "task address": (own["perf"], own["sink"]),
                 "mesh via h2 (local task)": (h2.address, h2.address)}  # fmt: skip
        rates: dict[str, list[float]] = {kind: [] for kind in paths}
        speeds: dict[str, list[float]] = {kind: [] for kind in paths}
        for _ in range(rounds):
            for kind, (perf, sink) in paths.items():
                run = h1.run("iperf3", "-c", perf, "-t", str(seconds), "-J", timeout=seconds + 30)
                speeds[kind].append(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
                rates[kind].append(float(h1.run("python3", "-c", CONNECT, sink, "2000", check=True).stdout))
        speed = {kind: statistics.median(values) for kind, values in speeds.items()}
        rate = {kind: statistics.median(values) for kind, values in rates.items()}
        for kind in paths:
            print(f"(s4) {kind}: {speed[kind]:.2f} Gbit/s, {rate[kind]:.0f} connections/s")
        base = "task address"
        print(f"(s4) mesh via h1 against the task's address: ratios {speed['mesh via h1'] / speed[base]:.2f} "
              f"(throughput) and {rate['mesh via h1'] / rate[base]:.2f} (connections); medians of {rounds}, "
              "interleaved")


# A task's hostname is its container's short id (as Docker's): argv[1] is the first task's.
APPEAR = ("import socket, sys, time\nstart = time.monotonic()\nwhile True:\n"
          " s = socket.create_connection(('who', 7), 2); name = s.recv(100).decode(); s.close()\n"
          " if name != sys.argv[1]: break\nprint(time.monotonic() - start)")
VANISH = ("import socket, sys, time\nstart = time.monotonic(); seen = 0\nwhile seen < 50:\n"
          " s = socket.create_connection(('who', 7), 2); name = s.recv(100).decode(); s.close()\n"
          " seen = seen + 1 if name == sys.argv[1] else 0\nprint(time.monotonic() - start)")
ONE = "import socket; s = socket.create_connection(('who', 7), 2); print(s.recv(100).decode())"


def bench_task_traffic() -> None:
    with Lab("btt", hosts=3, directory=tempfile.mkdtemp(prefix="boxnet-bench-")) as lab:
        h1, h2, _ = lab.hosts
        h1.cli("network", "create", "-d", "overlay", "--attachable", "n")
        network = h1.client.get("/networks/n")["Id"]
        _create(h1, "who", 1, WHOAMI, network)
        while len(_running(h1, "who")) < 1:
            time.sleep(0.1)
        h2.cli("run", "-d", "--name", "c", "--network", "n", "sleep", "infinity")
        time.sleep(1)
        env = {**os.environ, **h1.env}
        first = h2.cli("exec", "c", "python3", "-c", ONE).stdout.strip()
        started = time.monotonic()
        subprocess.run([".venv/bin/python", "-m", "boxnet.cli.main", "service", "scale", "who=2"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        h2.cli("exec", "c", "python3", "-c", APPEAR, first, timeout=120)
        new = time.monotonic() - started
        started = time.monotonic()
        subprocess.run([".venv/bin/python", "-m", "boxnet.cli.main", "service", "scale", "who=1"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        h2.cli("exec", "c", "python3", "-c", VANISH, first, timeout=120)
        gone = time.monotonic() - started
        print(f"(s3) from `service scale` (the CLI started) until a new task gets traffic through the VIP: "
              f"{new * 1000:.0f} ms; until a removed one gets none (the last of 50 requests in a row that all went "
              f"to the remaining task): {gone * 1000:.0f} ms")
