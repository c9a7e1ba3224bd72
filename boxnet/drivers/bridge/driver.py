"""A bridge network in kernel objects: the bridge with the gateways' addresses, a veth pair per endpoint
(host end on the bridge in hairpin mode), the network's chain in `inet boxnet` and each port's guard."""

from __future__ import annotations

import secrets

from boxnet.drivers.api import Capabilities, NetworkDriver
from boxnet.errors import Conflict, InvalidArgument
from boxnet.firewall import bridge_rules, ruleset
from boxnet.kernel import links, netns, sysctl
from boxnet.model.container import Endpoint
from boxnet.model.names import check_ifname
from boxnet.model.network import (
    OPT_BRIDGE_NAME,
    OPT_DEFAULT_BRIDGE,
    OPT_ENABLE_ICC,
    OPT_MASQUERADE,
    OPT_MTU,
    Network,
    NetworkRequest,
    check_mtu,
    parse_bool,
)

OPTIONS = (OPT_BRIDGE_NAME, OPT_ENABLE_ICC, OPT_MASQUERADE, OPT_MTU, OPT_DEFAULT_BRIDGE)


def bridge_addresses(network: Network) -> list[links.Address]:
    return [links.Address(s.gateway, s.prefixlen) for s in network.subnets]


class BridgeDriver(NetworkDriver):
    name = "bridge"
    capabilities = Capabilities()
    options = OPTIONS

    def validate(self, request: NetworkRequest) -> None:
        for key, value in request.options.items():
            if key not in OPTIONS:
                raise InvalidArgument(f"unknown option {key!r} for the bridge driver; known: {', '.join(OPTIONS[:4])}")
            if key in (OPT_ENABLE_ICC, OPT_MASQUERADE, OPT_DEFAULT_BRIDGE):
                parse_bool(key, value)
            elif key == OPT_BRIDGE_NAME:
                check_ifname(value, "bridge name")
            elif key == OPT_MTU:
                check_mtu(value, request.enable_ipv6)

    def prepare(self, network: Network, others: list[Network]) -> None:
        bridge = network.options.get(OPT_BRIDGE_NAME) or f"br-{network.id[:12]}"
        if bridge in {n.bridge for n in others}:
            raise Conflict(f"bridge name {bridge} is already used by another network")
        if links.link_exists(bridge):
            raise Conflict(f"an interface named {bridge} already exists and does not belong to boxnet")
        network.bridge = bridge

    def create(self, network: Network) -> None:
        """Creates (or completes) the bridge; idempotent, so reconcile can call it to repair."""
        assert network.bridge
        links.ensure_bridge(network.bridge, bridge_addresses(network), network.mtu,
                            group_fwd_mask=bridge_rules.GROUP_FWD_MASK)  # fmt: skip
        # Lets the host's own 127.0.0.1 reach a published port through this bridge, and no other interface.
        sysctl.write(sysctl.interface_key("ipv4", network.bridge, "route_localnet"), "1")
        sysctl.ensure("net.ipv4.ip_forward", "1")
        if network.enable_ipv6:
            sysctl.ensure("net.ipv6.conf.all.forwarding", "1")

    def missing(self, network: Network) -> list[str]:
        return [] if network.bridge and links.link_exists(network.bridge) else [f"bridge {network.bridge}"]

    def delete(self, network: Network) -> None:
        if network.bridge:
            links.delete_link(network.bridge)

    def host_link_name(self) -> str:
        return "veth" + secrets.token_hex(4)[:7]

    def join(self, network: Network, endpoint: Endpoint, netns_path: str, default_route: bool) -> None:
        assert network.bridge
        links.create_veth(endpoint.host_veth, endpoint.ifname, netns_path, network.bridge, network.mtu, endpoint.mac)
        netns.run_in(netns_path, links.configure_container_interface, endpoint.ifname, endpoint.addresses,
                     endpoint.gateways, default_route and not network.internal)  # fmt: skip

    def leave(self, network: Network, endpoint: Endpoint, netns_path: str) -> None:
        """Deleting the host end removes the pair; a missing one is already gone."""
        links.delete_link(endpoint.host_veth)

    def endpoint_present(self, network: Network, endpoint: Endpoint, netns_path: str) -> bool:
        assert network.bridge
        return links.ensure_master(endpoint.host_veth, network.bridge)

    def firewall_rules(self, network: Network) -> ruleset.NetworkRules:
        assert network.bridge
        return ruleset.NetworkRules(
            network_id=network.id, bridge=network.bridge,
            subnets4=tuple(s.subnet for s in network.ipv4_subnets),
            subnets6=tuple(s.subnet for s in network.ipv6_subnets),
            internal=network.internal, icc=network.icc, masquerade=network.masquerade,
        )  # fmt: skip

    def port_guard(self, network: Network, endpoint: Endpoint) -> bridge_rules.PortGuard:
        return bridge_rules.PortGuard(endpoint.host_veth, endpoint.mac, endpoint.address(4), endpoint.address(6),
                                      icc_off=not network.icc)  # fmt: skip

    def devices(self, network: Network) -> dict[str, str]:
        return {"bridge": network.bridge or ""}

    def describe_endpoint(self, network: Network, endpoint: Endpoint) -> str:
        return f"veth: {endpoint.ifname} <-> {endpoint.host_veth} on the host, port of bridge {network.bridge}"
