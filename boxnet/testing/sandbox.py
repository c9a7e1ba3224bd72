"""A sandbox host for integration tests and the demo.

    outside (ns)  bridge "seg": 198.51.100.1/24, 203.0.113.1/24; web server on 203.0.113.80:80
      |-- veth -- host (ns): uplink0 198.51.100.2/24, default via 198.51.100.1, runs boxnetd
      |-- veth -- attacker (ns): 198.51.100.66/24, routes every container subnet via the host

Nothing here has a route to the machine's real interfaces: every packet stays inside these namespaces.
The baseline (links, nft table, namespace files, processes' network namespaces) is taken once the daemon is
up, and `assert_no_leaks` compares against it after the test removed what it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from boxnet.cli.client import Client
from boxnet.runtime import cgroups
from boxnet.runtime.leftovers import end_recorded_containers

OUTSIDE_GW = "198.51.100.1"
HOST_ADDR = "198.51.100.2"
ATTACKER_ADDR = "198.51.100.66"
WEB_ADDR = "203.0.113.80"
DNS_ADDR = "203.0.113.53"
# IPv6 on the same segment, from the documentation prefix.
OUTSIDE_GW6 = "2001:db8:100::1"
HOST_ADDR6 = "2001:db8:100::2"
ATTACKER_ADDR6 = "2001:db8:100::66"

WEB_SERVER = r"""
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((sys.argv[1], 80), H).serve_forever()
"""


def sh(*args: str, check: bool = True, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout, input=input)


def netns_inodes() -> set[int]:
    """The network namespaces some process is in right now."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found.add(os.stat(f"/proc/{entry}/ns/net").st_ino)
            except OSError:
                continue
    return found


def processes_in(inodes: set[int]) -> list[str]:
    """What runs in these network namespaces, one line per process (PID, parent, cgroup, command), for a
    leak check's message."""
    lines = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino not in inodes:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as handle:
                parent = handle.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cgroup") as handle:
                cgroup = next((line.split(":", 2)[2].strip() for line in handle if ":pids:" in line
                               or line.startswith("0::")), "?")  # fmt: skip
        except OSError:
            continue
        lines.append(f"pid {entry} (parent {parent}, cgroup {cgroup}): {command[:200]}")
    return lines


def pids_of(executable: str, netns_inodes: set[int] | None = None) -> list[int]:
    """The processes running this executable (by the name of /proc/PID/exe), in these network namespaces if
    given: what a test or benchmark then ends or measures by PID."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.path.basename(os.readlink(f"/proc/{entry}/exe")) == executable and (
                        netns_inodes is None or os.stat(f"/proc/{entry}/ns/net").st_ino in netns_inodes):  # fmt: skip
                    found.append(int(entry))
    return found


def boxnet_programs() -> set[int]:
    """The ids of the BPF programs a boxnetd loaded (see engine/connect_redirect.py)."""
    from boxnet.engine.connect_redirect import PROGRAM_PREFIX
    from boxnet.kernel import bpf

    return {program.id for program in bpf.programs() if program.name.startswith(PROGRAM_PREFIX)}


@dataclass
class Sandbox:
    tag: str = field(default_factory=lambda: "bx" + secrets.token_hex(3))
    extra_daemon_env: dict[str, str] = field(default_factory=dict)
    extra_daemon_args: list[str] = field(default_factory=list)
    # Routes the host has before the daemon first starts, as (destination, via) pairs.
    host_routes: list[tuple[str, str]] = field(default_factory=list)
    # Where container namespaces are registered: a private directory, or /run/netns as on a default install.
    netns_registry: str = ""
    # Start boxnetd with `ip netns exec` (a mount namespace of its own, with a sysfs of the host namespace's)
    # rather than nsenter, as users often do.
    via_ip_netns: bool = False

    def __post_init__(self) -> None:
        self.host = f"{self.tag}-host"
        self.outside = f"{self.tag}-out"
        self.attacker = f"{self.tag}-atk"
        self.root = tempfile.mkdtemp(prefix=f"boxnet-{self.tag}-")
        self.registry = self.netns_registry or os.path.join(self.root, "netns-registry")
        self.socket = os.path.join(self.root, "boxnet.sock")
        self.resolv_conf = os.path.join(self.root, "host-resolv.conf")
        self.daemon: subprocess.Popen | None = None
        self.helpers: list[subprocess.Popen] = []
        self.client = Client(self.socket, timeout=120)
        self._processes_before: set[int] = set()

    # ---- set-up ------------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        self._processes_before = netns_inodes()
        self._programs_before = boxnet_programs()
        for ns in (self.host, self.outside, self.attacker):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        o = ("ip", "-n", self.outside)
        sh(*o, "link", "add", "seg", "type", "bridge")
        sh(*o, "addr", "add", f"{OUTSIDE_GW}/24", "dev", "seg")
        sh(*o, "addr", "add", "203.0.113.1/24", "dev", "seg")
        sh(*o, "addr", "add", f"{WEB_ADDR}/32", "dev", "lo")
        sh(*o, "addr", "add", f"{DNS_ADDR}/32", "dev", "lo")
        sh(*o, "addr", "add", f"{OUTSIDE_GW6}/64", "dev", "seg", "nodad")
        sh(*o, "link", "set", "seg", "up")
        for ns, ifname, address, address6 in ((self.host, "uplink0", HOST_ADDR, HOST_ADDR6),
                                              (self.attacker, "eth0", ATTACKER_ADDR, ATTACKER_ADDR6)):  # fmt: skip
            sh(*o, "link", "add", f"to-{ns[-4:]}", "type", "veth", "peer", "name", ifname, "netns", ns)
            sh(*o, "link", "set", f"to-{ns[-4:]}", "master", "seg", "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", ifname)
            sh("ip", "-n", ns, "addr", "add", f"{address6}/64", "dev", ifname, "nodad")
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", OUTSIDE_GW)
            sh("ip", "-n", ns, "-6", "route", "add", "default", "via", OUTSIDE_GW6)
        for destination, via in self.host_routes:
            sh("ip", "-n", self.host, "route", "add", destination, "via", via)
        # The neighbour that routes container subnets through the host, as a hostile LAN peer would.
        for prefix in ("172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"):
            sh("ip", "-n", self.attacker, "route", "add", prefix, "via", HOST_ADDR)
        sh("ip", "-n", self.attacker, "-6", "route", "add", "fd00::/8", "via", HOST_ADDR6)
        with open(self.resolv_conf, "w") as handle:
            handle.write(f"nameserver 127.0.0.53\nnameserver {DNS_ADDR}\nsearch example.test\noptions edns0\n")
        self.helpers.append(self.spawn_in(self.outside, sys.executable, "-c", WEB_SERVER, WEB_ADDR))
        self.start_fake_dns()
        self.start_daemon()
        self.baseline = self.kernel_state()
        return self

    def start_fake_dns(self) -> None:
        """The outside's DNS server at DNS_ADDR (see boxnet.testing.fakedns); its questions go to dns_log."""
        self.dns_log = os.path.join(self.root, "upstream-queries.log")
        ready = os.path.join(self.root, "fakedns.ready")
        self.helpers.append(self.spawn_in(self.outside, sys.executable, "-m", "boxnet.testing.fakedns",
                                          "--address", DNS_ADDR, "--log", self.dns_log, "--ready", ready))  # fmt: skip
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            if time.monotonic() > deadline:
                raise RuntimeError("the fake upstream DNS server did not start")
            time.sleep(0.02)

    def upstream_questions(self) -> list[str]:
        """What reached the outside's DNS server, as "protocol name type" lines."""
        try:
            with open(self.dns_log) as handle:
                return handle.read().splitlines()
        except FileNotFoundError:
            return []

    def spawn_in(self, ns: str, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def daemon_argv(self) -> list[str]:
        enter = ["ip", "netns", "exec", self.host] if self.via_ip_netns else [
            "nsenter", f"--net=/run/netns/{self.host}"]
        return [*enter, sys.executable, "-m", "boxnet.daemon.main",
                "--root", self.root, "--netns-registry", self.registry, "--resolv-conf", self.resolv_conf,
                *self.extra_daemon_args]  # fmt: skip

    def start_daemon(self, timeout: float = 20) -> None:
        env = {**os.environ, "BOXNET_ROOT": self.root, **self.extra_daemon_env}
        with open(os.path.join(self.root, "boxnetd.log"), "ab") as log:
            self.daemon = subprocess.Popen(self.daemon_argv(), env=env, stdout=log, stderr=log,
                                           stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"boxnetd exited with {self.daemon.returncode}:\n{self.daemon_log()}")
            if os.path.exists(self.socket):
                try:
                    self.client.get("/_ping")
                    return
                except Exception:
                    self.client.close()
            time.sleep(0.05)
        raise RuntimeError(f"boxnetd did not answer within {timeout}s:\n{self.daemon_log()}")

    def kill_daemon(self, sig: int = signal.SIGKILL) -> None:
        self.client.close()
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            self.daemon.wait(timeout=30)

    def daemon_log(self) -> str:
        try:
            with open(os.path.join(self.root, "boxnetd.log"), errors="replace") as handle:
                return handle.read()[-5000:]
        except OSError:
            return ""

    # ---- doing things ------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {**os.environ, "BOXNET_HOST": f"unix://{self.socket}"}

    def cli(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
            ) -> subprocess.CompletedProcess:  # fmt: skip
        """The real CLI, as a user runs it."""
        result = subprocess.run([sys.executable, "-m", "boxnet.cli.main", *args], capture_output=True, text=True,
                                env=self.env(), timeout=timeout, input=input)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"boxnet {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def in_host(self, *argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.host, *argv, check=check, timeout=timeout)

    def in_ns(self, ns: str, *argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def inspect(self, name: str) -> dict:
        return self.client.get(f"/containers/{name}/json")

    def ip_of(self, name: str, network: str | None = None) -> str:
        networks = self.inspect(name)["NetworkSettings"]["Networks"]
        return networks[network or next(iter(networks))]["IPAddress"]

    def in_container(self, name: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.cli("exec", name, *argv, check=False, timeout=timeout)

    # ---- leaks -------------------------------------------------------------------------------------
    def kernel_state(self) -> dict:
        links = sorted(json.loads(self.in_host("ip", "-j", "link", "show", check=True).stdout),
                       key=lambda link: link["ifname"])  # fmt: skip
        return {
            "links": [link["ifname"] for link in links],
            "nft": self.nft_objects("inet") + self.nft_objects("bridge"),
            "registered": sorted(e for e in os.listdir(self.registry) if e.startswith(self.tag))
            if self.netns_registry else sorted(os.listdir(self.registry)) if os.path.isdir(self.registry) else [],
            "addresses": sorted(
                (link["ifname"], a["local"], a["prefixlen"])
                for link in json.loads(self.in_host("ip", "-j", "addr", check=True).stdout)
                for a in link.get("addr_info", [])
            ),
            "cgroups": cgroups.listing(),
        }

    def nft_objects(self, family: str) -> list[str]:
        """boxnet's table as a sorted list of canonical JSON objects: what it holds, whatever the order
        (a rebuild inserts in another order than the changes that led to the same state), without counters."""
        listing = self.in_host("nft", "-j", "-s", "list", "table", family, "boxnet").stdout
        objects = []
        for item in json.loads(listing or '{"nftables": []}')["nftables"]:
            if "metainfo" in item:
                continue
            body = next(iter(item.values()))
            body.pop("handle", None)
            if "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
            objects.append(json.dumps(item, sort_keys=True))
        return sorted(objects)

    def remove_everything(self) -> None:
        """Removes the test's containers and networks through the API, as a user would."""
        for container in self.client.get("/containers/json", all=1):
            self.client.delete(f"/containers/{container['Id']}", force=1)
        self.client.post("/networks/prune")

    def assert_no_leaks(self) -> None:
        after = self.kernel_state()
        for key, before in self.baseline.items():
            assert after[key] == before, f"leak in {key}:\nbefore: {before}\nafter:  {after[key]}"

    # ---- tear-down ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self.kill_daemon(signal.SIGTERM)
        self._end_leftover_containers()
        for helper in self.helpers:
            if helper.poll() is None:
                os.killpg(helper.pid, signal.SIGKILL)
                helper.wait()
        for ns in (self.attacker, self.host, self.outside):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _end_leftover_containers(self) -> None:
        """After a failed test the daemon may be gone with containers still running: end them by PID."""
        end_recorded_containers(self.root)

    def _others_named_namespaces(self) -> set[int]:
        found = set()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir("/run/netns"):
                if not name.startswith(self.tag):
                    with contextlib.suppress(OSError):
                        found.add(os.stat(os.path.join("/run/netns", name)).st_ino)
        return found

    def daemon_programs(self) -> set[int]:
        """boxnet's BPF programs loaded since the sandbox started: its daemon's."""
        return boxnet_programs() - self._programs_before

    def leaked_programs(self) -> set[int]:
        """boxnet's BPF programs still loaded after the daemon ended (the kernel frees them after a grace
        period, hence the wait)."""
        deadline = time.monotonic() + 5
        while True:
            extra = self.daemon_programs()
            if not extra or time.monotonic() > deadline:
                return extra
            time.sleep(0.1)

    def leaked_process_namespaces(self) -> set[int]:
        """Network namespaces that processes are in now and were not in before the sandbox started, less
        the ones that something else on the machine made and named in /run/netns meanwhile."""
        deadline = time.monotonic() + 5
        while True:
            extra = netns_inodes() - self._processes_before - self._others_named_namespaces()
            if not extra or time.monotonic() > deadline:
                return extra
            time.sleep(0.1)
