"""Capture by service across a lab: every task on every node in one pcapng (one interface per task, named after
it, on one timeline), the nodes' underlay with the VXLAN that carries the same requests, read back by tshark."""

from __future__ import annotations

import os
import subprocess
import sys

from test_swarm import lab_factory, running_tasks, wait_for  # noqa: F401 - the fixture

from boxnet.testing.sandbox import pids_of

ECHO = ["python3", "-c", "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n"
        " def do_GET(self):\n  self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()\n"
        "  self.wfile.write(b'ok')\n def log_message(self, *a): pass\n"
        "http.server.ThreadingHTTPServer(('', 80), H).serve_forever()"]
# In a container: for argv[1] seconds, a GET /m-<address> to each address of tasks.web, every 0.2 s.
LOOP = ("import socket, sys, time, urllib.request\nend = time.monotonic() + float(sys.argv[1])\n"
        "while time.monotonic() < end:\n"
        " for a in sorted({i[4][0] for i in socket.getaddrinfo('tasks.web', 80, socket.AF_INET)}):\n"
        "  try: urllib.request.urlopen(f'http://{a}/m-{a}', timeout=2).read()\n  except OSError: pass\n"
        " time.sleep(0.2)")


def tcpdumps() -> set[int]:
    return set(pids_of("tcpdump"))


def info(host, path: str) -> dict:
    client = host.client
    try:
        return client.get(path)
    finally:
        client.close()


def tshark(path: str, display: str, *fields: str) -> list[list[str]]:
    # The same flow seen on several interfaces (the task's, inside the underlay's VXLAN) is one TCP stream to
    # Wireshark, which would call the second copy of every segment a retransmission and not dissect it again.
    argv = ["tshark", "-r", path, "-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE",
            "-Y", display, "-T", "fields", "-E", "separator=|"]  # fmt: skip
    for field in fields:
        argv += ["-e", field]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in shown.splitlines() if line]


def test_a_service_is_captured_on_every_node_into_one_pcapng(lab_factory, tmp_path) -> None:  # noqa: F811
    lab = lab_factory("cc", hosts=3)
    h1, h2, _ = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "front")
    h1.cli("service", "create", "--name", "web", "--mode", "global", "--network", "front", "host", *ECHO)
    wait_for(lambda: len(running_tasks(h1, "web")) == 3, 40)
    tasks = running_tasks(h1, "web")
    address_of = {f"web.{t.get('Slot') or t['NodeID']}.{t['ID']}": t["NetworksAttachments"][0]["Addresses"][0]
                  .split("/")[0] for t in tasks}  # fmt: skip
    node_of = {f"web.{t.get('Slot') or t['NodeID']}.{t['ID']}": t["NodeID"] for t in tasks}
    h2.cli("run", "-d", "--name", "c", "--network", "front", "sleep", "600")
    before = tcpdumps()
    traffic = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "exec", "c", "python3", "-c", LOOP, "30"],
                               env={**os.environ, **h2.env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        path = str(tmp_path / "web.pcapng")
        captured = h1.cli("capture", "service:web", "--underlay", "-w", path, "--duration", "5", timeout=60)
        sniffed = h1.cli("sniff", "service:web", "--underlay", "-m", "GET /m-", "--duration", "4", timeout=60)
        refused = h2.cli("capture", "service:web", "--duration", "1", check=False)
        missing = h1.cli("capture", "service:nope", "--duration", "1", check=False)
    finally:
        traffic.kill()
        traffic.wait()

    # One interface per task, named after it, and one per node's underlay; their counters at the end.
    hostnames = {h.name for h in lab.hosts}
    interfaces = {line.split(":")[0].strip() for line in captured.stderr.splitlines()[1:]}
    assert interfaces == set(address_of) | hostnames, captured.stderr
    # Each task's interface saw the requests to its own address, and no other's.
    seen = tshark(path, "http.request && !vxlan", "frame.interface_name", "http.request.uri")
    by_interface: dict[str, set[str]] = {}
    for interface, uri in seen:
        by_interface.setdefault(interface, set()).add(uri)
    for name, address in address_of.items():
        assert by_interface.get(name) == {f"/m-{address}"}, (name, by_interface)
    # The underlay: requests to tasks on other nodes than the client's (h2) leave h2 and reach their node inside
    # VXLAN, with the network's VNI.
    vni = info(h1, "/networks/front")["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
    tunnelled = tshark(path, "vxlan && http.request", "frame.interface_name", "vxlan.vni", "http.request.uri")
    assert tunnelled and {v for _, v, _ in tunnelled} == {vni}
    node_hostname = {info(h, "/info")["Swarm"]["NodeID"]: h.name for h in lab.hosts}
    for name, address in address_of.items():
        where = {i for i, _, uri in tunnelled if uri == f"/m-{address}"}
        if node_hostname[node_of[name]] == h2.name:
            assert where == set(), (name, where)  # the client's own node: on the bridge, not the underlay
        else:
            assert where == {f"{h2.name}:eth0", f"{node_hostname[node_of[name]]}:eth0"}, (name, where)
    # One timeline across the nodes.
    times = [float(t) for (t,) in tshark(path, "frame", "frame.time_epoch")]
    assert times == sorted(times) and len(times) > 20

    # sniff decodes the VXLAN on the underlay too, and names where it saw each match.
    assert f"[{h2.name}:eth0]" in sniffed.stdout and "GET /m-" in sniffed.stdout, sniffed.stdout
    assert refused.returncode != 0 and "manager" in refused.stderr, refused.stderr
    assert missing.returncode != 0 and "nope" in missing.stderr, missing.stderr
    assert b"Traceback" not in (traffic.stderr.read() if traffic.stderr else b"")
    wait_for(lambda: not tcpdumps() - before, 10)  # every node's capture ended with the manager's
