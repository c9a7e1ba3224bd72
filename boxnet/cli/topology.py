"""`boxnet topology`: networks, bridges, containers, veths, ports and rules, as text, JSON, dot or SVG."""

from __future__ import annotations

import subprocess
import sys

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.jsoncodec import dumps

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "topology"):
        return
    topology = commands.add_parser("topology", help="every network, container, veth, port and rule, as the "
                                   "kernel has them now")  # fmt: skip
    topology.add_argument("--format", choices=("text", "json", "dot", "svg"), default="text")
    topology.add_argument("--no-rules", action="store_true", help="leave the nftables rules out of the text")
    topology.add_argument("--cluster", action="store_true", help="the swarm too (on a manager): nodes, underlay, "
                          "tunnels and their state, WireGuard peers, services and tasks")  # fmt: skip
    topology.set_defaults(func=topology_command)


def topology_command(client: Client, args: Namespace) -> int:
    data = client.get("/boxnet/topology", **({"cluster": "1"} if args.cluster else {}))
    if args.format == "json":
        print(dumps(data, indent=2))
    elif args.format == "text":
        print(render_text(data, rules=not args.no_rules), end="")
        if "Cluster" in data:
            from boxnet.cli import cluster_render

            print(cluster_render.render_text(data["Cluster"]), end="")
    elif args.format == "dot":
        print(render_dot(data), end="")
    else:
        try:
            result = subprocess.run(["dot", "-Tsvg"], input=render_dot(data), capture_output=True, text=True)
        except FileNotFoundError:
            print("boxnet: --format svg needs graphviz's `dot` (make setup installs it)", file=sys.stderr)
            return 1
        if result.returncode != 0:
            print(f"boxnet: dot failed: {result.stderr.strip()}", file=sys.stderr)
            return 1
        sys.stdout.write(result.stdout)
    return 0


def _ports(ports: list[dict]) -> str:
    return ", ".join(f"{p['HostIp']}:{p['HostPort']}->{p['ContainerPort']}/{p['Protocol']}" for p in ports)


def render_text(data: dict, rules: bool = True) -> str:
    lines = []
    uplinks = ", ".join(f"{u['Name']} ({', '.join(u['Addresses'])})" for u in data["Host"]["Uplinks"])
    lines.append(f"host  way out: {uplinks or '(none)'}")
    redirect = data["Host"].get("ConnectRedirect", {})
    if redirect.get("Enabled"):
        lines.append(f"host  own TCP connections to published ports: redirected at connect(), no NAT "
                     f"({len(redirect['Ports'])} ports)")  # fmt: skip
    elif redirect:
        lines.append(f"host  own connections to published ports: through NAT ({redirect['Reason']})")
    containers = {c["Name"]: c for c in data["Containers"]}
    shown = set()
    for network in data["Networks"]:
        if network["Driver"] != "bridge":
            continue
        flags = " internal" if network["Internal"] else ""
        flags += " icc-off" if not network["Icc"] else ""
        lines.append(f"network {network['Name']}  bridge {network['Bridge']} (ifindex {network['BridgeIfindex']})  "
                     f"{' '.join(network['Subnets'])}{flags}")  # fmt: skip
        for name in network["Containers"]:
            container = containers.get(name)
            if container is None:
                continue
            lines.extend(_container_lines(container, network["Name"], rules and name not in shown))
            shown.add(name)
    for container in data["Containers"]:
        if container["Name"] not in shown:
            lines.append(f"({container['NetworkMode']})")
            lines.extend(_container_lines(container, None, rules))
    return "\n".join(lines) + "\n"


def _container_lines(container: dict, network: str | None, rules: bool) -> list[str]:
    netns = container["Netns"] + (f"  (ip netns: {container['NetnsName']})" if container["NetnsName"] else "")
    lines = [f"  container {container['Name']}  pid {container['Pid']}  netns {netns}"]
    for interface in container["Interfaces"]:
        if network is not None and interface["Network"] != network:
            continue
        peer = (f"  <-> {interface['HostVeth']} (ifindex {interface['HostVethIfindex']}) on {interface['Bridge']}"
                if interface["HostVeth"] else "")  # fmt: skip
        lines.append(f"    {interface['Name']} (ifindex {interface['Ifindex']})  {interface['Mac']}  "
                     f"{' '.join(interface['Addresses'])}{peer}")  # fmt: skip
    if container["Ports"]:
        lines.append(f"    ports {_ports(container['Ports'])}")
    if rules:
        for rule in container["Rules"]:
            counted = f"[{rule['Packets']} pkts {rule['Bytes']} bytes] " if rule["Packets"] is not None else ""
            lines.append(f"    rule {rule['Table']} {rule['Chain']}: {counted}{rule['Rule']}")
    return lines


def _id(kind: str, name: str) -> str:
    return dumps(f"{kind}:{name}")


def render_dot(data: dict) -> str:
    """Containers, their veths, bridges, published ports, and the way out."""
    out = ["digraph boxnet {", "  rankdir=LR; node [fontname=Helvetica fontsize=10]; edge [fontsize=9];"]
    uplinks = "\\n".join(f"{u['Name']} {' '.join(u['Addresses'])}" for u in data["Host"]["Uplinks"])
    cloud = dumps("way out (masquerade)\\n" + uplinks)
    out.append(f"  {_id('host', 'out')} [shape=cloud label={cloud}];")
    for network in data["Networks"]:
        if network["Driver"] != "bridge":
            continue
        label = f"{network['Bridge']}\\n{network['Name']} {' '.join(network['Subnets'])}"
        out.append(f"  {_id('bridge', network['Bridge'])} [shape=box style=filled fillcolor=lightblue "
                   f"label={dumps(label)}];")  # fmt: skip
        if not network["Internal"]:
            out.append(f"  {_id('bridge', network['Bridge'])} -> {_id('host', 'out')} [style=dashed];")
    for container in data["Containers"]:
        label = f"{container['Name']}\\npid {container['Pid']}"
        out.append(f"  {_id('container', container['Name'])} [shape=component label={dumps(label)}];")
        for interface in container["Interfaces"]:
            if not interface["Bridge"]:
                continue
            edge = f"{interface['Name']} {' '.join(interface['Addresses'])}\\n{interface['HostVeth']}"
            out.append(f"  {_id('container', container['Name'])} -> {_id('bridge', interface['Bridge'])} "
                       f"[dir=both label={dumps(edge)}];")  # fmt: skip
        for port in container["Ports"]:
            name = f"{port['HostIp']}:{port['HostPort']}/{port['Protocol']}"
            out.append(f"  {_id('port', name)} [shape=cds label={dumps(name)}];")
            out.append(f"  {_id('host', 'out')} -> {_id('port', name)} [style=dotted];")
            out.append(f"  {_id('port', name)} -> {_id('container', container['Name'])} "
                       f"[label={dumps(str(port['ContainerPort']))}];")  # fmt: skip
    if "Cluster" in data:
        from boxnet.cli import cluster_render

        out += cluster_render.render_dot(data["Cluster"])
    out.append("}")
    return "\n".join(out) + "\n"
