"""The routing mesh on a lab of three: a published port answers on every node, balanced over the tasks
wherever they run; the client's address reaches a task on the node it connected to, and a task elsewhere
sees that node's ingress address instead; ports are one service's each, and go with the service."""

from __future__ import annotations

import ast
import ipaddress
import os
import shutil
import subprocess

import pytest
from test_swarm import lab_factory, running_tasks, wait_for  # noqa: F401 - the fixture

from boxnet.lab import LabHost

# Answers each request with the task's hostname and the client address it sees.
ECHO = ["python3", "-c", "import http.server, socket\nclass H(http.server.BaseHTTPRequestHandler):\n"
        " def do_GET(self):\n  b = (socket.gethostname() + ' ' + self.client_address[0]).encode()\n"
        "  self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers()\n"
        "  self.wfile.write(b)\n def log_message(self, *a): pass\n"
        "http.server.ThreadingHTTPServer(('', 80), H).serve_forever()"]

# From a lab host's own namespace: N requests to ADDRESS:PORT, counted by (task, client address it saw).
CLIENT = ("import sys, urllib.request, collections\nc = collections.Counter()\nfor _ in range(int(sys.argv[3])):\n"
          " c[tuple(urllib.request.urlopen(f'http://{sys.argv[1]}:{sys.argv[2]}/', timeout=3).read().decode()"
          ".split())] += 1\nprint(dict(c))")


LISTEN = ("import socket\ns = socket.socket(); s.setsockopt(1, 2, 1); s.bind(('', 7777)); s.listen()\n"
          "while True: s.accept()[0].close()")
# Connects to argv[1]:argv[2] (from source address argv[3] if given) within 2 s, or fails.
DIAL = ("import socket, sys\ns = socket.socket(); s.settimeout(2)\nif len(sys.argv) > 3: s.bind((sys.argv[3], 0))\n"
        "s.connect((sys.argv[1], int(sys.argv[2])))")


def requests(client: LabHost, server: LabHost, port: int, count: int = 12) -> dict[tuple[str, str], int]:
    result = client.run("python3", "-c", CLIENT, server.address, str(port), str(count), timeout=60)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout)


def ingress_address(host: LabHost, bridge: str) -> str:
    shown = host.run("ip", "-4", "-o", "addr", "show", "dev", bridge, check=True).stdout.split()
    return str(ipaddress.ip_interface(shown[shown.index("inet") + 1]).ip)


def test_a_published_port_answers_on_every_node_balanced_with_the_source_kept_where_it_can(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("pm", hosts=3)
    h1, h2, h3 = lab.hosts
    client = h1.client
    ingress = client.get("/networks/ingress")
    assert ingress["Ingress"] and ingress["IPAM"]["Config"][0]["Subnet"] == "10.0.0.0/24"
    bridge = f"ov-{ingress['Id'][:12]}"
    h1.cli("network", "create", "-d", "overlay", "app")
    h1.cli("service", "create", "--name", "web", "--replicas", "2", "--constraint", "node.hostname!=pm-h1",
           "--network", "app", "-p", "8080:80", "host", *ECHO)  # fmt: skip
    wait_for(lambda: len(running_tasks(h1, "web")) == 2, 20)
    assert "*:8080->80/tcp" in h1.cli("service", "ls").stdout
    tasks = {h.name: h.cli("ps", "-q").stdout.split() for h in (h2, h3)}  # a task's hostname is its short ID
    task_on = {host: names[0] for host, names in tasks.items()}
    assert all(len(names) == 1 for names in tasks.values()), tasks
    mesh = {h.name: ingress_address(h, bridge) for h in lab.hosts}
    assert len(set(mesh.values())) == 3
    wait_for(lambda: h1.run("python3", "-c", CLIENT, h1.address, "8080", "1").returncode == 0, 10)

    # h1 runs no task: both answer through it, and see h1's ingress address (the reply must come back there).
    through_h1 = requests(h1, h1, 8080)
    assert {task for task, _ in through_h1} == set(task_on.values())
    assert {seen for _, seen in through_h1} == {mesh["pm-h1"]}
    assert sorted(through_h1.values()) == [6, 6]
    # Through h2, from h1's address: h2's own task sees the client itself, h3's sees h2's ingress address.
    through_h2 = requests(h1, h2, 8080)
    assert through_h2 == {(task_on["pm-h2"], h1.address): 6, (task_on["pm-h3"], mesh["pm-h2"]): 6}, through_h2
    assert set(requests(h2, h3, 8080)) == {(task_on["pm-h3"], h2.address), (task_on["pm-h2"], mesh["pm-h3"])}

    # One service per port, refused by name; the ingress network is the mesh's alone.
    clash = h1.cli("service", "create", "--name", "other", "-p", "8080:81", "host", "sleep", "60", check=False)
    assert clash.returncode != 0 and "already published by service web" in clash.stderr
    joined = h1.cli("run", "-d", "--network", "ingress", "sleep", "60", check=False)
    assert joined.returncode != 0 and "routing mesh" in joined.stderr
    removed = h1.cli("network", "rm", "ingress", check=False)
    assert removed.returncode != 0 and "web publishes ports" in removed.stderr
    # A host process on a node cannot take the port from the mesh.
    taken = h3.run("python3", "-c", "import socket; socket.socket().bind(('', 8080))")
    assert taken.returncode != 0 and "Address already in use" in taken.stderr

    # A task is a tenant: over the ingress network it reaches neither what its node serves on every address
    # nor anything through the node (with its ingress address as the source).
    listener = subprocess.Popen(["ip", "netns", "exec", h2.name, "python3", "-c", LISTEN])
    try:
        wait_for(lambda: h2.run("python3", "-c", DIAL, mesh["pm-h2"], "7777").returncode == 0, 10)  # the control
        task = task_on["pm-h2"]
        for target in (mesh["pm-h2"], mesh["pm-h3"]):
            reached = h2.cli("exec", task, "python3", "-c", DIAL, target, "7777", check=False)
            assert reached.returncode != 0, f"a task reached a node's own service at {target}"
        own = h2.cli("exec", task, "ip", "-4", "-o", "addr", "show", check=True).stdout
        source = next(str(ipaddress.ip_interface(w).ip) for w in own.split() if w.startswith("10.0.0."))
        routed = h2.cli("exec", task, "python3", "-c", DIAL, h1.address, "7946", source, check=False)
        assert routed.returncode != 0, "a task routed through its node from its ingress address"
    finally:
        listener.kill()
        listener.wait()

    # The service goes: so does the port, on every node.
    h1.cli("service", "rm", "web")
    for host in lab.hosts:
        wait_for(lambda host=host: host.run("python3", "-c", CLIENT, host.address, "8080", "1").returncode != 0, 15)
        wait_for(lambda host=host: "8080" not in host.run("nft", "list", "table", "ip", "boxnet_mesh").stdout, 5)
    client.close()


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")
def test_docker_cli_publishes_through_the_mesh(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("pd", hosts=2)
    h1, h2 = lab.hosts
    env = {**os.environ, "DOCKER_HOST": f"unix://{h1.socket}"}

    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, env=env)

    made = docker("service", "create", "--name", "web", "--replicas", "2", "--publish", "published=8081,target=80",
                  "host", *ECHO)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "*:8081->80/tcp" in docker("service", "ls").stdout
    assert {task for task, _ in requests(h2, h1, 8081, 8)} | {task for task, _ in requests(h1, h2, 8081, 8)} \
        == {t for h in lab.hosts for t in h.cli("ps", "-q").stdout.split()}  # fmt: skip
    refused = docker("service", "create", "--name", "h", "--publish", "mode=host,published=8082,target=80", "host")
    assert refused.returncode != 0 and "host mode publishing" in refused.stderr
