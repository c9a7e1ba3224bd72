"""The cluster's topology and the overlay doctor on a lab: every node, tunnel, WireGuard peer and task seen from
a manager; then real faults (a VXLAN entry deleted on one node, a narrower underlay path to another, a
WireGuard peer removed), each named on one line with its fix, and a clean bill of health before and after."""

from __future__ import annotations

import json
import shutil

from test_cluster_capture import ECHO, info
from test_swarm import lab_factory, running_tasks, wait_for  # noqa: F401 - the fixture


def test_topology_and_the_doctor_see_the_whole_cluster(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("od", hosts=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "front")
    h1.cli("network", "create", "-d", "overlay", "--opt", "encrypted", "--attachable", "secure")
    h1.cli("service", "create", "--name", "web", "--mode", "global", "--network", "front", "--network", "secure",
           "host", *ECHO)  # fmt: skip
    wait_for(lambda: len(running_tasks(h1, "web")) == 3, 40)

    def tunnels() -> list[dict]:
        return info(h1, "/boxnet/topology?cluster=1")["Cluster"]["Tunnels"]

    # Every node has every other node's task programmed, on both networks (6 directed pairs each).
    wait_for(lambda: [(t["Network"], t["State"]) for t in tunnels() if t["Expected"]].count(("front", "ok")) == 6
             and [t["State"] for t in tunnels() if t["Network"] == "secure"].count("ok") == 6, 30)  # fmt: skip
    text = h1.cli("topology", "--cluster", "--no-rules").stdout
    for host in lab.hosts:
        assert f"node {host.name}" in text and f"{host.name} -> " in text, text
    assert "wireguard bxwg" in text and "handshake" in text and "service web (global)" in text, text
    if shutil.which("dot"):
        assert "<svg" in h1.cli("topology", "--cluster", "--format", "svg").stdout
    wait_for(lambda: h1.cli("overlay", "check", "secure", check=False).returncode == 0, 30)  # handshakes made
    healthy = h1.cli("overlay", "check", "front", check=False)
    assert healthy.returncode == 0 and "no problem found" in healthy.stdout, healthy.stdout

    # Faults, each made in the kernel behind boxnet's back.
    cluster = info(h1, "/boxnet/topology?cluster=1")["Cluster"]
    views = {n["Hostname"]: n["View"] for n in cluster["Nodes"]}
    front = next(n for n in views[h2.name]["Networks"] if n["Name"] == "front")
    on_h3 = next(t for t in views[h3.name]["Tasks"])["Addresses"]
    lost = next(a for network_id, a in on_h3.items() if network_id == front["Id"])
    h2.run("ip", "neigh", "del", lost, "dev", front["Vxlan"], check=True)
    h2.run("bridge", "fdb", "del", next(e["Mac"] for e in front["Entries"] if e["Ip"] == lost), "dev", front["Vxlan"],
           check=True)  # fmt: skip
    narrow = ["ip", "-n", lab.underlay, "link", "set", "h3", "mtu", "1400"]
    h1.run(*narrow, check=True)
    sick = h1.cli("overlay", "check", "front", check=False)
    assert sick.returncode == 1, sick.stdout
    problems = sick.stdout.splitlines()[1:]
    assert all(". Fix: " in line for line in problems), sick.stdout
    assert any(line.startswith(f"{h2.name}: {front['Vxlan']} has no entry for {lost}") for line in problems), problems
    assert any("don't-fragment" in line and f"to {h3.name}" in line for line in problems), problems
    h1.run("ip", "-n", lab.underlay, "link", "set", "h3", "mtu", "1500", check=True)

    wg = views[h1.name]["WireGuard"]
    key_of_h2 = views[h2.name]["WireGuard"]["PublicKey"]
    h1.run("wg", "set", wg["Interface"], "peer", key_of_h2, "remove", check=True)
    unsealed = h1.cli("overlay", "check", "secure", check=False)
    assert unsealed.returncode == 1
    assert any(line.startswith(f"{h1.name}: no WireGuard peer with {h2.name}'s current key")
               for line in unsealed.stdout.splitlines()), unsealed.stdout  # fmt: skip

    as_json = json.loads(h1.cli("overlay", "check", "front", "--format", "json", check=False).stdout)
    assert as_json["Network"] == "front" and as_json["Problems"], as_json
    worker = h2.cli("overlay", "check", "front", check=False)
    assert worker.returncode != 0 and "manager" in worker.stderr, worker.stderr

    # A node that leaves is removed from every other node's WireGuard peers (its record goes with its lease).
    key_of_h3 = views[h3.name]["WireGuard"]["PublicKey"]

    def peers(host) -> str:
        return host.run("wg", "show", views[host.name]["WireGuard"]["Interface"], "peers", check=True).stdout

    assert key_of_h3 in peers(h2)
    h3.cli("swarm", "leave", "--force")
    wait_for(lambda: key_of_h3 not in peers(h1) and key_of_h3 not in peers(h2), 30)
