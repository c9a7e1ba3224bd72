"""The overlay doctor's judgement (pure): every node's kernel view (diag/node_view.py) against the control
plane (the store's nodes, endpoints and WireGuard records), as one line per problem with its fix.

Checked for one network: that every live node realized it and its VXLAN device is up; MTU (each device
within what the underlay leaves, the same on every node, and a full-size don't-fragment echo answered along
each path); the VXLAN entries (FDB + neighbour) equal to the other nodes' endpoints, at the right VTEP; and
for an encrypted network, the VNI sealed, a WireGuard peer for every other node with its current key and
endpoint, a recent handshake with every node it has traffic for, and no peer left of a node that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VXLAN_OVERHEAD = 50
WIREGUARD_OVERHEAD = 80
HANDSHAKE_STALE_SECONDS = 180  # WireGuard re-handshakes every 2 min while there is traffic (keepalive 25 s)
RESTART_FIX = "restart boxnetd on {host}: at start it lists the store again and programs the difference"


@dataclass
class ControlPlane:
    """What the store says."""

    nodes: dict[str, dict[str, Any]]  # node id -> {"hostname", "addr", "role", "alive"}
    networks: dict[str, dict[str, Any]]  # network id -> {"name", "vni", "encrypted"}
    endpoints: dict[str, list[dict[str, Any]]]  # network id -> [{"node", "vtep", "mac", "ipv4", "name"}]
    wireguard: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> {"public_key", ...}

    def hostname(self, node_id: str) -> str:
        return self.nodes.get(node_id, {}).get("hostname", node_id[:12])

    def alive(self) -> list[str]:
        return sorted((n for n, d in self.nodes.items() if d.get("alive")), key=self.hostname)


@dataclass(frozen=True)
class Problem:
    node: str  # the hostname where it is seen
    problem: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"Node": self.node, "Problem": self.problem, "Fix": self.fix}


@dataclass(frozen=True)
class Entry:
    mac: str
    vtep: str
    node: str  # the node the endpoint is on
    who: str  # what to call it: its container and node


def expected_entries(control: ControlPlane, network_id: str, on_node: str) -> dict[str, Entry]:
    """The VXLAN entries a node must have for a network: ip -> entry, one per endpoint on another live node."""
    encrypted = control.networks.get(network_id, {}).get("encrypted", False)
    found = {}
    for endpoint in control.endpoints.get(network_id, []):
        node = endpoint["node"]
        if node == on_node or not endpoint.get("ipv4") or not control.nodes.get(node, {}).get("alive"):
            continue
        vtep = control.wireguard.get(node, {}).get("address", "") if encrypted else endpoint["vtep"]
        if not vtep:
            continue  # an encrypted network's peer without WireGuard yet: none is expected (and none programmed)
        who = f"{endpoint.get('name') or 'node ' + control.hostname(node)} on {control.hostname(node)}"
        found[endpoint["ipv4"]] = Entry(endpoint["mac"], vtep, node, who)
    return found


def network_view(view: dict[str, Any], network_id: str) -> dict[str, Any] | None:
    return next((n for n in view.get("Networks", []) if n["Id"] == network_id), None)


def check_network(control: ControlPlane, network_id: str, views: dict[str, dict[str, Any]],
                  errors: dict[str, str]) -> list[Problem]:  # fmt: skip
    """views and errors by node id: what each live node answered, or why it did not."""
    problems: list[Problem] = []
    network = control.networks[network_id]
    name, encrypted = network["name"], network.get("encrypted", False)
    mtus: dict[str, int] = {}
    for node_id in control.alive():
        host = control.hostname(node_id)
        view = views.get(node_id)
        if view is None:
            problems.append(Problem(host, f"did not answer over the node port: {errors.get(node_id, 'no answer')}",
                                    "check that boxnetd runs there and that 7946/tcp is open between the "
                                    "nodes"))  # fmt: skip
            continue
        mine = network_view(view, network_id)
        if mine is None:
            problems.append(Problem(host, f"network {name} is not realized here", RESTART_FIX.format(host=host)))
            continue
        problems += _device(host, view, mine, encrypted)
        mtus[host] = mine["VxlanMtu"]
        problems += _entries(control, network_id, node_id, host, mine)
        if encrypted:
            problems += _encryption(control, network_id, node_id, host, view, mine)
        problems += _paths(control, host, view, encrypted)
    if len(set(mtus.values())) > 1:
        listed = ", ".join(f"{h} {m}" for h, m in sorted(mtus.items()))
        problems.append(Problem("*", f"the MTU of network {name} differs between nodes ({listed}): what the larger "
                                "side sends in one packet (UDP, ICMP) the smaller drops", "give every node's "
                                "underlay interface the same MTU, then recreate the network"))  # fmt: skip
    return problems


def _device(host: str, view: dict[str, Any], mine: dict[str, Any], encrypted: bool) -> list[Problem]:
    problems = []
    device = mine["Vxlan"]
    if mine["VxlanState"] in ("absent", "down", "DOWN"):
        problems.append(Problem(host, f"VXLAN device {device} is {mine['VxlanState'].lower()}",
                                RESTART_FIX.format(host=host)))  # fmt: skip
    room = view["UnderlayMtu"] - VXLAN_OVERHEAD - (WIREGUARD_OVERHEAD if encrypted else 0)
    for what, mtu in ((f"VXLAN device {device}", mine["VxlanMtu"]), (f"bridge {mine['Bridge']}", mine["BridgeMtu"])):
        if view["UnderlayMtu"] and mtu > room:
            problems.append(Problem(host, f"{what} has MTU {mtu}, but the underlay ({view['UnderlayDevice']}, MTU "
                                    f"{view['UnderlayMtu']}) leaves room for {room}: larger packets are dropped",
                                    f"set {what}'s MTU to {room} (recreate the network with "
                                    f"--opt com.docker.network.driver.mtu={room})"))  # fmt: skip
    return problems


def _entries(control: ControlPlane, network_id: str, node_id: str, host: str, mine: dict[str, Any]) -> list[Problem]:
    problems = []
    device = mine["Vxlan"]
    wanted = expected_entries(control, network_id, node_id)
    present = {e["Ip"]: (e["Mac"], e["Vtep"]) for e in mine["Entries"]}
    vteps = {d.get("addr"): n for n, d in control.nodes.items()} | \
        {w.get("address"): n for n, w in control.wireguard.items()}  # fmt: skip
    fix = RESTART_FIX.format(host=host)
    for ip, entry in sorted(wanted.items()):
        if ip not in present:
            problems.append(Problem(host, f"{device} has no entry for {ip} ({entry.who}): packets to it are lost",
                                    fix))  # fmt: skip
        elif present[ip] != (entry.mac, entry.vtep):
            problems.append(Problem(host, f"{device} sends {ip} ({entry.who}) to {present[ip][1]} as "
                                    f"{present[ip][0]}, but it is at {entry.vtep} as {entry.mac}", fix))  # fmt: skip
    for ip, (_, vtep) in sorted(present.items()):
        if ip not in wanted:
            at = control.hostname(vteps[vtep]) if vtep in vteps else "no node of the swarm"
            problems.append(Problem(host, f"{device} keeps an entry for {ip} at {vtep} ({at}) that no endpoint "
                                    "holds any more: a stale entry (moby#33789)", fix))  # fmt: skip
    return problems


def _encryption(control: ControlPlane, network_id: str, node_id: str, host: str, view: dict[str, Any],
                mine: dict[str, Any]) -> list[Problem]:  # fmt: skip
    problems = []
    fix = RESTART_FIX.format(host=host)
    if not mine["Sealed"]:
        problems.append(Problem(host, f"VNI {mine['Vni']} is not sealed in nftables: its VXLAN could leave in clear",
                                fix))  # fmt: skip
    wg = view.get("WireGuard")
    if wg is None or wg.get("State") == "absent":
        problems.append(Problem(host, "no WireGuard interface: the encrypted network carries nothing to or from "
                                "other nodes", fix))  # fmt: skip
        return problems
    if wg.get("Error"):
        problems.append(Problem(host, f"its WireGuard peers cannot be read: {wg['Error']}", fix))
        return problems
    peers = {p["PublicKey"]: p for p in wg["Peers"]}
    published = {record.get("public_key") for record in control.wireguard.values()}
    talking = {e["node"] for e in control.endpoints.get(network_id, [])}
    now = view.get("Time", 0)
    for other in control.alive():
        record = control.wireguard.get(other)
        if other == node_id or record is None:
            continue
        other_host = control.hostname(other)
        peer = peers.pop(record["public_key"], None)
        if peer is None:
            problems.append(Problem(host, f"no WireGuard peer with {other_host}'s current key "
                                    f"({record['public_key'][:8]}...): nothing reaches {other_host} encrypted",
                                    fix))  # fmt: skip
            continue
        if peer["Endpoint"] != record.get("endpoint"):
            problems.append(Problem(host, f"the WireGuard peer {other_host} is at {peer['Endpoint']}, but it "
                                    f"publishes {record.get('endpoint')}", fix))  # fmt: skip
        if node_id in talking and other in talking:
            age = now - peer["LatestHandshake"] if peer["LatestHandshake"] else None
            if age is None or age > HANDSHAKE_STALE_SECONDS:
                when = "never" if age is None else f"{age:.0f} s ago"
                problems.append(Problem(host, f"no WireGuard handshake with {other_host} ({when}) though both have "
                                        "endpoints on the network", f"check that udp/{wg['Port']} passes between "
                                        f"{host} and {other_host}; `boxnet swarm rotate-keys` has every node "
                                        "publish a fresh key"))  # fmt: skip
    for key in sorted(k for k in peers if k not in published):  # a node not alive now keeps its peer a while
        problems.append(Problem(host, f"a WireGuard peer ({key[:8]}..., {peers[key]['Endpoint']}) belongs to no "
                                "node of the swarm: left behind by a node that left", fix))  # fmt: skip
    return problems


def _paths(control: ControlPlane, host: str, view: dict[str, Any], encrypted: bool) -> list[Problem]:
    problems = []
    for probe in view.get("Probes", []):
        if probe["Answered"] or (probe["Path"] == "wireguard" and not encrypted):
            continue
        other = control.hostname(probe["Node"])
        if probe.get("SmallAnswered") is False:
            problems.append(Problem(host, f"{other} ({probe['Address']}, over the {probe['Path']}) does not answer "
                                    "even a small echo", f"check the route and firewalls between {host} and "
                                    f"{other}"))  # fmt: skip
            continue
        problems.append(Problem(host, f"a {probe['Size'] + 28}-byte packet with don't-fragment set to {other} "
                                f"({probe['Address']}, over the {probe['Path']}) got {probe['Detail']}: the path's "
                                "MTU is smaller than the overlays here send", "make the path carry it (every link's "
                                "MTU between the nodes), or recreate the networks with a smaller "
                                "--opt com.docker.network.driver.mtu"))  # fmt: skip
    return problems


def tunnels(control: ControlPlane, views: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """For the topology: each network's tunnel from each node to each other node, with its state."""
    found = []
    for network_id, network in sorted(control.networks.items(), key=lambda n: n[1]["name"]):
        for node_id, view in sorted(views.items(), key=lambda v: control.hostname(v[0])):
            mine = network_view(view, network_id)
            if mine is None:
                continue
            wanted = expected_entries(control, network_id, node_id)
            present = {e["Ip"]: (e["Mac"], e["Vtep"]) for e in mine["Entries"]}
            for other in control.alive():
                if other == node_id:
                    continue
                expected = {ip for ip, entry in wanted.items() if entry.node == other}
                programmed = {ip for ip in expected if present.get(ip) == (wanted[ip].mac, wanted[ip].vtep)}
                state = "idle" if not expected else "ok" if programmed == expected else \
                    f"missing {len(expected - programmed)} of {len(expected)}"  # fmt: skip
                found.append({"Network": network["name"], "Vni": network["vni"], "Encrypted": network["encrypted"],
                              "From": control.hostname(node_id), "To": control.hostname(other),
                              "Entries": len(programmed), "Expected": len(expected), "State": state})  # fmt: skip
    return found
