"""boxnet's nftables ruleset, rendered as libnftables JSON commands.

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
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

FAMILY = "inet"
TABLE = "boxnet"
Command = dict[str, Any]


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
        return f"net-{self.network_id[:12]}"


@dataclass(frozen=True)
class PortRule:
    protocol: str
    host_port: int
    container_ip: str
    container_port: int
    host_ip: str = ""  # "" publishes on every address of the host
    owner: str = ""  # the container id, for comments and topology

    def key(self) -> dict[str, Any]:
        if self.host_ip:
            return {"concat": [self.host_ip, self.protocol, self.host_port]}
        return {"concat": [self.protocol, self.host_port]}

    def value(self) -> dict[str, Any]:
        return {"concat": [self.container_ip, self.container_port]}

    @property
    def map_name(self) -> str:
        return "pub4_addr" if self.host_ip else "pub4_any"


def _ref(kind: str, name: str, **extra: Any) -> Command:
    return {kind: {"family": FAMILY, "table": TABLE, "name": name, **extra}}


def _rule(chain: str, *expr: dict[str, Any], comment: str | None = None) -> Command:
    body: dict[str, Any] = {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}
    if comment:
        body["comment"] = comment
    return {"add": {"rule": body}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _prefix(cidr: str) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


_LOCAL_DST = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", op="in")
_MASQ = {"masquerade": None}


def skeleton() -> list[Command]:
    """The table with its sets, maps, base chains and fixed rules, and nothing network-specific."""
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    sets = {
        "bridges": {"type": "ifname"},
        "masq4": {"type": "ipv4_addr", "flags": ["interval"]},
        "masq6": {"type": "ipv6_addr", "flags": ["interval"]},
        "subnets4": {"type": "ipv4_addr", "flags": ["interval"]},
    }
    for name, spec in sets.items():
        commands.append({"add": _ref("set", name, **spec)})
    maps = {
        "pub4_any": {"type": ["inet_proto", "inet_service"], "map": "ipv4_addr . inet_service"},
        "pub4_addr": {"type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "ipv4_addr . inet_service"},
        "fwd_out": {"type": "ifname", "map": "verdict"},
        "fwd_in": {"type": "ifname", "map": "verdict"},
    }
    for name, spec in maps.items():
        commands.append({"add": _ref("map", name, **spec)})
    base_chains = {
        "prerouting": {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
        "output": {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
        "postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
        "forward": {"type": "filter", "hook": "forward", "prio": 0, "policy": "accept"},
        "publish4": {},
    }
    for name, spec in base_chains.items():
        commands.append({"add": _ref("chain", name, **spec)})
    loopback = _prefix("127.0.0.0/8")
    commands += [
        _rule("prerouting", _match(_payload("ip", "daddr"), loopback, "!="), _LOCAL_DST,
              {"jump": {"target": "publish4"}}),
        _rule("output", _match(_meta("nfproto"), "ipv4"), _LOCAL_DST, {"jump": {"target": "publish4"}}),
        _rule("publish4", {"dnat": {"family": "ip", "addr": {"map": {
            "key": {"concat": [_payload("ip", "daddr"), _meta("l4proto"), _payload("th", "dport")]},
            "data": "@pub4_addr"}}}}),
        _rule("publish4", {"dnat": {"family": "ip", "addr": {"map": {
            "key": {"concat": [_meta("l4proto"), _payload("th", "dport")]}, "data": "@pub4_any"}}}}),
        _rule("postrouting", _CT_DNAT, _match(_payload("ip", "saddr"), loopback), _MASQ,
              comment="host loopback to a published port"),
        _rule("postrouting", _CT_DNAT, _match(_payload("ip", "saddr"), "@subnets4"),
              _match(_meta("oifname"), "@bridges"), _MASQ, comment="container to a published port"),
        _rule("postrouting", _match(_payload("ip", "saddr"), "@masq4"),
              _match(_meta("oifname"), "@bridges", "!="), _MASQ, comment="outbound"),
        _rule("postrouting", _match(_payload("ip6", "saddr"), "@masq6"),
              _match(_meta("oifname"), "@bridges", "!="), _MASQ, comment="outbound"),
        _rule("forward", {"vmap": {"key": _meta("oifname"), "data": "@fwd_out"}}),
        _rule("forward", {"vmap": {"key": _meta("iifname"), "data": "@fwd_in"}}),
    ]  # fmt: skip
    return commands


def _elements(name: str, elems: list[Any], verb: str = "add") -> Command:
    return {verb: {"element": {"family": FAMILY, "table": TABLE, "name": name, "elem": elems}}}


def add_network(net: NetworkRules) -> list[Command]:
    comment = f"boxnet network {net.network_id[:12]}"
    commands: list[Command] = [{"add": _ref("chain", net.chain)}]
    commands.append(_rule(net.chain, _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                          {"accept": None}, comment=comment))  # fmt: skip
    own = {"accept": None} if net.icc else {"drop": None}
    commands.append(_rule(net.chain, _match(_meta("iifname"), net.bridge), {"counter": None}, own,
                          comment=comment + (" icc" if net.icc else " icc disabled")))  # fmt: skip
    if not net.internal:
        commands.append(_rule(net.chain, _CT_DNAT, {"accept": None}, comment=comment + " published ports"))
    commands.append(_rule(net.chain, {"counter": None}, {"drop": None}, comment=comment + " isolation"))
    commands.append(_elements("bridges", [net.bridge]))
    commands.append(_elements("fwd_out", [[net.bridge, {"jump": {"target": net.chain}}]]))
    if net.internal:
        commands.append(_elements("fwd_in", [[net.bridge, {"drop": None}]]))
    if net.subnets4:
        commands.append(_elements("subnets4", [_prefix(s) for s in net.subnets4]))
    if net.masquerade and net.subnets4:
        commands.append(_elements("masq4", [_prefix(s) for s in net.subnets4]))
    if net.masquerade and net.subnets6:
        commands.append(_elements("masq6", [_prefix(s) for s in net.subnets6]))
    return commands


def remove_network(net: NetworkRules) -> list[Command]:
    """Deleting what add_network made; run with the errors of missing objects tolerated by the caller."""
    commands: list[Command] = []
    if net.masquerade and net.subnets6:
        commands.append(_elements("masq6", [_prefix(s) for s in net.subnets6], "delete"))
    if net.masquerade and net.subnets4:
        commands.append(_elements("masq4", [_prefix(s) for s in net.subnets4], "delete"))
    if net.subnets4:
        commands.append(_elements("subnets4", [_prefix(s) for s in net.subnets4], "delete"))
    if net.internal:
        commands.append(_elements("fwd_in", [net.bridge], "delete"))
    commands.append(_elements("fwd_out", [net.bridge], "delete"))
    commands.append(_elements("bridges", [net.bridge], "delete"))
    commands.append({"delete": _ref("chain", net.chain)})
    return commands


def add_ports(ports: list[PortRule]) -> list[Command]:
    return _port_commands(ports, "add")


def remove_ports(ports: list[PortRule]) -> list[Command]:
    return _port_commands(ports, "delete")


def _port_commands(ports: list[PortRule], verb: str) -> list[Command]:
    by_map: dict[str, list[Any]] = {}
    for port in ports:
        elem = [port.key(), port.value()] if verb == "add" else port.key()
        by_map.setdefault(port.map_name, []).append(elem)
    return [_elements(name, elems, verb) for name, elems in sorted(by_map.items())]


def full(networks: list[NetworkRules], ports: list[PortRule]) -> list[Command]:
    """The whole desired ruleset, replacing whatever the table holds, in one transaction."""
    commands: list[Command] = [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
    ]
    commands += skeleton()
    for net in networks:
        commands += add_network(net)
    if ports:
        commands += add_ports(ports)
    return commands


def delete_table() -> list[Command]:
    return [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
    ]
