"""Keeps boxnet's nftables table in step with the registry: incremental changes, or a full rebuild."""

from __future__ import annotations

import ipaddress
import logging

from boxnet.drivers import registry as drivers
from boxnet.engine.connect_redirect import ConnectRedirect
from boxnet.engine.registry import Registry
from boxnet.firewall import bridge_rules, ruleset
from boxnet.kernel import nfnl, nft
from boxnet.model.container import Container, Endpoint
from boxnet.model.network import Network

log = logging.getLogger(__name__)


def network_rules(network: Network) -> ruleset.NetworkRules | None:
    return drivers.of(network).firewall_rules(network)


def port_rules(container: Container, endpoint: Endpoint) -> list[ruleset.PortRule]:
    """The DNAT entries for a container's published ports, towards its addresses on one network: a port
    published on every address goes to both IPv4 and (on an IPv6 network) IPv6, as Docker does."""
    rules = []
    for cidr in (endpoint.ipv4, endpoint.ipv6):
        if not cidr:
            continue
        address = ipaddress.ip_interface(cidr).ip
        rules += [
            ruleset.PortRule(p.protocol, p.host_port, str(address), p.container_port, p.host_ip, container.id)
            for p in container.published_ports
            if not p.host_ip or ipaddress.ip_address(p.host_ip).version == address.version
        ]
    return rules


def desired_port_rules(registry: Registry) -> list[ruleset.PortRule]:
    """Every published port of every running container, as the ledger records it."""
    rules: list[ruleset.PortRule] = []
    for container in registry.containers.values():
        endpoint = container.endpoints.get(container.port_network)
        if container.state.status == "running" and endpoint:
            rules += port_rules(container, endpoint)
    return rules


def present_objects() -> ruleset.Present:
    """The chains, sets and maps `inet boxnet` holds now."""
    found: dict[str, set[str]] = {"chain": set(), "set": set(), "map": set()}
    for item in nft.list_objects(f"table {ruleset.T}"):
        for kind, names in found.items():
            if kind in item:
                names.add(item[kind]["name"])
    return ruleset.Present(frozenset(found["chain"]), frozenset(found["set"]), frozenset(found["map"]))


def _by_map(ports: list[ruleset.PortRule]) -> dict[str, list[ruleset.PortRule]]:
    grouped: dict[str, list[ruleset.PortRule]] = {}
    for port in ports:
        grouped.setdefault(port.map_name, []).append(port)
    return grouped


def desired_port_guards(registry: Registry) -> list[bridge_rules.PortGuard]:
    """The ports of every container that has endpoints (running, or starting)."""
    return [
        guard
        for container in registry.containers.values()
        for endpoint in container.endpoints.values()
        if (network := registry.networks.get(endpoint.network_id)) is not None
        and (guard := drivers.of(network).port_guard(network, endpoint)) is not None
    ]


def address_of(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


class Firewall:
    def __init__(self) -> None:
        # Host-local connections to published ports, redirected at connect(); started by the engine.
        self.connect_redirect = ConnectRedirect()
        # In a swarm: the nodes' underlay addresses, the only sources of VXLAN (None: not in a swarm).
        self.vteps: set[str] | None = None
        # Encrypted networks' VNIs, and the WireGuard interface each may use (rules only in a swarm).
        self.sealed: dict[int, str] = {}

    def rebuild(self, registry: Registry, without: Network | None = None) -> None:
        """Replaces both tables with what the ledger says, in one transaction (optionally less one network);
        the administrator's chain stays as it is."""
        rules = [r for n in registry.networks.values() if (without is None or n.id != without.id)
                 and (r := network_rules(n)) is not None]  # fmt: skip
        ports = desired_port_rules(registry)
        vteps = sorted(self.vteps) if self.vteps is not None else None
        # From the ledger: a daemon that starts again seals its encrypted networks before anything else.
        self.sealed = dict(s for n in registry.networks.values() if (s := drivers.of(n).sealed(n)) is not None)
        nft.run(ruleset.full(rules, ports, desired_port_guards(registry), present_objects(), vteps, self.sealed))
        self.connect_redirect.sync(ports)
        self.follow_user_chain()

    def follow_user_chain(self) -> None:
        """The host's own connections to published ports skip NAT (the connect redirect), and would skip the
        administrator's rules with it: while the user chain holds any rule, they go through NAT and the
        chain like everybody's."""
        rules = sum("rule" in item for item in nft.list_objects(f"chain {ruleset.T} {ruleset.USER_CHAIN}"))
        self.connect_redirect.hold(f"the {ruleset.USER_CHAIN} chain has {rules} rule(s)" if rules else "")

    def set_swarm(self, vteps: set[str] | None) -> None:
        """The swarm's VXLAN rules with these node addresses, or (None) none at all; one transaction."""
        if vteps is None:
            if self.vteps is not None:
                nft.run(ruleset.unswarm() + (ruleset.sealed_only(self.sealed) if self.sealed else []))
        elif self.vteps is None:
            nft.run(ruleset.swarm(sorted(vteps), self.sealed))
        elif vteps != self.vteps:
            nft.run(ruleset.set_vteps(sorted(vteps)))
        self.vteps = set(vteps) if vteps is not None else None

    def seal(self, vni: int, interface: str) -> None:
        """An encrypted network's VXLAN only through WireGuard, from now on (before its device exists)."""
        if self.sealed.get(vni) != interface:
            sealed = {**self.sealed, vni: interface}
            nft.run(ruleset.sealed_only(sealed))
            self.sealed = sealed

    def unseal(self, vni: int) -> None:
        """After the network's VXLAN device is gone."""
        if vni in self.sealed:
            sealed = {k: v for k, v in self.sealed.items() if k != vni}
            nft.run(ruleset.sealed_only(sealed))
            self.sealed = sealed

    def guard_port(self, guard: bridge_rules.PortGuard) -> None:
        """Pins a container port to its identity before the port exists (the sets match by name)."""
        nfnl.change_sets("add", bridge_rules.TABLE, guard.register_elements(), nfnl.NFPROTO_BRIDGE)

    def unguard_port(self, guard: bridge_rules.PortGuard) -> None:
        nfnl.delete_present(bridge_rules.TABLE, guard.register_elements(), nfnl.NFPROTO_BRIDGE)

    def add_network(self, network: Network) -> None:
        rules = network_rules(network)
        if rules is not None:
            nft.run(ruleset.add_network(rules))

    def remove_network(self, network: Network) -> None:
        rules = network_rules(network)
        if rules is not None:
            nft.run(ruleset.remove_network(rules))

    def add_ports(self, ports: list[ruleset.PortRule]) -> None:
        """Straight over nfnetlink: O(1) however many ports are published (see kernel/nfnl.py)."""
        for map_name, group in _by_map(ports).items():
            nfnl.change_elements("add", ruleset.TABLE, map_name,
                                 [(p.key_registers(), p.value_registers()) for p in group])  # fmt: skip
        self.connect_redirect.add(ports)

    def remove_ports(self, ports: list[ruleset.PortRule]) -> None:
        """One transaction for every map, as add_ports (idempotent)."""
        self.connect_redirect.remove(ports)
        nfnl.delete_present(ruleset.TABLE, [(map_name, [(p.key_registers(), None) for p in group])
                                            for map_name, group in _by_map(ports).items()])  # fmt: skip
