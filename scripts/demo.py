#!/usr/bin/env python3
"""`make demo`: a user network, two containers talking, a published port reached from the host; then a lab of
three hosts in a swarm, with an overlay network across them and a service published on every node, traced,
captured and checked across the nodes.

The daemon runs in a sandbox host namespace of its own (with a simulated outside), so the demo never
touches this machine's real network. Pass --keep to leave it running and explore with the printed commands.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from boxnet.testing import images
from boxnet.testing.registry import REGISTRY_ADDR, SandboxRegistry
from boxnet.testing.registry import available as registry_available
from boxnet.testing.sandbox import WEB_ADDR, Sandbox

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def step(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


def show(argv: list[str], env: dict[str, str], prefix: list[str] | None = None) -> str:
    printable = " ".join(shlex.quote(a) for a in argv)
    print(f"{DIM}${RESET} {printable}")
    result = subprocess.run([*(prefix or []), *argv], capture_output=True, text=True, env=env, timeout=60)
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(output)
    if result.returncode != 0:
        raise SystemExit(f"demo: `{printable}` failed with {result.returncode}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox and its daemon running")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: boxnetd needs root (network namespaces, bridges, nftables)", file=sys.stderr)
        return 1
    bin_dir = os.path.dirname(sys.executable)
    step("Starting boxnetd in a sandbox host namespace, with a simulated outside world")
    sandbox = Sandbox(tag="demo" + os.urandom(2).hex(),
                      extra_daemon_args=["--insecure-registry", REGISTRY_ADDR]).start()  # its registry: plain HTTP
    env = {**sandbox.env(), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    host = ["ip", "netns", "exec", sandbox.host]
    print(f"daemon pid {sandbox.daemon.pid if sandbox.daemon else '?'}, namespace {sandbox.host}, "
          f"state in {sandbox.root}")  # fmt: skip
    try:
        step("A user-defined bridge network")
        show(["boxnet", "network", "create", "--subnet", "10.10.0.0/24", "appnet"], env)
        show(["boxnet", "network", "ls"], env)

        step("Two containers on it: a web server publishing port 80 as 8080, and a client")
        show(["boxnet", "run", "-d", "--name", "web", "--network", "appnet", "-p", "8080:80",
              "python3", "-m", "http.server", "80"], env)  # fmt: skip
        show(["boxnet", "run", "-d", "--name", "client", "--network", "appnet", "sleep", "600"], env)
        show(["boxnet", "ps"], env)
        show(["boxnet", "inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}", "web"], env)
        listening = ["boxnet", "exec", "web", "sh", "-c", "ss -ltn | grep -q ':80 '"]
        for _ in range(100):
            if subprocess.run(listening, env=env).returncode == 0:
                break
            time.sleep(0.05)

        step("The client talks to the server over the bridge, by name (the embedded DNS at 127.0.0.11)")
        show(["boxnet", "exec", "client", "cat", "/etc/resolv.conf"], env)
        show(["boxnet", "exec", "client", "curl", "-s", "-o", "/dev/null", "-w",
              "HTTP %{http_code} from %{remote_ip}\\n", "http://web/"], env)  # fmt: skip
        show(["boxnet", "exec", "client", "ip", "-br", "addr", "show", "eth0"], env)
        show(["boxnet", "dns", "log", "client"], env)

        step("The published port, reached from the host: on 127.0.0.1 and on the host's own address")
        show(["curl", "-s", "-o", "/dev/null", "-w", "HTTP %{http_code} via 127.0.0.1:8080\\n",
              "http://127.0.0.1:8080/"], env, prefix=host)  # fmt: skip
        show(["curl", "-s", "-o", "/dev/null", "-w", "HTTP %{http_code} via 198.51.100.2:8080\\n",
              "http://198.51.100.2:8080/"], env, prefix=host)  # fmt: skip

        step("And out to the (simulated) internet, masqueraded behind the host's address")
        show(["boxnet", "exec", "client", "curl", "-s", "-w", "  <- the address the outside saw\\n",
              f"http://{WEB_ADDR}/"], env)  # fmt: skip

        step("What boxnet made in the kernel: the veths on the bridge, and the DNAT map entry")
        show(["ip", "-br", "link", "show", "type", "veth"], env, prefix=host)
        show(["nft", "list", "map", "inet", "boxnet", "pub4_any"], env, prefix=host)
        show(["boxnet", "logs", "web"], env)

        if registry_available():
            images_step(sandbox, env)

        step("Troubleshooting by name: the topology, and a traced probe")
        show(["boxnet", "topology", "--no-rules"], env)
        show(["boxnet", "trace", "client", "web:80"], env)
        if args.keep:
            print(f"\nKept. Try:  export BOXNET_HOST=unix://{sandbox.socket}; boxnet ps")
            print(f"Host namespace: ip netns exec {sandbox.host} bash    (daemon pid {sandbox.daemon.pid})")
            return 0
        step("Cleaning up")
        show(["boxnet", "rm", "-f", "web", "client"], env)
        show(["boxnet", "network", "rm", "appnet"], env)
    finally:
        if not args.keep:
            sandbox.stop()
    many_hosts(bin_dir)
    print(f"\n{BOLD}Done.{RESET} Everything above ran in namespaces the demo made, and is gone now.")
    return 0


def images_step(sandbox: Sandbox, env: dict[str, str]) -> None:
    step("Images: a registry in the simulated outside (Debian's docker-registry), filled with skopeo")
    registry = SandboxRegistry(sandbox, os.path.join(sandbox.root, "registry")).start()
    built = images.image([images.busybox_layer()], {"Cmd": ["sh"], "Env": [images.DEFAULT_PATH]}, compress="gzip")
    archive = images.write(os.path.join(sandbox.root, "busybox.tar"), images.docker_archive([(built, ["busybox:v1"])]))
    registry.push_archive(archive, "tools/busybox:v1")
    name = f"{registry.address}/tools/busybox:v1"
    show(["boxnet", "pull", name], env)
    show(["boxnet", "images"], env)
    step("A container of it on appnet, with a host directory bound in: what it fetches lands on the host")
    shared = os.path.join(sandbox.root, "shared")
    show(["boxnet", "run", "--rm", "--network", "appnet", "-v", f"{shared}:/app", name, "wget", "-q", "-O",
          "/app/index.html", "http://web/"], env)  # fmt: skip
    show(["ls", "-l", shared], env)


def many_hosts(bin_dir: str) -> None:
    """A lab: three hosts (namespaces on an underlay bridge), each with its own boxnetd, in one swarm."""
    import tempfile

    from boxnet.lab import Lab

    step("Many hosts: a lab of three, each a namespace with its own boxnetd, formed into a swarm on etcd")
    lab = Lab("demo" + os.urandom(2).hex(), hosts=3, directory=tempfile.mkdtemp(prefix="boxnet-demo-lab-"))
    started = time.monotonic()
    lab.up()
    print(f"lab up in {time.monotonic() - started:.1f} s: " + ", ".join(f"{h.name} at {h.address}" for h in lab.hosts))
    try:
        h1, _, h3 = lab.hosts
        path = f"{bin_dir}:{os.environ.get('PATH', '')}"
        env1, env3 = ({**os.environ, **h.env, "PATH": path} for h in (h1, h3))
        show(["boxnet", "node", "ls"], env1)

        step("An overlay network across the nodes (VXLAN, programmed from etcd: no flooding, no learning)")
        show(["boxnet", "network", "create", "-d", "overlay", "--attachable", "mesh"], env1)
        show(["boxnet", "network", "ls", "--filter", "driver=overlay"], env3)
        show(["boxnet", "run", "-d", "--name", "api", "--network", "mesh", "python3", "-m", "http.server", "80"],
             env1)  # fmt: skip
        show(["boxnet", "run", "-d", "--name", "worker", "--network", "mesh", "sleep", "600"], env3)
        listening = ["boxnet", "exec", "api", "sh", "-c", "ss -ltn | grep -q ':80 '"]
        for _ in range(100):
            if subprocess.run(listening, env=env1).returncode == 0:
                break
            time.sleep(0.05)

        step(f"worker on {h3.name} reaches api on {h1.name} by name, across the underlay")
        show(["boxnet", "exec", "worker", "curl", "-s", "-o", "/dev/null", "-w",
              "HTTP %{http_code} from %{remote_ip} (api.mesh)\\n", "http://api.mesh/"], env3)  # fmt: skip
        show(["boxnet", "exec", "worker", "ip", "route"], env3)
        step(f"What {h3.name}'s VXLAN device knows: one static entry per remote container")
        show(["bridge", "fdb", "show", "dev", f"vx-{_network_id(h1, 'mesh')[:12]}"], env3, prefix=["ip", "netns",
             "exec", h3.name])  # fmt: skip
        show(["boxnet", "trace", "worker", "api:80"], env3)

        step("A service of two tasks, its port published on every node: the routing mesh")
        show(["boxnet", "service", "create", "--name", "web", "--replicas", "2", "--network", "mesh", "-p", "8080:80",
              "host", "python3", "-m", "http.server", "80"], env1)  # fmt: skip
        _wait_running(h1, "web", 2)
        show(["boxnet", "service", "ps", "web"], env1)
        for host in lab.hosts:  # each node's mesh follows the tasks' state within a few rounds
            for _ in range(100):
                if h3.run("curl", "-s", "-o", "/dev/null", "-m", "1", f"http://{host.address}:8080/").returncode == 0:
                    break
                time.sleep(0.05)
        for host in lab.hosts:
            show(["curl", "-s", "-o", "/dev/null", "-w", f"HTTP %{{http_code}} through {host.name}\\n",
                  f"http://{host.address}:8080/"], env3, prefix=["ip", "netns", "exec", h3.name])  # fmt: skip
        step("Every task's log, gathered from the nodes they run on")
        show(["boxnet", "service", "logs", "web"], env1)

        step("Troubleshooting across the nodes, from a manager: trace to the service (VIP, backend, tunnel, the "
             "other node's side), its traffic captured on every node at once, the cluster, the overlay doctor")
        show(["boxnet", "trace", "api", "web:80"], env1)
        traffic = subprocess.Popen(["ip", "netns", "exec", h3.name, "sh", "-c", "for i in $(seq 40); do curl -s -o "
                                    f"/dev/null http://{h3.address}:8080/; sleep 0.1; done"])  # fmt: skip
        try:
            show(["boxnet", "capture", "service:web", "--underlay", "-f", "tcp port 80", "-c", "8", "--duration",
                  "5"], env1)  # fmt: skip
        finally:
            traffic.kill()
            traffic.wait()
        show(["boxnet", "topology", "--cluster", "--no-rules"], env1)
        show(["boxnet", "overlay", "check", "mesh"], env1)
        show(["boxnet", "service", "rm", "web"], env1)
        for _ in range(100):  # the nodes remove the tasks' containers (and their endpoints) as they see it
            if not any(h.cli("ps", "-q", "--filter", "label=com.docker.swarm.service.name=web").stdout.strip()
                       for h in lab.hosts):  # fmt: skip
                break
            time.sleep(0.1)
        show(["boxnet", "rm", "-f", "api"], env1)
        show(["boxnet", "rm", "-f", "worker"], env3)
        show(["boxnet", "network", "rm", "mesh"], env1)
    finally:
        lab.down()


def _wait_running(host, service: str, count: int, timeout: float = 20) -> None:
    import json

    client = host.client
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = client.get("/tasks", filters=json.dumps({"service": {service: True}}))
            if sum(t["Status"]["State"] == "running" for t in tasks) >= count:
                return
            time.sleep(0.1)
    finally:
        client.close()


def _network_id(host, name: str) -> str:
    client = host.client
    try:
        return client.get(f"/networks/{name}")["Id"]
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
