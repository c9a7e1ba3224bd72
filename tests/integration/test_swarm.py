"""The swarm on labs of hosts (namespaces, each with its own boxnetd): init and join with the real docker CLI,
nodes, liveness, managers' etcd members, crashes half-way, and labs that leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from boxnet.lab import Lab, LabHost
from boxnet.runtime import cgroups
from boxnet.runtime.leftovers import end_recorded_containers
from boxnet.runtime.procs import proc_start_time, wait_gone
from boxnet.testing.sandbox import netns_inodes, processes_in

needs_docker = pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")


def docker(host: LabHost, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DOCKER_HOST": f"unix://{host.socket}"})  # fmt: skip


def lab_namespaces(lab: Lab) -> dict[str, int]:
    """The lab's namespaces by name, with their inodes (which any process still in one would keep)."""
    found = {}
    for name in [lab.underlay, *(h.name for h in lab.hosts)]:
        with contextlib.suppress(FileNotFoundError):
            found[name] = os.stat(f"/run/netns/{name}").st_ino
    return found


def named_elsewhere(ours: set[str]) -> set[int]:
    """Namespaces that something other than these labs made and named meanwhile."""
    found = set()
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name not in ours:
            with contextlib.suppress(OSError):
                found.add(os.stat(f"/run/netns/{name}").st_ino)
    return found


@pytest.fixture
def lab_factory():
    """Labs made for a test, removed after it; then none of their namespaces, no process in a namespace that
    was not there before (daemons, etcd members, containers and their shims) and no cgroup may be left."""
    directory = tempfile.mkdtemp(prefix="boxnet-labs-")
    made: list[Lab] = []
    processes_before, cgroups_before = netns_inodes(), cgroups.listing()

    def make(name: str, **kwargs) -> Lab:
        lab = Lab(name, directory=os.path.join(directory, name), **kwargs)
        made.append(lab)
        return lab.up()

    yield make
    for lab in made:
        lab.down()
    shutil.rmtree(directory, ignore_errors=True)
    ours = {ns for lab in made for ns in [lab.underlay, *(h.name for h in lab.hosts)]}
    for lab in made:
        assert not lab_namespaces(lab), f"lab {lab.name} left namespaces"
    deadline = time.monotonic() + 5
    while (leaked := netns_inodes() - processes_before - named_elsewhere(ours)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leaked, f"processes left running in {len(leaked)} network namespace(s) after the labs went: " + \
        "; ".join(processes_in(leaked))
    assert cgroups.listing() == cgroups_before, "the labs left cgroups"


def wait_for(condition, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(step)


def tasks_of(host: LabHost, service: str, up_to_date: bool = False) -> list[dict]:
    """A service's tasks from a manager; up_to_date: only those of its current spec (the docker CLI's filter)."""
    client = host.client
    filters = {"service": {service: True}, **({"_up-to-date": {"true": True}} if up_to_date else {})}
    try:
        return client.get("/tasks", filters=json.dumps(filters))
    finally:
        client.close()


def running_tasks(host: LabHost, service: str) -> list[dict]:
    return [t for t in tasks_of(host, service) if t["Status"]["State"] == "running"]


def states(host: LabHost) -> dict[str, str]:
    client = host.client
    try:
        return {n["Description"]["Hostname"]: n["Status"]["State"] for n in client.get("/nodes")}
    finally:
        client.close()


@needs_docker
def test_docker_cli_inits_joins_lists_updates_and_removes_nodes(lab_factory) -> None:
    lab = lab_factory("sw", hosts=3, form=False)
    h1, h2, h3 = lab.hosts
    assert docker(h1, "info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    init = docker(h1, "swarm", "init", "--advertise-addr", h1.address)
    assert init.returncode == 0 and "is now a manager" in init.stdout, init.stderr
    assert f"{h1.address}:2377" in init.stdout
    worker = docker(h1, "swarm", "join-token", "-q", "worker").stdout.strip()
    manager = docker(h1, "swarm", "join-token", "-q", "manager").stdout.strip()
    assert worker.startswith("SWMTKN-1-") and worker != manager
    joined = docker(h2, "swarm", "join", "--token", worker, f"{h1.address}:2377")
    assert joined.returncode == 0 and "joined a swarm as a worker" in joined.stdout, joined.stderr
    # A token of another swarm (the right secret's shape, another CA digest) is refused before anything is sent.
    forged = worker[:9] + "0" * 50 + worker[59:]
    refused = docker(h3, "swarm", "join", "--token", forged, f"{h1.address}:2377")
    assert refused.returncode != 0 and "does not match the join token" in refused.stderr
    refused = docker(h3, "swarm", "join", "--token", worker[:-5] + "00000", f"{h1.address}:2377")
    assert refused.returncode != 0 and "invalid join token" in refused.stderr
    assert docker(h3, "info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    assert docker(h3, "swarm", "join", "--token", worker, f"{h1.address}:2377").returncode == 0
    listing = docker(h1, "node", "ls").stdout
    assert all(f"sw-h{i}" in listing for i in (1, 2, 3)) and "Leader" in listing, listing
    assert listing.count("Ready") == 3
    worker_says = docker(h2, "node", "ls")
    assert worker_says.returncode != 0 and "Worker nodes can't be used" in worker_says.stderr
    assert docker(h1, "node", "update", "--availability", "drain", "--label-add", "zone=a", "sw-h2").returncode == 0
    node = json.loads(docker(h1, "node", "inspect", "sw-h2").stdout)[0]
    assert node["Spec"]["Availability"] == "drain" and node["Spec"]["Labels"] == {"zone": "a"}
    assert node["Status"]["Addr"] == h2.address and node["Description"]["Hostname"] == "sw-h2"
    up = docker(h1, "node", "rm", "sw-h3")
    assert up.returncode != 0 and "is not down and can't be removed" in up.stderr
    assert docker(h3, "swarm", "leave").returncode == 0
    wait_for(lambda: states(h1).get("sw-h3") == "down", 5)  # a clean leave revokes the lease at once
    assert docker(h1, "node", "rm", "sw-h3").returncode == 0
    assert "sw-h3" not in docker(h1, "node", "ls").stdout
    manager_leave = docker(h1, "swarm", "leave")
    assert manager_leave.returncode != 0 and "--force" in manager_leave.stderr


def test_a_dead_node_is_down_within_its_ttl_and_back_when_its_daemon_returns(lab_factory) -> None:
    lab = lab_factory("ttl", hosts=2, node_ttl=3)
    h1, h2 = lab.hosts
    h2.stop_daemon(signal.SIGKILL)
    started = time.monotonic()
    wait_for(lambda: states(h1)["ttl-h2"] == "down", 3 + 3)
    print(f"node down {time.monotonic() - started:.1f} s after its daemon was killed (TTL 3 s)")
    h2.start_daemon()
    wait_for(lambda: states(h1)["ttl-h2"] == "ready", 5)
    assert h2.cli("info", "--format", "{{.Swarm.LocalNodeState}}", check=False).returncode in (0, 2)
    client = h2.client
    assert client.get("/info")["Swarm"]["LocalNodeState"] == "active"
    client.close()


def test_three_managers_survive_the_loss_of_one(lab_factory) -> None:
    lab = lab_factory("ha", hosts=3, managers=3, node_ttl=3)
    h1, h2, h3 = lab.hosts
    h1.stop_daemon(signal.SIGKILL)  # its etcd member goes with it
    wait_for(lambda: states(h2)["ha-h1"] == "down", 15)  # the TTL, and etcd extends leases on a leader change
    client = h3.client
    node = client.get("/nodes/ha-h2")
    client.post(f"/nodes/{node['ID']}/update", {**node["Spec"], "Labels": {"after": "loss"}},
                version=node["Version"]["Index"])  # fmt: skip
    assert client.get("/nodes/ha-h2")["Spec"]["Labels"] == {"after": "loss"}
    leader = [n for n in client.get("/nodes") if n.get("ManagerStatus", {}).get("Leader")]
    assert len(leader) == 1 and leader[0]["Description"]["Hostname"] != "ha-h1"
    client.close()
    h1.start_daemon()
    wait_for(lambda: states(h3)["ha-h1"] == "ready", 15)


@pytest.mark.parametrize("point", ["swarm-init:after-etcd"])
def test_a_daemon_killed_during_init_leaves_no_half_swarm(lab_factory, point: str) -> None:
    lab = lab_factory("cr", hosts=1, form=False)
    (h1,) = lab.hosts
    h1.stop_daemon()
    h1.start_daemon(env={"BOXNET_CRASH": point})
    client = h1.client
    with pytest.raises(Exception):  # noqa: B017 - the daemon dies mid-request
        client.post("/swarm/init", {"AdvertiseAddr": h1.address})
    client.close()
    wait_for(lambda: not h1.daemon_alive(), 5)
    h1.start_daemon()
    client = h1.client
    assert client.get("/info")["Swarm"]["LocalNodeState"] == "inactive"
    assert not os.path.exists(os.path.join(h1.root, "cluster", "etcd", "data"))
    assert client.post("/swarm/init", {"AdvertiseAddr": h1.address})
    client.close()


def test_a_daemon_killed_while_joining_leaves_no_half_membership(lab_factory) -> None:
    lab = lab_factory("cj", hosts=2, form=False)
    h1, h2 = lab.hosts
    c1 = h1.client
    c1.post("/swarm/init", {"AdvertiseAddr": h1.address})
    token = c1.get("/swarm")["JoinTokens"]["Worker"]
    h2.stop_daemon()
    h2.start_daemon(env={"BOXNET_CRASH": "swarm-join:after-certificate"})
    c2 = h2.client
    with pytest.raises(Exception):  # noqa: B017 - the daemon dies mid-request
        c2.post("/swarm/join", {"RemoteAddrs": [f"{h1.address}:2377"], "JoinToken": token})
    c2.close()
    wait_for(lambda: not h2.daemon_alive(), 5)
    h2.start_daemon()
    c2 = h2.client
    assert c2.get("/info")["Swarm"]["LocalNodeState"] == "inactive"
    c2.post("/swarm/join", {"RemoteAddrs": [f"{h1.address}:2377"], "JoinToken": token})
    assert c2.get("/info")["Swarm"]["LocalNodeState"] == "active"
    c2.close()
    # The admitted-then-abandoned node shows as down (never alive) beside the one that joined again.
    listed = sorted((n["Description"]["Hostname"], n["Status"]["State"]) for n in c1.get("/nodes"))
    assert listed == [("cj-h1", "ready"), ("cj-h2", "down"), ("cj-h2", "ready")], listed
    c1.close()


def test_lab_cli_up_env_exec_ls_down(lab_factory) -> None:
    directory = tempfile.mkdtemp(prefix="boxnet-labcli-")
    env = {**os.environ, "BOXNET_LABS": directory}

    def boxnet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([".venv/bin/python", "-m", "boxnet.cli.main", *args], capture_output=True, text=True,
                              env=env, timeout=120)  # fmt: skip

    try:
        assert boxnet("lab", "up", "cli", "--hosts", "2").returncode == 0
        exports = boxnet("lab", "env", "cli", "h2").stdout
        assert f"BOXNET_HOST=unix://{directory}/cli/h2/boxnet.sock" in exports
        addresses = boxnet("lab", "exec", "cli", "h2", "ip", "-br", "-4", "addr", "show", "eth0").stdout
        assert "198.18.0.2/24" in addresses
        nodes = boxnet("lab", "exec", "cli", "h1", ".venv/bin/python", "-m", "boxnet.cli.main", "node", "ls").stdout
        assert "cli-h1" in nodes and "cli-h2" in nodes
        assert "cli" in boxnet("lab", "ls").stdout
        assert boxnet("lab", "down", "cli").returncode == 0
        assert boxnet("lab", "down", "cli").returncode != 0  # gone: named as such
    finally:
        boxnet("lab", "down", "cli")
        shutil.rmtree(directory, ignore_errors=True)


def test_a_start_the_daemon_died_in_is_ended_from_the_shims_own_record(lab_factory) -> None:
    """The ledger has no PIDs yet for a start the daemon died in; the shim wrote its own: the lab's last resort
    (for a daemon that will not start again) finds it there."""
    lab = lab_factory("ss", hosts=1, form=False)
    (h1,) = lab.hosts
    h1.stop_daemon()
    h1.start_daemon(env={"BOXNET_CRASH": "start:after-process"})
    assert h1.cli("run", "-d", "--name", "c", "sleep", "300", check=False).returncode != 0
    wait_for(lambda: not h1.daemon_alive(), 5)
    [container] = [d for d in os.listdir(os.path.join(h1.root, "containers"))]
    with open(os.path.join(h1.root, "containers", container, "shim.json")) as handle:
        shim = json.load(handle)
    assert proc_start_time(shim["shim_pid"]) == shim["shim_start_time"], "the shim outlives its daemon"
    assert end_recorded_containers(h1.root) == 1
    assert wait_gone(shim["shim_pid"], shim["shim_start_time"])
