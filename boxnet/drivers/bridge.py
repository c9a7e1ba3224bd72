"""The bridge driver: a Linux bridge per network, a veth pair per endpoint, nftables for NAT and isolation."""

from __future__ import annotations

import ipaddress
import secrets

from boxnet.firewall import bridge_rules
from boxnet.kernel import links, netns, sysctl
from boxnet.model.container import Endpoint
from boxnet.model.network import Network


def bridge_addresses(network: Network) -> list[links.Address]:
    return [links.Address(s.gateway, s.prefixlen) for s in network.subnets]


def new_veth_name() -> str:
    return "veth" + secrets.token_hex(4)[:7]


def mac_for(ipv4_cidr: str) -> str:
    """Docker's scheme: 02:42 followed by the four bytes of the IPv4 address."""
    packed = ipaddress.ip_interface(ipv4_cidr).ip.packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def random_mac() -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


class BridgeDriver:
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

    def delete(self, network: Network) -> None:
        assert network.bridge
        links.delete_link(network.bridge)

    def join(self, network: Network, endpoint: Endpoint, netns_path: str, default_route: bool) -> None:
        assert network.bridge
        links.create_veth(endpoint.host_veth, endpoint.ifname, netns_path, network.bridge, network.mtu, endpoint.mac)
        addresses = [a for a in (endpoint.ipv4, endpoint.ipv6) if a]
        gateways = [g for g in (endpoint.gateway4, endpoint.gateway6) if g]
        netns.run_in(
            netns_path, links.configure_container_interface,
            endpoint.ifname, addresses, gateways, default_route and not network.internal,
        )  # fmt: skip

    def leave(self, endpoint: Endpoint) -> None:
        """Deleting the host end removes the pair; a missing one is already gone."""
        links.delete_link(endpoint.host_veth)
