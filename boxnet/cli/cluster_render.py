"""The cluster part of `boxnet topology --cluster`: nodes (underlay, WireGuard and its peers' last handshake,
the tasks they run), the tunnels between them per network with their state, and services, as text or dot."""

from __future__ import annotations

import time

from boxnet.cli.jsoncodec import dumps


def _state(state: str) -> str:
    """A link's operational state as a person says it: a VXLAN or TUN device that is up reports UNKNOWN."""
    return "up" if state in ("UP", "UNKNOWN") else state.lower()


def _handshake(peer: dict, now: float) -> str:
    if not peer["LatestHandshake"]:
        return "no handshake yet"
    return f"handshake {max(now - peer['LatestHandshake'], 0):.0f}s ago"


def render_text(cluster: dict) -> str:
    now = time.time()
    lines = [f"cluster  {len(cluster['Nodes'])} nodes"]
    by_key = {}
    for node in cluster["Nodes"]:
        view = node["View"]
        if view and view.get("WireGuard"):
            by_key[view["WireGuard"]["PublicKey"]] = node["Hostname"]
    for node in cluster["Nodes"]:
        role = node["Role"] + (", leader" if node["Leader"] else "")
        view = node["View"]
        underlay = f"{node['Addr']} on {view['UnderlayDevice']} (MTU {view['UnderlayMtu']})" if view else node["Addr"]
        lines.append(f"node {node['Hostname']}  {role}, {node['State']}  underlay {underlay}")
        if not view:
            lines.append(f"  (no view: {node['Error'] or 'down'})")
            continue
        wg = view.get("WireGuard")
        if wg:
            lines.append(f"  wireguard {wg['Interface']} {wg['Address']} udp/{wg['Port']} ({_state(wg['State'])})")
            for peer in wg["Peers"]:
                lines.append(f"    peer {by_key.get(peer['PublicKey'], '?')} at {peer['Endpoint']} "
                             f"{peer['AllowedIps']}: {_handshake(peer, now)}, {peer['Received']} B in, "
                             f"{peer['Sent']} B out")  # fmt: skip
        for network in view["Networks"]:
            crypt = f", through {network['WireGuard']}" if network["Encrypted"] else ""
            lines.append(f"  network {network['Name']}  VNI {network['Vni']} {network['Vxlan']} "
                         f"({_state(network['VxlanState'])}, MTU {network['VxlanMtu']}){crypt}, "
                         f"{len(network['Entries'])} remote entries")  # fmt: skip
        for task in view["Tasks"]:
            lines.append(f"  task {task['Name']}  {' '.join(task['Addresses'].values())}")
    lines.append("tunnels (entries programmed / expected)")
    for tunnel in cluster["Tunnels"]:
        crypt = "WireGuard" if tunnel["Encrypted"] else "clear"
        lines.append(f"  {tunnel['Network']} VNI {tunnel['Vni']} ({crypt}): {tunnel['From']} -> {tunnel['To']} "
                     f"{tunnel['Entries']}/{tunnel['Expected']} {tunnel['State']}")  # fmt: skip
    for service in cluster["Services"]:
        vips = f" VIP {' '.join(service['Vips'])}" if service["Vips"] else ""
        lines.append(f"service {service['Name']} ({service['Mode']}) on {', '.join(service['Networks'])}{vips}")
        for task in sorted(service["Tasks"], key=lambda t: (t["Slot"] or 0, t["Node"])):
            lines.append(f"  task {task['Id'][:12]} slot {task['Slot'] or '-'} on {task['Node'] or '(unassigned)'}:"
                         f" {task['State']}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _id(kind: str, name: str) -> str:
    return dumps(f"{kind}:{name}")


def render_dot(cluster: dict) -> list[str]:
    """Lines of a digraph's body: a box per node with its tasks, an edge per tunnel (red: not programmed)."""
    out = []
    for node in cluster["Nodes"]:
        view = node["View"] or {}
        out.append(f"  subgraph {dumps('cluster_' + node['Hostname'])} {{")
        label = f"{node['Hostname']} ({node['Role']}{', leader' if node['Leader'] else ''})\\n{node['Addr']}"
        out.append(f"    label={dumps(label)}; style=rounded;")
        out.append(f"    {_id('node', node['Hostname'])} [shape=box3d label={dumps(node['Addr'])}];")
        for task in view.get("Tasks", []):
            text = f"{task['Name'][:40]}\\n{' '.join(task['Addresses'].values())}"
            out.append(f"    {_id('task', task['Name'])} [shape=component label={dumps(text)}];")
            out.append(f"    {_id('task', task['Name'])} -> {_id('node', node['Hostname'])} [arrowhead=none];")
        out.append("  }")
    for tunnel in cluster["Tunnels"]:
        if tunnel["From"] > tunnel["To"] and tunnel["State"] in ("ok", "idle"):
            continue  # a healthy pair is drawn once
        crypt = " WireGuard" if tunnel["Encrypted"] else ""
        color = "black" if tunnel["State"] in ("ok", "idle") else "red"
        style = "dashed" if tunnel["State"] == "idle" else "solid"
        label = f"{tunnel['Network']} VNI {tunnel['Vni']}{crypt}\\n{tunnel['State']}"
        out.append(f"  {_id('node', tunnel['From'])} -> {_id('node', tunnel['To'])} [dir=both color={color} "
                   f"style={style} label={dumps(label)}];")  # fmt: skip
    return out
