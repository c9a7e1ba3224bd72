"""A lab: `NAME-ul` (the underlay: a bridge `ul0`, 198.18.0.0/24, a benchmarking range that is never routed
out) and hosts `NAME-h1`..`NAME-hN`, each with `eth0` at 198.18.0.I on that bridge and its own boxnetd and
state directory. Nothing in a lab has a route anywhere but the underlay.

The lab's record (`lab.json` in its directory) names every namespace before it is made and every daemon's
PID (with its start time) once it runs; `down` removes exactly what the record names, ending processes by
PID, and is idempotent. Mininet's split: a pure description of the hosts, then the runtime that makes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from boxnet.cli.client import Client
from boxnet.errors import Conflict, InvalidArgument, NotFound
from boxnet.runtime.leftovers import end_recorded_containers
from boxnet.runtime.procs import proc_start_time, wait_gone

UNDERLAY = "198.18.0"
UNDERLAY_SUBNET = f"{UNDERLAY}.0/24"
STORE_ADDRESS = f"{UNDERLAY}.254"  # a lab's external etcd, in the underlay namespace
NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # short: interface names are at most 15 characters
DEFAULT_DIRECTORY = "/var/lib/boxnet/labs"


def labs_directory() -> str:
    return os.environ.get("BOXNET_LABS", DEFAULT_DIRECTORY)


def _sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class HostRecord:
    name: str  # NAME-hI, the namespace
    index: int
    role: str  # manager | worker
    pid: int = 0
    start_time: int = 0


@dataclass
class LabRecord:
    name: str
    hosts: list[HostRecord] = field(default_factory=list)
    node_ttl: int = 10
    phase: str = "creating"  # creating | up | removing
    # "managed": the managers run etcd (swarm init/join); "external": one etcd in the underlay namespace, and
    # every daemon started with --cluster-store.
    store: str = "managed"
    store_pid: int = 0
    store_start_time: int = 0


@dataclass
class LabHost:
    lab: Lab
    record: HostRecord
    # The daemon, when this process started it (and must reap it: a zombie keeps its PID and start time).
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def address(self) -> str:
        return f"{UNDERLAY}.{self.record.index}"

    @property
    def root(self) -> str:
        return os.path.join(self.lab.directory, f"h{self.record.index}")

    @property
    def socket(self) -> str:
        return os.path.join(self.root, "boxnet.sock")

    @property
    def env(self) -> dict[str, str]:
        return {"BOXNET_HOST": f"unix://{self.socket}", "DOCKER_HOST": f"unix://{self.socket}"}

    @property
    def client(self) -> Client:
        return Client(self.socket, timeout=120)

    def run(self, *argv: str, check: bool = False, timeout: float = 60, input: str | None = None
            ) -> subprocess.CompletedProcess:  # fmt: skip
        """A command in this host's network namespace, with BOXNET_HOST and DOCKER_HOST pointing at its daemon."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              check=check, timeout=timeout, input=input, env={**os.environ, **self.env})  # fmt: skip

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """The boxnet CLI against this host's daemon (from the caller's namespace: the socket is a file)."""
        result = subprocess.run([sys.executable, "-m", "boxnet.cli.main", *args], capture_output=True, text=True,
                                env={**os.environ, **self.env}, timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"boxnet {' '.join(args)} on {self.name} failed ({result.returncode}):\n"
                                 f"{result.stderr}")  # fmt: skip
        return result

    def daemon_alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return bool(self.record.pid) and proc_start_time(self.record.pid) == self.record.start_time

    def start_daemon(self, timeout: float = 30, env: dict[str, str] | None = None) -> None:
        """Starts this host's boxnetd (env: extra environment, as BOXNET_CRASH for tests) and waits for it."""
        os.makedirs(self.root, mode=0o710, exist_ok=True)
        argv = ["nsenter", f"--net=/run/netns/{self.name}", "unshare", "--uts", "--", sys.executable, "-m",
                "boxnet.lab.hostd", self.name, "--root", self.root,
                "--netns-registry", os.path.join(self.root, "netns"), "--resolv-conf", self.lab.resolv_conf,
                "--node-ttl", str(self.lab.record.node_ttl),
                # The underlay is a benchmarking range of the lab's own: a registry there speaks plain HTTP.
                "--insecure-registry", UNDERLAY_SUBNET]  # fmt: skip
        if self.lab.record.store == "external":
            argv += ["--cluster-store", f"etcd://{STORE_ADDRESS}:2379", "--cluster-advertise", "eth0"]
        with open(os.path.join(self.root, "boxnetd.log"), "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                       env={**os.environ, "BOXNET_ROOT": self.root, **(env or {})})  # fmt: skip
        self.process = process
        self.record.pid, self.record.start_time = process.pid, proc_start_time(process.pid)
        self.lab.save()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"boxnetd on {self.name} exited with {process.returncode}: see "
                                   f"{self.root}/boxnetd.log")  # fmt: skip
            with contextlib.suppress(OSError, Exception):
                client = Client(self.socket, timeout=2)
                client.get("/_ping")
                client.close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"boxnetd on {self.name} did not answer within {timeout:.0f} s")

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
            return
        if not self.daemon_alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.record.pid, sig)
        if not wait_gone(self.record.pid, self.record.start_time, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.record.pid, signal.SIGKILL)
            wait_gone(self.record.pid, self.record.start_time)


class Lab:
    def __init__(self, name: str = "lab", hosts: int = 2, managers: int = 1, node_ttl: int = 10,
                 directory: str | None = None, form: bool = True, store: str = "managed") -> None:  # fmt: skip
        """form=False: hosts and daemons only, no swarm (for whoever forms it by hand, as with docker swarm init)."""
        if not NAME.match(name):
            raise InvalidArgument(f"lab name {name!r}: a lowercase letter, then up to 7 letters or digits")
        if not 1 <= hosts <= 50:
            raise InvalidArgument("a lab has 1 to 50 hosts")
        if managers not in (1, 3, 5) or managers > hosts:
            raise InvalidArgument("a lab has 1, 3 or 5 managers, and no more managers than hosts")
        self.name = name
        self.managers = managers
        self.form = form
        self.directory = directory or os.path.join(labs_directory(), name)
        if store not in ("managed", "external"):
            raise InvalidArgument("a lab's store is managed (etcd members on the managers) or external")
        self.record = LabRecord(name, [HostRecord(f"{name}-h{i}", i, "manager" if i <= managers or store == "external"
                                                  else "worker") for i in range(1, hosts + 1)], node_ttl,
                                store=store)  # fmt: skip
        self.hosts = [LabHost(self, h) for h in self.record.hosts]

    # ---- the record --------------------------------------------------------------------------------
    @property
    def underlay(self) -> str:
        return f"{self.name}-ul"

    @property
    def record_path(self) -> str:
        return os.path.join(self.directory, "lab.json")

    @property
    def resolv_conf(self) -> str:
        return os.path.join(self.directory, "resolv.conf")

    def save(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        temporary = self.record_path + ".new"
        with open(temporary, "w") as handle:
            json.dump(asdict(self.record), handle, indent=1)
        os.replace(temporary, self.record_path)

    @classmethod
    def load(cls, name: str, directory: str | None = None) -> Lab:
        directory = directory or os.path.join(labs_directory(), name)
        try:
            with open(os.path.join(directory, "lab.json")) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise NotFound(f"no lab named {name}") from None
        lab = cls(name, len(data["hosts"]), sum(h["role"] == "manager" for h in data["hosts"]), data["node_ttl"],
                  directory)  # fmt: skip
        lab.record = LabRecord(name, [HostRecord(**h) for h in data["hosts"]], data["node_ttl"], data["phase"],
                               data.get("store", "managed"), data.get("store_pid", 0), data.get("store_start_time", 0))
        lab.hosts = [LabHost(lab, h) for h in lab.record.hosts]
        return lab

    def host(self, ref: str) -> LabHost:
        for host in self.hosts:
            if ref in (host.name, f"h{host.record.index}", str(host.record.index)):
                return host
        raise NotFound(f"lab {self.name} has no host {ref}")

    # ---- up ----------------------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, timeout: float = 120) -> Lab:
        if os.path.exists(self.record_path):
            raise Conflict(f"lab {self.name} exists already (boxnet lab down {self.name} removes it)")
        for ns in [self.underlay, *(h.name for h in self.hosts)]:
            if os.path.exists(f"/run/netns/{ns}"):
                raise Conflict(f"a network namespace named {ns} exists already and is not this lab's")
        self.save()  # the record names everything before any of it exists
        try:
            self._make_underlay()
            with open(self.resolv_conf, "w") as handle:  # nobody answers there: no query leaves the lab
                handle.write(f"nameserver {UNDERLAY}.254\n")
            for host in self.hosts:
                self._make_host(host)
            if self.record.store == "external":
                self._start_store()
            for host in self.hosts:
                host.start_daemon()
            if self.record.store == "external":
                self.wait_ready(timeout)
            elif self.form:
                self._form_swarm(timeout)
            self.record.phase = "up"
            self.save()
        except BaseException:
            self.down()
            raise
        return self

    def _make_underlay(self) -> None:
        ul = ("ip", "-n", self.underlay)
        _sh("ip", "netns", "add", self.underlay)
        _sh(*ul, "link", "set", "lo", "up")
        _sh(*ul, "link", "add", "ul0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        _sh(*ul, "link", "set", "ul0", "up")

    def _start_store(self) -> None:
        """One etcd member for --cluster-store, in the underlay namespace, on the underlay bridge's address."""
        _sh("ip", "-n", self.underlay, "addr", "add", f"{STORE_ADDRESS}/24", "dev", "ul0")
        data = os.path.join(self.directory, "store")
        argv = ["ip", "netns", "exec", self.underlay, "etcd", "--name", "store", "--data-dir", data,
                "--listen-client-urls", f"http://{STORE_ADDRESS}:2379", "--advertise-client-urls",
                f"http://{STORE_ADDRESS}:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--initial-cluster",
                "store=http://127.0.0.1:2380", "--logger", "zap", "--log-outputs", "stderr"]  # fmt: skip
        with open(os.path.join(self.directory, "store.log"), "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self._store_process = process
        self.record.store_pid, self.record.store_start_time = process.pid, proc_start_time(process.pid)
        self.save()
        deadline = time.monotonic() + 20
        while _sh("ip", "netns", "exec", self.underlay, "curl", "-sf", f"http://{STORE_ADDRESS}:2379/health",
                  check=False).returncode != 0:  # fmt: skip
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the lab's etcd did not start: see {self.directory}/store.log")
            time.sleep(0.1)

    def _stop_store(self) -> None:
        process = getattr(self, "_store_process", None)
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        elif self.record.store_pid and proc_start_time(self.record.store_pid) == self.record.store_start_time:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.record.store_pid, signal.SIGKILL)
            wait_gone(self.record.store_pid, self.record.store_start_time)

    def _make_host(self, host: LabHost) -> None:
        _sh("ip", "netns", "add", host.name)
        _sh("ip", "-n", host.name, "link", "set", "lo", "up")
        port = f"h{host.record.index}"
        _sh("ip", "-n", self.underlay, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        _sh("ip", "-n", self.underlay, "link", "set", port, "master", "ul0", "up")
        _sh("ip", "-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _sh("ip", "-n", host.name, "link", "set", "eth0", "up")

    def _form_swarm(self, timeout: float) -> None:
        first = self.hosts[0]
        client = first.client
        try:
            client.post("/swarm/init", {"AdvertiseAddr": first.address, "ListenAddr": "0.0.0.0:2377"})
            tokens = client.get("/swarm")["JoinTokens"]
        finally:
            client.close()
        for host in self.hosts[1:]:
            joining = host.client
            try:
                joining.post("/swarm/join", {"RemoteAddrs": [f"{first.address}:2377"], "AdvertiseAddr": host.address,
                                             "JoinToken": tokens["Manager" if host.record.role == "manager"
                                                                 else "Worker"]})  # fmt: skip
            finally:
                joining.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the first manager lists every host as a ready node."""
        deadline = time.monotonic() + timeout
        client = self.hosts[0].client
        try:
            while True:
                nodes = client.get("/nodes")
                if sum(n["Status"]["State"] == "ready" for n in nodes) >= len(self.hosts):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"lab {self.name}: only {len(nodes)} node(s) ready after {timeout:.0f} s")
                time.sleep(0.1)
        finally:
            client.close()

    # ---- down --------------------------------------------------------------------------------------
    def down(self) -> None:
        """Removes what the record names: containers and networks through each daemon, the daemons by PID,
        whatever process is still in a lab namespace by PID, the namespaces, the directory. Idempotent."""
        if os.path.exists(self.directory):
            self.record.phase = "removing"
            self.save()
        self._remove_services()
        # Workers first: a worker that leaves while its managers still run is gone from the store at once.
        for host in sorted(self.hosts, key=lambda h: h.record.role == "manager"):
            if not host.daemon_alive() and os.path.exists(os.path.join(host.root, "boxnet.db")) \
                    and os.path.exists(f"/run/netns/{host.name}"):  # fmt: skip
                # A daemon that died left its containers (their shims live in the containers' namespaces, not
                # the host's): started again, it adopts them, and removes them as any other.
                with contextlib.suppress(Exception):
                    host.start_daemon(timeout=20)
            if host.daemon_alive():
                with contextlib.suppress(Exception):
                    client = Client(host.socket, timeout=30)
                    for container in client.get("/containers/json", all=1):
                        client.delete(f"/containers/{container['Id']}", force=1)
                    client.close()
            host.stop_daemon()
            end_recorded_containers(host.root)  # whatever a daemon that would not start left running
        self._stop_store()
        for ns in [*(h.name for h in self.hosts), self.underlay]:
            _end_processes_in(ns)
            _sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


    def _remove_services(self, timeout: float = 15) -> None:
        """Services first, through a manager: otherwise every daemon that stops hands its tasks (its lease
        revoked) to the nodes still up, whose agents start them while their containers are being removed."""
        manager = next((h for h in self.hosts if h.record.role == "manager" and h.daemon_alive()), None)
        if manager is None:
            return
        with contextlib.suppress(Exception):
            client = Client(manager.socket, timeout=30)
            try:
                for service in client.get("/services"):
                    client.delete(f"/services/{service['ID']}")
            finally:
                client.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_task_containers(h) for h in self.hosts if h.daemon_alive()):
            time.sleep(0.2)


def _task_containers(host: LabHost) -> list[dict]:
    with contextlib.suppress(Exception):
        client = Client(host.socket, timeout=10)
        try:
            return client.get("/containers/json", all=1, filters=json.dumps({"label": ["com.docker.swarm.task.id"]}))
        finally:
            client.close()
    return []


def _end_processes_in(ns: str) -> None:
    """Every process whose network namespace is this lab namespace (containers a dead daemon left, its etcd),
    by PID, checked by start time."""
    try:
        target = os.stat(f"/run/netns/{ns}").st_ino
    except FileNotFoundError:
        return
    victims = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    victims.append((int(entry), proc_start_time(int(entry))))
    for pid, start in victims:
        if proc_start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid, start in victims:
        wait_gone(pid, start)


def labs() -> list[dict[str, Any]]:
    """The labs recorded on this machine, with their hosts and whether each daemon runs."""
    found = []
    directory = labs_directory()
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        with contextlib.suppress(NotFound, ValueError, KeyError):
            lab = Lab.load(name)
            found.append({"Name": name, "Phase": lab.record.phase, "Hosts": [
                {"Name": h.name, "Address": h.address, "Role": h.record.role, "Daemon": h.daemon_alive()}
                for h in lab.hosts]})  # fmt: skip
    return found
