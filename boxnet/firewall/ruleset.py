"""boxnet's nftables ruleset, rendered as nft commands for one libnftables transaction.

One table, `inet boxnet`, that boxnet owns whole. What grows with the number of containers lives in sets and
maps, so a lookup costs the same for the 1000th published port as for the first:

- prerouting/output (nat): packets to a local address jump to `publish4`, which DNATs through two maps,
  keyed by (host address, protocol, port) and by (protocol, port) for ports published on every address.
  Prerouting skips 127.0.0.0/8 so that a neighbour cannot reach a port published on 127.0.0.1.
- postrouting (nat): masquerade what leaves a network for the outside, what the host sends from loopback to
  a published port (the bridge has route_localnet so it may leave), and DNATed traffic from a container
  (hairpin, and other networks through a published port), so that replies come back the same way.
- forward (filter): a verdict map on the output bridge jumps to that network's chain, which accepts
  replies, its own traffic (unless icc is off) and published-port traffic, and drops the rest: isolation
  between networks, and nothing reaches an unpublished port even when a neighbour routes to the subnet.
  Internal networks have a drop verdict for anything leaving their bridge for elsewhere.

- guard (filter, prerouting at raw priority): a bridge has route_localnet (so that the host's own 127.0.0.1
  may reach a published port through it), which would also let a container reach the host's loopback-only
  services by sending packets for 127.0.0.1 to its gateway (CVE-2020-8558). Those are dropped before
  anything else sees them.
- user: the administrator's chain (Docker's DOCKER-USER). boxnet makes it once, empty, and never flushes
  or deletes it (a rebuild replaces everything in the table but it). It is called for forwarded packets
  and for the host's own packets to containers, from base chains of its own that run before boxnet's:
  a drop there is final, and an accept cannot open what boxnet keeps closed (unlike DOCKER-USER's).

Why text and not libnftables' JSON: nft 1.0.6 (Debian 12) crashes parsing the JSON of a DNAT whose map
yields address and port together. Every value placed in a command is validated first (interface names by
the model, addresses by `ipaddress`, ports and protocols as integers and a fixed list), so nothing a user
typed can change a command's meaning.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from boxnet.firewall import bridge_rules

FAMILY = "inet"
TABLE = "boxnet"
T = f"{FAMILY} {TABLE}"
PROTOCOLS = ("tcp", "udp", "sctp")
_SAFE_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


def _ifname(name: str) -> str:
    if not _SAFE_IFNAME.match(name):
        raise ValueError(f"unsafe interface name {name!r}")
    return f'"{name}"'


def _cidr(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def _addr(address: str) -> str:
    return str(ipaddress.ip_address(address))


@dataclass(frozen=True)
class NetworkRules:
    network_id: str
    bridge: str
    subnets4: tuple[str, ...]
    subnets6: tuple[str, ...] = ()
    internal: bool = False
    icc: bool = True
    masquerade: bool = True

    @property
    def chain(self) -> str:
        if not re.fullmatch(r"[0-9a-f]{12,64}", self.network_id):
            raise ValueError(f"unsafe network id {self.network_id!r}")
        return f"net-{self.network_id[:12]}"


@dataclass(frozen=True)
class PortRule:
    protocol: str
    host_port: int
    container_ip: str
    container_port: int
    host_ip: str = ""  # "" publishes on every address of the host
    owner: str = ""  # the container id, for topology

    def key(self) -> str:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unsafe protocol {self.protocol!r}")
        port = int(self.host_port)
        return f"{_addr(self.host_ip)} . {self.protocol} . {port}" if self.host_ip else f"{self.protocol} . {port}"

    def value(self) -> str:
        return f"{_addr(self.container_ip)} . {int(self.container_port)}"

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.container_ip).version

    @property
    def map_name(self) -> str:
        return f"pub{self.version}_{'addr' if self.host_ip else 'any'}"

    def key_registers(self) -> bytes:
        """The map key as nftables stores it (for kernel/nfnl): each field in 32-bit registers."""
        from boxnet.kernel import nfnl

        key = nfnl.register_protocol(self.protocol) + nfnl.register_port(self.host_port)
        return nfnl.register_address(self.host_ip) + key if self.host_ip else key

    def value_registers(self) -> bytes:
        from boxnet.kernel import nfnl

        return nfnl.register_address(self.container_ip) + nfnl.register_port(self.container_port)


USER_CHAIN = "user"


def skeleton() -> list[str]:
    """The table with its sets, maps, base chains and fixed rules, and nothing network-specific."""
    return [
        f"add table {T}",
        f"add chain {T} {USER_CHAIN}",
        f"add set {T} bridges {{ type ifname; }}",
        f"add set {T} masq4 {{ type ipv4_addr; flags interval; }}",
        f"add set {T} masq6 {{ type ipv6_addr; flags interval; }}",
        f"add set {T} subnets4 {{ type ipv4_addr; flags interval; }}",
        f"add set {T} subnets6 {{ type ipv6_addr; flags interval; }}",
        f"add map {T} pub4_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}",
        f"add map {T} pub4_addr {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}",
        f"add map {T} pub6_any {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}",
        f"add map {T} pub6_addr {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}",
        f"add map {T} fwd_out {{ type ifname : verdict; }}",
        f"add map {T} fwd_in {{ type ifname : verdict; }}",
        f"add chain {T} guard {{ type filter hook prerouting priority raw; policy accept; }}",
        f"add chain {T} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {T} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {T} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add chain {T} forward {{ type filter hook forward priority filter; policy accept; }}",
        # The user chain runs from base chains of its own, before boxnet's: its drop is final, its accept
        # only ends its own base chain, so an accept cannot open what boxnet's isolation keeps closed.
        f"add chain {T} user-forward {{ type filter hook forward priority -5; policy accept; }}",
        f"add chain {T} host-out {{ type filter hook output priority filter; policy accept; }}",
        f"add chain {T} publish4",
        f"add chain {T} publish6",
        f'add rule {T} guard iifname @bridges ip daddr 127.0.0.0/8 counter drop comment "the host\'s loopback '
        'from a container (CVE-2020-8558)"',
        # The port guard already drops a source that is not the container's own; this holds without it.
        f'add rule {T} guard iifname @bridges ip saddr 127.0.0.0/8 counter drop comment "a loopback source from '
        'a container"',
        f"add rule {T} prerouting ip daddr != 127.0.0.0/8 fib daddr type local jump publish4",
        # ::1 cannot be routed out to a bridge at all (IPv6 has no route_localnet), so it is not published.
        f"add rule {T} prerouting ip6 daddr != ::1 fib daddr type local jump publish6",
        f"add rule {T} output meta nfproto ipv4 fib daddr type local jump publish4",
        f"add rule {T} output meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local jump publish6",
        f"add rule {T} publish4 dnat ip to ip daddr . meta l4proto . th dport map @pub4_addr",
        f"add rule {T} publish4 dnat ip to meta l4proto . th dport map @pub4_any",
        f"add rule {T} publish6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6_addr",
        f"add rule {T} publish6 dnat ip6 to meta l4proto . th dport map @pub6_any",
        f'add rule {T} postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade comment "host loopback to a '
        'published port"',
        f'add rule {T} postrouting ct status dnat ip saddr @subnets4 oifname @bridges masquerade comment '
        '"container to a published port"',
        f'add rule {T} postrouting ct status dnat ip6 saddr @subnets6 oifname @bridges masquerade comment '
        '"container to a published port"',
        f'add rule {T} postrouting ip saddr @masq4 oifname != @bridges masquerade comment "outbound"',
        f'add rule {T} postrouting ip6 saddr @masq6 oifname != @bridges masquerade comment "outbound"',
        f"add rule {T} user-forward jump {USER_CHAIN}",
        # By address: the output hook's oifname is the route's before DNAT (lo, for a published port).
        f"add rule {T} host-out ip daddr @subnets4 jump {USER_CHAIN}",
        f"add rule {T} host-out ip6 daddr @subnets6 jump {USER_CHAIN}",
        f"add rule {T} forward oifname vmap @fwd_out",
        f"add rule {T} forward iifname vmap @fwd_in",
    ]


VXLAN_PORT = 4789


def swarm(vteps: Sequence[str], sealed: Mapping[int, str] | None = None) -> list[str]:
    """In a swarm: VXLAN reaches this node only from the swarm's nodes (a neighbour on the underlay cannot
    inject frames into an overlay), and a container cannot send VXLAN to a node (after masquerade its packets
    would come from a node's address, and land in any overlay, an internal one included). With sealed, the
    encrypted networks' rules (set_sealed)."""
    commands = [
        f"add set {T} vteps4 {{ type ipv4_addr; }}",
        f"add chain {T} vxlan_in {{ type filter hook input priority -1; policy accept; }}",
        f"add chain {T} vxlan_fwd {{ type filter hook forward priority -6; policy accept; }}",
        f'add rule {T} vxlan_in udp dport {VXLAN_PORT} ip saddr != @vteps4 counter drop comment "VXLAN only '
        'from the swarm\'s nodes"',
        f'add rule {T} vxlan_fwd iifname @bridges udp dport {VXLAN_PORT} ip daddr @vteps4 counter drop comment '
        '"no VXLAN from a container to the swarm\'s nodes"',
        *_SEALED_CHAINS,
    ]
    return commands + set_vteps(vteps) + set_sealed(sealed or {})


# The VNI of a VXLAN packet: 24 bits at bit 96 of the UDP header (8 bytes of UDP, then 4 of VXLAN flags).
_VNI = "@th,96,24"
_SEALED_CHAINS = (f"add chain {T} vxlan_sealed_out {{ type filter hook output priority -1; policy accept; }}",
                  f"add chain {T} vxlan_sealed_in {{ type filter hook input priority -2; policy accept; }}")


def sealed_only(sealed: Mapping[int, str]) -> list[str]:
    """The sealed chains (made if missing) with these VNIs' rules: in a swarm or not (a daemon that starts
    again seals its encrypted networks before it is back in the swarm)."""
    return [*_SEALED_CHAINS, *set_sealed(sealed)]


def set_sealed(sealed: Mapping[int, str]) -> list[str]:
    """Encrypted networks fail closed: a VXLAN packet of their VNI leaves only through the node's WireGuard
    interface and is taken in only from it (a plaintext frame with that VNI, sent or injected on the underlay,
    is dropped). The rules exist before the network's VXLAN device does, and whether WireGuard runs or not."""
    commands = [f"flush chain {T} vxlan_sealed_out", f"flush chain {T} vxlan_sealed_in"]
    for vni, interface in sorted(sealed.items()):
        if not 0 < int(vni) < 1 << 24:
            raise ValueError(f"unsafe VNI {vni!r}")
        commands += [
            f"add rule {T} vxlan_sealed_out udp dport {VXLAN_PORT} {_VNI} {int(vni)} oifname != {_ifname(interface)} "
            f'counter drop comment "encrypted VNI {int(vni)}: only through WireGuard"',
            f"add rule {T} vxlan_sealed_in udp dport {VXLAN_PORT} {_VNI} {int(vni)} iifname != {_ifname(interface)} "
            f'counter drop comment "encrypted VNI {int(vni)}: only from WireGuard"',
        ]
    return commands


def set_vteps(vteps: Sequence[str]) -> list[str]:
    commands = [f"flush set {T} vteps4"]
    if vteps:
        commands.append(_elements("add", "vteps4", sorted(_addr(a) for a in vteps)))
    return commands


def unswarm() -> list[str]:
    """The reverse of swarm() (each `add` first, so that every delete finds its object)."""
    return [f"add chain {T} vxlan_in {{ type filter hook input priority -1; policy accept; }}",
            f"add chain {T} vxlan_fwd {{ type filter hook forward priority -6; policy accept; }}",
            f"add set {T} vteps4 {{ type ipv4_addr; }}", *_SEALED_CHAINS,
            f"delete chain {T} vxlan_in", f"delete chain {T} vxlan_fwd", f"delete set {T} vteps4",
            f"delete chain {T} vxlan_sealed_out", f"delete chain {T} vxlan_sealed_in"]  # fmt: skip


def _elements(verb: str, name: str, elems: list[str]) -> str:
    return f"{verb} element {T} {name} {{ {', '.join(elems)} }}"


def add_network(net: NetworkRules) -> list[str]:
    bridge, chain = _ifname(net.bridge), net.chain
    comment = f"boxnet network {net.network_id[:12]}"
    own = "accept" if net.icc else "drop"
    commands = [
        f"add chain {T} {chain}",
        f'add rule {T} {chain} ct state established,related accept comment "{comment}"',
        f'add rule {T} {chain} iifname {bridge} counter {own} comment "{comment} icc{"" if net.icc else " off"}"',
    ]
    if not net.internal:
        commands.append(f'add rule {T} {chain} ct status dnat counter accept comment "{comment} published ports"')
    commands.append(f'add rule {T} {chain} counter drop comment "{comment} isolation"')
    commands.append(_elements("add", "bridges", [bridge]))
    commands.append(_elements("add", "fwd_out", [f"{bridge} : jump {chain}"]))
    if net.internal:
        commands.append(_elements("add", "fwd_in", [f"{bridge} : drop"]))
    if net.subnets4:
        commands.append(_elements("add", "subnets4", [_cidr(s) for s in net.subnets4]))
    if net.subnets6:
        commands.append(_elements("add", "subnets6", [_cidr(s) for s in net.subnets6]))
    if net.masquerade and net.subnets4:
        commands.append(_elements("add", "masq4", [_cidr(s) for s in net.subnets4]))
    if net.masquerade and net.subnets6:
        commands.append(_elements("add", "masq6", [_cidr(s) for s in net.subnets6]))
    return commands


def remove_network(net: NetworkRules) -> list[str]:
    """The reverse of add_network, in reverse order."""
    bridge = _ifname(net.bridge)
    commands = []
    if net.masquerade and net.subnets6:
        commands.append(_elements("delete", "masq6", [_cidr(s) for s in net.subnets6]))
    if net.masquerade and net.subnets4:
        commands.append(_elements("delete", "masq4", [_cidr(s) for s in net.subnets4]))
    if net.subnets6:
        commands.append(_elements("delete", "subnets6", [_cidr(s) for s in net.subnets6]))
    if net.subnets4:
        commands.append(_elements("delete", "subnets4", [_cidr(s) for s in net.subnets4]))
    if net.internal:
        commands.append(_elements("delete", "fwd_in", [bridge]))
    commands.append(_elements("delete", "fwd_out", [bridge]))
    commands.append(_elements("delete", "bridges", [bridge]))
    commands.append(f"delete chain {T} {net.chain}")
    return commands


def add_ports(ports: list[PortRule]) -> list[str]:
    by_map: dict[str, list[str]] = {}
    for port in ports:
        by_map.setdefault(port.map_name, []).append(f"{port.key()} : {port.value()}")
    return [_elements("add", name, elems) for name, elems in sorted(by_map.items())]


@dataclass(frozen=True)
class Present:
    """What `inet boxnet` holds now, by name: a rebuild removes it all but the administrator's chain."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()


def clear_tables(present: Present) -> list[str]:
    """Empties `inet boxnet` but for the user chain, and deletes `bridge boxnet` (`add` first makes each
    delete succeed whether or not the object exists). Rules go first, then the maps whose verdicts name
    chains, then the chains."""
    ours = sorted(present.chains - {USER_CHAIN})
    commands = [f"add table {T}"]
    commands += [f"flush chain {T} {_name(chain)}" for chain in ours]
    commands += [f"delete map {T} {_name(name)}" for name in sorted(present.maps)]
    commands += [f"delete set {T} {_name(name)}" for name in sorted(present.sets)]
    commands += [f"delete chain {T} {_name(chain)}" for chain in ours]
    return [*commands, *bridge_rules.delete_table()]


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _name(name: str) -> str:
    """An object name read back from the kernel, refused if it could change a command's meaning."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe nftables object name {name!r}")
    return name


def full(networks: list[NetworkRules], ports: list[PortRule], guards: Sequence[bridge_rules.PortGuard] = (),
         present: Present = Present(), vteps: Sequence[str] | None = None,
         sealed: Mapping[int, str] | None = None) -> list[str]:  # fmt: skip
    """The whole desired ruleset, both tables, replacing what they hold (but the user chain), in one
    transaction; with vteps (in a swarm), the VXLAN rules, and the encrypted networks' (sealed)."""
    commands = clear_tables(present) + skeleton()
    if vteps is not None:
        commands += swarm(vteps, sealed)
    elif sealed:
        commands += sealed_only(sealed)
    for net in networks:
        commands += add_network(net)
    if ports:
        commands += add_ports(ports)
    return commands + bridge_rules.skeleton() + bridge_rules.add_ports(list(guards))


def render(commands: list[str]) -> str:
    return "\n".join(commands) + "\n"
