"""Services on a lab of three: seed 002's flow through the docker CLI (a global service, the label filter,
exec, VIP against dnsrr, tasks.<name>, constraints, two networks), load spread over the tasks, and tasks
placed again when their node dies."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import time

import pytest
from test_swarm import lab_factory, running_tasks, wait_for  # noqa: F401 - the fixture

from boxnet.lab import LabHost

needs_docker = pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")

# Answers each request with its own hostname (the task's container name), so that the test counts per task.
WHOAMI = ["python3", "-c", "import http.server, socket\nclass H(http.server.BaseHTTPRequestHandler):\n"
          " def do_GET(self):\n  b = socket.gethostname().encode(); self.send_response(200)\n"
          "  self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n"
          " def log_message(self, *a): pass\nhttp.server.ThreadingHTTPServer(('', 80), H).serve_forever()"]


def docker(host: LabHost, *args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DOCKER_HOST": f"unix://{host.socket}"})  # fmt: skip
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


def addresses(getent: str) -> set[str]:
    return {line.split()[0] for line in getent.splitlines() if line.strip()}


def running(host: LabHost, service: str) -> list[tuple[str, str]]:
    """(task name, node hostname) of the service's running tasks, from a manager."""
    lines = docker(host, "service", "ps", service, "--filter", "desired-state=running", "--format",
                   "{{.Name}} {{.Node}} {{.CurrentState}}").splitlines()  # fmt: skip
    return [(line.split()[0], line.split()[1]) for line in lines if " Running " in f" {line} "]


@needs_docker
def test_seed_002_global_service_vip_dnsrr_tasks_and_constraints(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("sd", hosts=3)
    h1, h2, h3 = lab.hosts
    docker(h1, "network", "create", "--driver", "overlay", "--attachable", "backend")
    docker(h1, "network", "create", "--driver", "overlay", "--attachable", "frontend")
    docker(h1, "service", "create", "--network", "backend", "--name", "debug", "--mode", "global", "host",
           "sleep", "1000000000")  # fmt: skip
    assert sorted(node for _, node in running(h1, "debug")) == ["sd-h1", "sd-h2", "sd-h3"]
    # The local task, found by its label, as the seed finds it.
    local = docker(h2, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=debug").split()
    assert len(local) == 1
    name = docker(h2, "inspect", "-f", "{{.Name}}", local[0]).strip().lstrip("/")
    assert name.startswith("debug.") and name.count(".") == 2
    # VIP: the name answers one address that is no task's; tasks.debug answers every task's.
    vip = docker(h2, "exec", local[0], "getent", "hosts", "debug").split()[0]
    tasks = addresses(docker(h2, "exec", local[0], "getent", "ahosts", "tasks.debug"))
    assert len(tasks) == 3 and vip not in tasks
    assert docker(h2, "exec", local[0], "ping", "-c", "1", "-W", "2", "debug", check=False)
    # dnsrr: the name answers the tasks themselves, no VIP.
    docker(h1, "service", "create", "--network", "backend", "--name", "rr", "--endpoint-mode", "dnsrr",
           "--replicas", "2", "host", "sleep", "1000000000")  # fmt: skip
    rr = addresses(docker(h2, "exec", local[0], "getent", "ahosts", "rr"))
    rr_tasks = addresses(docker(h2, "exec", local[0], "getent", "ahosts", "tasks.rr"))
    assert len(rr) == 2 and rr == rr_tasks
    # Placement by constraint, on two networks at once.
    docker(h1, "service", "create", "--name", "web", "--replicas", "2", "--constraint", "node.hostname!=sd-h1",
           "--network", "backend", "--network", "frontend", "host", "sleep", "1000000000")  # fmt: skip
    placed = running(h1, "web")
    assert len(placed) == 2 and "sd-h1" not in {node for _, node in placed}
    there = h3 if placed[0][1] == "sd-h3" else h2
    task = docker(there, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web")
    networks = docker(there, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                      task.split()[0])  # fmt: skip
    assert set(networks.split()) >= {"backend", "frontend"}
    docker(h1, "service", "rm", "debug", "rr", "web")
    wait_for(lambda: not docker(h2, "ps", "-q"), 10)


def test_the_vip_spreads_requests_over_tasks_on_every_node(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("lb", hosts=3)
    h1, h2, _ = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "app")
    client = h1.client
    network = client.get("/networks/app")["Id"]
    client.post("/services/create", {
        "Name": "who", "Mode": {"Replicated": {"Replicas": 3}},
        "TaskTemplate": {"ContainerSpec": {"Image": "host", "Args": WHOAMI}, "Networks": [{"Target": network}]},
    })  # fmt: skip
    client.close()
    wait_for(lambda: len(running_tasks(h1, "who")) == 3, 15)
    h2.cli("run", "-d", "--name", "c", "--network", "app", "sleep", "300")
    script = ("import urllib.request, collections\nc = collections.Counter()\nfor _ in range(30):\n"
              " c[urllib.request.urlopen('http://who/', timeout=3).read().decode()] += 1\nprint(dict(c))")
    wait_for(lambda: h2.cli("exec", "c", "python3", "-c", script, check=False).returncode == 0, 10)
    counts = ast.literal_eval(h2.cli("exec", "c", "python3", "-c", script).stdout)
    assert sorted(counts.values()) == [10, 10, 10], counts


def test_tasks_of_a_dead_node_run_elsewhere(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("rs", hosts=3, node_ttl=3)
    h1, _, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    client = h1.client
    network = client.get("/networks/n")["Id"]
    client.post("/services/create", {
        "Name": "s", "Mode": {"Replicated": {"Replicas": 3}},
        "TaskTemplate": {"ContainerSpec": {"Image": "host", "Args": ["sleep", "600"]},
                         "Networks": [{"Target": network}]},
    })  # fmt: skip
    client.close()
    wait_for(lambda: len(running_tasks(h1, "s")) == 3, 15)
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in h1.client.get("/nodes")}
    assert {nodes[t["NodeID"]] for t in running_tasks(h1, "s")} == {"rs-h1", "rs-h2", "rs-h3"}
    h3.stop_daemon(signal.SIGKILL)
    started = time.monotonic()
    wait_for(lambda: len(running_tasks(h1, "s")) == 3
             and "rs-h3" not in {nodes[t["NodeID"]] for t in running_tasks(h1, "s")}, 30)  # fmt: skip
    print(f"the dead node's task ran elsewhere {time.monotonic() - started:.1f} s after its daemon died (TTL 3 s)")


def test_boxnet_cli_scale_update_drain_and_a_new_leader(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("cl", hosts=3, managers=3, node_ttl=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    h1.cli("service", "create", "--name", "s", "--replicas", "2", "--network", "n", "host", "sleep", "600")
    wait_for(lambda: len(running_tasks(h1, "s")) == 2, 15)
    assert "s" in h2.cli("service", "ls").stdout.split() and "2/2" in h2.cli("service", "ls").stdout
    h1.cli("service", "scale", "s=3")
    wait_for(lambda: len(running_tasks(h1, "s")) == 3, 15)
    before = {t["ID"] for t in running_tasks(h1, "s")}
    # A new spec for the tasks: every task replaced, one at a time.
    h2.cli("service", "update", "--env-add", "COLOUR=blue", "s")
    wait_for(lambda: len(running_tasks(h1, "s")) == 3 and not before & {t["ID"] for t in running_tasks(h1, "s")},
             30)  # fmt: skip
    task = running_tasks(h1, "s")[0]
    assert "COLOUR=blue" in task["Spec"]["ContainerSpec"]["Env"]
    # A drained node's tasks move elsewhere.
    h1.cli("node", "update", "--availability", "drain", "cl-h3")
    hosts = {n["ID"]: n["Description"]["Hostname"] for n in h1.client.get("/nodes")}
    wait_for(lambda: len(running_tasks(h1, "s")) == 3
             and "cl-h3" not in {hosts[t["NodeID"]] for t in running_tasks(h1, "s")}, 20)  # fmt: skip
    # The leader dies: another manager leads, and the service goes on changing.
    leader = next(n for n in h2.client.get("/nodes") if n.get("ManagerStatus", {}).get("Leader"))
    dead = next(h for h in lab.hosts if h.name == leader["Description"]["Hostname"])
    alive = next(h for h in (h1, h2, h3) if h is not dead)
    dead.stop_daemon(signal.SIGKILL)
    started = time.monotonic()
    alive.cli("service", "scale", "s=1")
    wait_for(lambda: len(running_tasks(alive, "s")) == 1, 30)
    print(f"scaled through a new leader {time.monotonic() - started:.1f} s after the old one died")
    alive.cli("service", "rm", "s")
    wait_for(lambda: not running_tasks(alive, "s"), 15)


def test_service_logs_gather_every_task_s_lines_with_their_task_and_node(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("lg", hosts=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    h1.cli("service", "create", "--name", "talk", "--mode", "global", "--network", "n", "host", "sh", "-c",
           "echo hello from $(hostname); echo oops >&2; while sleep 0.2; do echo tick; done")  # fmt: skip
    wait_for(lambda: len(running_tasks(h1, "talk")) == 3, 20)
    tasks = {t["ID"]: t["NodeID"] for t in running_tasks(h1, "talk")}
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in h1.client.get("/nodes")}

    def hellos() -> set[str]:
        shown = h1.cli("service", "logs", "--tail", "50", "talk").stdout.splitlines()
        return {line for line in shown if "| hello from" in line}

    lines = wait_for(lambda: len(hellos()) == 3 and hellos(), 10)
    # Each line names its task and the node it ran on, and the line is the task's own (its hostname).
    expected = {f"talk.{node}.{task[:12]}@{nodes[node]}" for task, node in tasks.items()}
    assert {line.split()[0] for line in lines} == expected, lines
    # The lines are the tasks' own: each says its hostname, the task container's short ID.
    containers = {c for h in lab.hosts for c in h.cli("ps", "-q").stdout.split()}
    assert {line.split("| hello from ")[1] for line in lines} == containers, lines
    errors = h1.cli("service", "logs", "--tail", "all", "talk").stderr
    assert errors.count("| oops") == 3
    # Followed: new lines keep coming from every node's task.
    follower = subprocess.Popen([".venv/bin/python", "-m", "boxnet.cli.main", "service", "logs", "-f", "--tail", "0",
                                 "talk"], stdout=subprocess.PIPE, text=True, env={**os.environ, **h1.env})  # fmt: skip
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while len(seen) < 3 and time.monotonic() < deadline:
        line = follower.stdout.readline()
        if "| tick" in line:
            seen.add(line.split()[0])
    follower.kill()
    follower.wait()
    assert seen == expected
    # A worker may not read another node's task logs over the node port (from its own namespace, with its own
    # certificate): only managers ask.
    directory = os.path.join(h2.root, "cluster")
    task_on_h3 = next(task for task, node in tasks.items() if nodes[node] == "lg-h3")
    attempt = ("import sys\nfrom boxnet.cluster.node_server import ask\nfrom boxnet.store.etcd import Credentials\n"
               f"worker = Credentials('{directory}/ca.crt', '{directory}/node.crt', '{directory}/node.key')\n"
               f"list(ask('{h3.address}', worker, '/tasks/{task_on_h3}/logs', {{'tail': '1'}}))")  # fmt: skip
    refused = h2.run(".venv/bin/python", "-c", attempt)
    assert refused.returncode != 0 and "Forbidden: node" in refused.stderr and "is not a manager" in refused.stderr


@needs_docker
def test_docker_cli_service_logs(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("dl", hosts=2)
    h1, _ = lab.hosts
    docker(h1, "service", "create", "--detach", "--name", "hi", "--replicas", "2", "host", "sh", "-c",
           "echo hi from $(hostname); sleep 600")  # fmt: skip
    wait_for(lambda: len(running_tasks(h1, "hi")) == 2, 20)

    def greetings() -> list[str]:
        return [line for line in docker(h1, "service", "logs", "hi").splitlines() if "hi from" in line]

    shown = wait_for(lambda: len(greetings()) == 2 and greetings(), 10)
    assert sorted(line.split("@")[0].rsplit(".", 1)[0] for line in shown) == ["hi.1", "hi.2"], shown
    assert {line.split("@")[1].split()[0] for line in shown} == {"dl-h1", "dl-h2"}, shown
