"""Overlay networks across a lab's hosts: VXLAN programmed from the cluster store, names across nodes, the
gateway bridge for the way out, isolation, entries keyed by endpoint, and nodes that die."""

from __future__ import annotations

import json
import signal
import time

from test_swarm import lab_factory, wait_for  # noqa: F401 - the fixture

from boxnet.lab import LabHost

PROBE = ["python3", "-c", "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 2); "
         "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(12).decode())"]  # fmt: skip


def reaches(host: LabHost, container: str, address: str, port: int = 80) -> bool:
    result = host.cli("exec", container, *PROBE, address, str(port), check=False)
    return result.returncode == 0 and "HTTP" in result.stdout


def peers(host: LabHost, network: str) -> set[tuple[str, str]]:
    """(IP, VTEP) of the remote endpoints programmed on the host's VXLAN device for the network."""
    network_id = host.client.get(f"/networks/{network}")["Id"]
    device = f"vx-{network_id[:12]}"
    fdb = {e["mac"]: e.get("dst") for e in json.loads(host.run("bridge", "-j", "fdb", "show", "dev", device,
                                                              check=True).stdout) if e.get("dst")}  # fmt: skip
    neighbours = json.loads(host.run("ip", "-j", "neigh", "show", "dev", device, "nud", "permanent",
                                     check=True).stdout)  # fmt: skip
    return {(n["dst"], fdb.get(n["lladdr"], "")) for n in neighbours}


def server(host: LabHost, name: str, network: str, *extra: str) -> str:
    host.cli("run", "-d", "--name", name, "--network", network, *extra, "python3", "-m", "http.server", "80")
    wait_for(lambda: "LISTEN" in host.cli("exec", name, "ss", "-ltn", check=False).stdout, 5, 0.05)
    return host.client.get(f"/containers/{name}/json")["NetworkSettings"]["Networks"][network]["IPAddress"]


def test_containers_on_two_nodes_talk_by_name_over_vxlan(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("ov", hosts=2)
    h1, h2 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "appnet")
    # Another node realizes it from its watch of the store, a moment later (bench part convergence measures it).
    wait_for(lambda: h2.cli("network", "inspect", "appnet", check=False).returncode == 0, 5)
    listed = h2.client.get("/networks/appnet")
    assert listed["Scope"] == "swarm" and listed["Driver"] == "overlay"
    assert listed["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4097"
    web = server(h1, "web", "appnet")
    h2.cli("run", "-d", "--name", "client", "--network", "appnet", "sleep", "300")
    client_ip = h2.client.get("/containers/client/json")["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    assert web.startswith("10.0.1.") and client_ip.startswith("10.0.1.") and web != client_ip
    # Static entries for exactly the remote endpoints, on both sides.
    assert peers(h2, "appnet") == {(web, h1.address)}
    assert peers(h1, "appnet") == {(client_ip, h2.address)}
    assert reaches(h2, "client", "web") and reaches(h2, "client", "web.appnet")
    assert h2.cli("exec", "client", "getent", "hosts", "web").stdout.split()[0] == web
    # The overlay's MTU leaves room for VXLAN; with offloads off (no GSO to hide a wrong MTU) a bulk
    # transfer crosses whole.
    assert "mtu 1450" in h2.cli("exec", "client", "ip", "link", "show", "eth0").stdout
    for host, name in ((h1, "web"), (h2, "client")):
        assert host.cli("debug", name, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off",
                        check=False).returncode == 0  # fmt: skip
    transfer = h2.cli("exec", "client", "python3", "-c",
                      "import socket; s=socket.create_connection(('web', 80), 5); "
                      "s.sendall(b'GET /' + b'x' * 60000 + b' HTTP/1.0\\r\\n\\r\\n'); "
                      "print(len(s.recv(100)))", check=False)  # fmt: skip
    assert transfer.returncode == 0, transfer.stderr
    # The tools follow: a trace by the remote container's name, the overlay's devices in the topology.
    trace = h2.cli("trace", "client", "web:80", check=False)
    assert trace.returncode == 0 and "VXLAN vx-" in trace.stdout and "DELIVERED" in trace.stdout, trace.stdout
    topology = json.loads(h2.cli("topology", "--format", "json").stdout)
    devices = next(n for n in topology["Networks"] if n["Name"] == "appnet")["Devices"]
    assert set(devices) == {"bridge", "vxlan"} and all(d["Ifindex"] for d in devices.values())
    # A container's removal takes its entry away on the other node.
    h1.cli("rm", "-f", "web")
    wait_for(lambda: peers(h2, "appnet") == set(), 3)
    assert h2.cli("exec", "client", "getent", "hosts", "web", check=False).returncode != 0


def test_gateway_bridge_publishing_internal_overlays_and_isolation(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("gw", hosts=2)
    h1, h2 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "front")
    h1.cli("network", "create", "-d", "overlay", "--internal", "vault")
    server(h1, "web", "front", "-p", "8080:80")
    secret = server(h1, "db", "vault")
    h2.cli("run", "-d", "--name", "c", "--network", "front", "sleep", "300")
    routes = h2.cli("exec", "c", "ip", "route").stdout
    assert "default via" in routes and "eth1" in routes.split("default", 1)[1].splitlines()[0]
    # Out through the node's gateway bridge, NATed to the node's own address.
    assert h2.cli("exec", "c", "ping", "-c1", "-W1", h1.address, check=False).returncode == 0
    # A port published on an overlay container answers on its node's address.
    assert h2.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{h1.address}:8080/").stdout == "200"
    # The internal overlay has no way out, and no other overlay reaches it.
    assert "default" not in h1.cli("exec", "db", "ip", "route").stdout
    assert h1.cli("exec", "db", "ping", "-c1", "-W1", h2.address, check=False).returncode != 0
    assert not reaches(h2, "c", secret)
    assert h2.cli("exec", "c", "getent", "hosts", "db", check=False).returncode != 0
    assert "docker_gwbridge" in h2.cli("network", "ls").stdout
    busy = h1.cli("network", "rm", "front", check=False)
    assert busy.returncode != 0 and "active endpoints" in busy.stderr
    h2.cli("rm", "-f", "c")
    h1.cli("rm", "-f", "web", "db")
    h1.cli("network", "rm", "front", "vault")
    wait_for(lambda: "front" not in h2.cli("network", "ls").stdout, 3)
    links = h2.run("ip", "-br", "link", check=True).stdout
    ingress = h2.client.get("/networks/ingress")["Id"][:12]  # every node's, for the routing mesh
    left = {line.split()[0] for line in links.splitlines() if line.startswith(("ov-", "vx-"))}
    assert left == {f"ov-{ingress}", f"vx-{ingress}"}, links
    worker = h2.cli("network", "create", "-d", "overlay", "nope", check=False)
    assert worker.returncode != 0 and "not a swarm manager" in worker.stderr
    mistyped = h1.cli("network", "create", "-d", "overlay", "-o", "encrypted=yes", "sealed", check=False)
    assert mistyped.returncode != 0 and "encrypted" in mistyped.stderr  # (test_encryption.py has the rest)


def test_an_address_that_moves_to_another_node_leaves_no_stale_entry(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("mv", hosts=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    h1.cli("run", "-d", "--name", "watcher", "--network", "n", "sleep", "300")
    first = server(h2, "s1", "n")
    wait_for(lambda: (first, h2.address) in peers(h1, "n"), 3)
    h2.cli("rm", "-f", "s1")
    again = server(h3, "s2", "n", "--ip", first)
    assert again == first
    wait_for(lambda: peers(h1, "n") == {(first, h3.address)}, 3)
    assert reaches(h1, "watcher", "s2")


def test_a_killed_daemon_keeps_its_containers_reachable_and_a_dead_node_is_forgotten(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("kd", hosts=3, node_ttl=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    h1.cli("run", "-d", "--name", "c", "--network", "n", "sleep", "300")
    server(h2, "s", "n")
    h2.stop_daemon(signal.SIGKILL)
    assert reaches(h1, "c", "s")  # the data plane is the kernel's: no daemon needed
    h2.start_daemon()
    time.sleep(3 + 2)  # past the old lease's TTL: the new lease carries the endpoint
    assert reaches(h1, "c", "s")
    t_address = server(h3, "t", "n")
    wait_for(lambda: len(peers(h1, "n")) == 2, 3)
    # h3 dies for good (daemon gone, its containers with it): within the TTL, h1 forgets its endpoint.
    h3.stop_daemon(signal.SIGKILL)
    h3.run("sh", "-c", "true")  # the namespace stays; what matters is that nobody renews h3's lease
    started = time.monotonic()
    wait_for(lambda: peers(h1, "n") == {(p, a) for p, a in peers(h1, "n") if a == h2.address}, 3 + 3)
    print(f"h3's endpoint gone from h1 {time.monotonic() - started:.1f} s after its daemon died (TTL 3 s)")
    assert h1.cli("exec", "c", "getent", "hosts", "t", check=False).returncode != 0
    # Its address stays taken while it is only down (it may be partitioned, still using it)...
    taken = h1.cli("run", "-d", "--name", "u1", "--network", "n", "--ip", t_address, "sleep", "300", check=False)
    assert taken.returncode != 0 and "already in use" in taken.stderr
    # ...and is free once the node is removed; the removed node, back, is in no swarm.
    h1.cli("node", "rm", "kd-h3")
    h1.cli("run", "-d", "--name", "u2", "--network", "n", "--ip", t_address, "sleep", "300")
    h3.start_daemon()
    assert h3.client.get("/info")["Swarm"]["LocalNodeState"] == "inactive"


def test_an_etcd_the_user_runs_serves_as_the_cluster_store(lab_factory) -> None:  # noqa: F811
    """boxnetd --cluster-store: every daemon pointed at the etcd is a node; overlays work the same."""
    lab = lab_factory("ext", hosts=2, store="external")
    h1, h2 = lab.hosts
    nodes = h2.client.get("/nodes")
    assert sorted(n["Description"]["Hostname"] for n in nodes) == ["ext-h1", "ext-h2"]
    assert all(n["Status"]["State"] == "ready" for n in nodes)
    refused = h1.cli("swarm", "init", check=False)
    assert refused.returncode != 0 and "--cluster-store" in refused.stderr
    h2.cli("network", "create", "-d", "overlay", "shared")
    address = server(h1, "web", "shared")
    h2.cli("run", "-d", "--name", "c", "--network", "shared", "sleep", "300")
    assert reaches(h2, "c", "web")
    assert peers(h2, "shared") == {(address, h1.address)}


SEND_UDP = "import socket,sys; s=socket.socket(2,2); s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 4789))"


def test_vxlan_reaches_a_node_only_from_the_swarms_nodes(lab_factory) -> None:  # noqa: F811
    """A neighbour on the underlay, and a container (whose packets leave masqueraded behind its node's
    address), both send a well-formed VXLAN frame for an internal overlay to a node: neither arrives. The same
    frame from a node of the swarm does, which shows the frame would have been delivered."""
    import struct
    import subprocess
    import sys

    from boxnet.testing import frames

    lab = lab_factory("vx", hosts=2)
    h1, h2 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--internal", "vault")
    h1.cli("network", "create", "-d", "overlay", "front")
    h1.cli("run", "-d", "--name", "db", "--network", "vault", "sleep", "300")
    h2.cli("run", "-d", "--name", "c", "--network", "front", "sleep", "300")
    db = h1.client.get("/containers/db/json")
    vault = h1.client.get("/networks/vault")
    vni = int(vault["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
    settings = db["NetworkSettings"]["Networks"]["vault"]
    inner = frames.ethernet(settings["MacAddress"], "02:42:0a:00:09:c8", 0x0800,
                            frames.udp4("10.0.9.200", settings["IPAddress"], 40000, 9, b"VXLAN-PROBE-1234"))
    packet = (struct.pack("!B3xI", 0x08, vni << 8) + inner).hex()
    attacker = f"{lab.name}-atk"
    subprocess.run(["ip", "netns", "add", attacker], check=True)
    try:
        subprocess.run(["ip", "-n", lab.underlay, "link", "add", "atk", "type", "veth", "peer", "name", "eth0",
                        "netns", attacker], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", lab.underlay, "link", "set", "atk", "master", "ul0", "up"], check=True)
        subprocess.run(["ip", "-n", attacker, "addr", "add", "198.18.0.66/24", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", attacker, "link", "set", "eth0", "up"], check=True)
        listener = subprocess.Popen(["nsenter", f"--net=/proc/{db['State']['Pid']}/ns/net", sys.executable, "-m",
                                     "boxnet.testing.frames", "listen", b"VXLAN-PROBE-1234".hex(), "4"],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert listener.stdout and listener.stdout.readline().strip() == "listening"
        for _ in range(3):
            subprocess.run(["ip", "netns", "exec", attacker, "python3", "-c", SEND_UDP, packet, h1.address],
                           check=True)  # fmt: skip
            h2.cli("exec", "c", "python3", "-c", SEND_UDP, packet, h1.address)
        time.sleep(0.3)
        h2.run("python3", "-c", SEND_UDP, packet, h1.address, check=True)  # the control, from a node
        assert int(listener.stdout.readline()) == 1
        listener.wait(5)
        counters = h1.run("nft", "list", "chain", "inet", "boxnet", "vxlan_in", check=True).stdout
        assert "packets 3" in counters, counters
    finally:
        subprocess.run(["ip", "netns", "del", attacker], check=False)
