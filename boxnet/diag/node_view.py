"""What one node of a swarm has in its kernel for the overlays, read where it is: its underlay interface, each
swarm network's VXLAN device (state, MTU, the entries programmed on it), whether an encrypted network's VNI is
sealed in nftables, its WireGuard interface and peers (with their last handshake), and the tasks it runs.

A manager gathers every node's view (over the node port) for `boxnet topology --cluster` and `boxnet overlay
check`; diag/overlay_check.py compares them with the control plane. With probe, the node also sends a
don't-fragment ICMP echo of the full underlay MTU to each other node: the path's MTU, measured.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from boxnet.checksum import internet_checksum
from boxnet.drivers import registry as drivers
from boxnet.drivers.overlay.driver import VNI, VXLAN, VXLAN_OVERHEAD, WIREGUARD, encrypted
from boxnet.errors import BoxnetError
from boxnet.firewall.ruleset import T as FIREWALL_TABLE
from boxnet.kernel import links, nft, vxlan, wireguard
from boxnet.kernel.readiness import readable
from boxnet.model.service import TASK_LABEL

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

ROUTE = "/view"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"  # GET /view?probe=1 on the node port
PROBE_SECONDS = 1.0
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
IPV4_AND_ICMP_HEADERS = 28
PROBES_AT_ONCE = 8


def node_view(engine: Engine, node_id: str, hostname: str, address: str, probe: bool = False) -> dict[str, Any]:
    by_name = {link["name"]: link for link in links.interfaces()}
    # the interface holding the node's address, from the same reading of the links as everything else here
    underlay = next((name for name, link in by_name.items()
                     if any(cidr.split("/")[0] == address for cidr in link["addresses"])), None)  # fmt: skip
    underlay_mtu = by_name[underlay]["mtu"] if underlay in by_name else 0
    sealed_rules = nft.list_text(f"chain {FIREWALL_TABLE} vxlan_sealed_out") + \
        nft.list_text(f"chain {FIREWALL_TABLE} vxlan_sealed_in")  # fmt: skip
    networks = []
    with engine.view.lock:
        for network in engine.view.networks.values():
            if drivers.of(network).capabilities.scope != "global" or not network.driver_data.get(VNI):
                continue
            vni = int(network.driver_data[VNI])
            device = network.driver_data.get(VXLAN, "")
            link = by_name.get(device, {})
            networks.append({
                "Id": network.id, "Name": network.name, "Vni": vni, "Encrypted": encrypted(network),
                "Vxlan": device, "VxlanState": link.get("state", "absent"), "VxlanMtu": link.get("mtu", 0),
                "Bridge": network.bridge or "", "BridgeMtu": by_name.get(network.bridge or "", {}).get("mtu", 0),
                "WireGuard": network.driver_data.get(WIREGUARD, ""),
                "Sealed": f"encrypted VNI {vni}:" in sealed_rules and sealed_rules.count(f"VNI {vni}:") >= 2,
                "Entries": [{"Mac": p.mac, "Ip": p.ip, "Vtep": p.vtep}
                            for p in sorted(vxlan.peers(device), key=lambda p: p.ip)] if device in by_name else [],
            })  # fmt: skip
        tasks = [{"Name": c.name, "TaskId": c.labels[TASK_LABEL], "Service": c.labels.get(SERVICE_NAME_LABEL, ""),
                  "Addresses": {e.network_id: e.address(4) for e in c.endpoints.values() if e.address(4)}}
                 for c in engine.view.containers.values()
                 if c.state.status == "running" and c.labels.get(TASK_LABEL)]  # fmt: skip
    view: dict[str, Any] = {
        "NodeID": node_id, "Hostname": hostname, "Addr": address, "UnderlayDevice": underlay or "",
        "UnderlayMtu": underlay_mtu, "Networks": networks, "Tasks": tasks, "WireGuard": _wireguard(engine, by_name),
        "Time": time.time(),
    }  # fmt: skip
    if probe:
        view["Probes"] = _probes(engine, networks, view["WireGuard"])
    return view


def _wireguard(engine: Engine, by_name: dict[str, dict]) -> dict[str, Any] | None:
    cluster = engine.ctx.cluster
    encryption = cluster.encryption if cluster is not None else None
    if encryption is None or encryption.link is None:
        return None
    link = encryption.link
    try:
        peers = [{"PublicKey": p.public_key, "Endpoint": p.endpoint, "AllowedIps": p.allowed,
                  "LatestHandshake": p.latest_handshake, "Received": p.received, "Sent": p.sent}
                 for p in link.peers()]  # fmt: skip
        error = ""
    except BoxnetError as exc:
        peers, error = [], exc.message
    return {"Interface": encryption.name, "Address": encryption.address, "PublicKey": encryption.public_key,
            "Port": wireguard.PORT, "Mtu": by_name.get(encryption.name, {}).get("mtu", 0),
            "State": by_name.get(encryption.name, {}).get("state", "absent"), "Peers": peers,
            "Error": error}  # fmt: skip


def _probes(engine: Engine, networks: list[dict[str, Any]], wg: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A don't-fragment echo to every other node of the size the networks here need: over the underlay, the
    largest VXLAN packet (and WireGuard packet) any of them sends; through WireGuard, the largest VXLAN packet
    of an encrypted one. A network made with a lower MTU needs, and is checked for, no more."""
    cluster = engine.ctx.cluster
    if cluster is None or not networks:
        return []
    underlay = max(n["VxlanMtu"] + VXLAN_OVERHEAD + (wireguard.OVERHEAD if n["Encrypted"] else 0) for n in networks)
    targets = [(node, address, underlay, "underlay") for node, address in cluster.nodes.items()
               if address and node != cluster.node_id]  # fmt: skip
    sealed = [n["VxlanMtu"] + VXLAN_OVERHEAD for n in networks if n["Encrypted"]]
    encryption = cluster.encryption
    if encryption is not None and wg is not None and sealed:
        targets += [(node, encryption.address_of(node), max(sealed), "wireguard") for node in list(encryption.peers)
                    if encryption.address_of(node)]  # fmt: skip

    def probe(target: tuple[str, str, int, str]) -> dict[str, Any]:
        node, address, size, path = target
        answered, detail = echo(address, size - IPV4_AND_ICMP_HEADERS)
        found = {"Node": node, "Address": address, "Path": path, "Size": size - IPV4_AND_ICMP_HEADERS,
                 "Answered": answered, "Detail": detail}  # fmt: skip
        if not answered:  # a small one tells a path too narrow from a peer out of reach
            found["SmallAnswered"] = echo(address, 56)[0]
        return found

    with ThreadPoolExecutor(max_workers=PROBES_AT_ONCE) as pool:
        return list(pool.map(probe, targets))


def probe_seconds(nodes: int) -> float:
    """How long a node's probes may take, for whoever waits for its view."""
    return 2 * PROBE_SECONDS * -(-max(nodes, 1) * 2 // PROBES_AT_ONCE)


def echo(address: str, payload: int, seconds: float = PROBE_SECONDS) -> tuple[bool, str]:
    """One ICMP echo of payload bytes with don't-fragment set: (answered, what happened). The raw socket sees
    every ICMP message of the namespace: only the answer from address to this echo (its id), or an error
    about this very echo, counts."""
    marker = random.randint(1, 0xFFFF)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        body = os.urandom(max(payload - 8, 0))
        header = struct.pack("!BBHHH", 8, 0, 0, marker, 1)
        checksum = internet_checksum(header + body)
        try:
            sock.sendto(struct.pack("!BBHHH", 8, 0, checksum, marker, 1) + body, (address, 0))
        except OSError as exc:
            return False, f"not sent: {exc.strerror}"
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if not readable([sock], remaining):
                break
            try:
                data, (sender, _) = sock.recvfrom(65535)
            except OSError:
                continue
            offset = (data[0] & 0x0F) * 4
            if len(data) < offset + 8:
                continue
            kind, code = data[offset], data[offset + 1]
            if kind == 0 and sender == address and struct.unpack_from("!H", data, offset + 4)[0] == marker:
                return True, "answered"
            if kind == 3 and code == 4 and _quotes_this_echo(data[offset + 8 :], address, marker):
                mtu = struct.unpack_from("!H", data, offset + 6)[0]
                return False, f"fragmentation needed (next hop MTU {mtu})"
        return False, f"no answer within {seconds:g}s"


def _quotes_this_echo(quoted: bytes, address: str, marker: int) -> bool:
    """Whether an ICMP error quotes this probe: an echo to address with this id."""
    if len(quoted) < 20:
        return False
    inner = (quoted[0] & 0x0F) * 4
    return (len(quoted) >= inner + 8 and socket.inet_ntoa(quoted[16:20]) == address and quoted[inner] == 8
            and struct.unpack_from("!H", quoted, inner + 4)[0] == marker)  # fmt: skip
