"""The routing mesh on one node: `ip boxnet_mesh`, a table of its own, rendered whole from the services'
published ports and their running tasks' addresses on the ingress network, and replaced in one transaction.

- prerouting/output (nat, just before boxnet's own): a packet to one of the node's addresses (not loopback)
  whose protocol and port a service publishes jumps to that port's chain, which DNATs to `numgen inc mod N`
  over the N running tasks, wherever they run. Connections stay on their task (conntrack); a new table
  sends new connections only to the tasks running now.
- postrouting (nat): what the mesh sends to a task on another node is masqueraded to this node's ingress
  address: the task answers its node's gateway bridge by default, where nothing could translate the reply
  back, so only a source of this node brings the reply here. To a task on this node the client's address is
  kept: the task sends what leaves its ingress address back to this node's ingress address (its own
  routing table, drivers/overlay), which holds the connection.
- input/forward (filter): nothing may open a connection from the ingress network to the node or through it.
  Everything the mesh carries is opened from the node's side; without these a task would reach whatever the
  node serves on all addresses, at the node's ingress address (Docker keeps its tasks off the host with a
  separate ingress namespace instead), and could route out with an ingress source through the node.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "boxnet_mesh"
T = f"ip {TABLE}"
PROTOCOLS = ("tcp", "udp")
_SAFE_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


@dataclass(frozen=True)
class MeshPort:
    protocol: str
    published: int
    target: int
    backends: tuple[str, ...]  # the running tasks' addresses on the ingress network

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unsafe protocol {self.protocol!r}")
        if not (0 < int(self.published) < 65536 and 0 < int(self.target) < 65536):
            raise ValueError(f"unsafe port {self.published}:{self.target}")
        for address in self.backends:
            if ipaddress.ip_address(address).version != 4:
                raise ValueError(f"{address}: the ingress network is IPv4")

    @property
    def chain(self) -> str:
        return f"p-{self.protocol}-{int(self.published)}"


def full(bridge: str, ports: Sequence[MeshPort], local_backends: Sequence[str]) -> list[str]:
    """The whole table, replacing whatever it held (`add` first, so that the delete always finds it).
    bridge: this node's ingress bridge. A port with no running task gets no entry: its packets reach the
    node's own stack, where the mesh's reservation of the port refuses them."""
    if not _SAFE_IFNAME.match(bridge):
        raise ValueError(f"unsafe interface name {bridge!r}")
    commands = [
        f"add table {T}",
        f"delete table {T}",
        f"add table {T}",
        f"add map {T} ports {{ type inet_proto . inet_service : verdict; }}",
        f"add set {T} local_backends {{ type ipv4_addr; }}",
        f"add chain {T} prerouting {{ type nat hook prerouting priority dstnat - 1; policy accept; }}",
        f"add chain {T} output {{ type nat hook output priority -101; policy accept; }}",
        f"add chain {T} postrouting {{ type nat hook postrouting priority srcnat - 1; policy accept; }}",
        f"add rule {T} prerouting ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @ports",
        f"add rule {T} output ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @ports",
        f'add rule {T} postrouting oifname "{bridge}" ct status dnat ip daddr != @local_backends masquerade '
        'comment "the mesh to a task on another node: its reply must come back here"',
        f"add chain {T} input {{ type filter hook input priority filter; policy accept; }}",
        f"add chain {T} forward {{ type filter hook forward priority filter; policy accept; }}",
        f'add rule {T} input iifname "{bridge}" ct state new counter drop comment "no task opens a connection to '
        'the node over the ingress network"',
        # Bridged frames between the ingress bridge's own ports (a node's mesh to a local or remote task) pass.
        f'add rule {T} forward iifname "{bridge}" oifname != "{bridge}" ct state new counter drop comment "nor '
        'through the node"',
    ]
    for port in ports:
        backends = sorted(set(port.backends), key=ipaddress.ip_address)
        if not backends:
            continue
        targets = ", ".join(f"{i} : {address} . {int(port.target)}" for i, address in enumerate(backends))
        commands += [
            f"add chain {T} {port.chain}",
            f"add rule {T} {port.chain} meta l4proto {port.protocol} dnat ip to numgen inc mod {len(backends)} "
            f"map {{ {targets} }}",
            f"add element {T} ports {{ {port.protocol} . {int(port.published)} : jump {port.chain} }}",
        ]
    local = sorted({str(ipaddress.ip_address(a)) for a in local_backends}, key=ipaddress.ip_address)
    if local:
        commands.append(f"add element {T} local_backends {{ {', '.join(local)} }}")
    return commands


def remove() -> list[str]:
    return [f"add table {T}", f"delete table {T}"]
