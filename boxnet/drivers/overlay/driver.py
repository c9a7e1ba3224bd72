"""An overlay network on one node: a bridge `ov-<id>` with no address (the host does not route the overlay;
as in Docker's overlay namespace) and a VXLAN device `vx-<id>` on it, between the node's underlay address and
the other nodes'. Containers join the bridge by a veth, as on a bridge network, and go out through the node's
gateway bridge (their other interface); the remote endpoints are programmed on the VXLAN device from the
cluster store (cluster/overlay_sync.py), not learnt by flooding.

The network itself is a swarm object (cluster/networks.py); the node's record of it carries what is this
node's (`driver_data`: the VNI, the device names, the local VTEP address and the MTU it chose).
"""

from __future__ import annotations

import secrets
import time

from boxnet.drivers.api import Capabilities, NetworkDriver
from boxnet.errors import BoxnetError, Conflict, InvalidArgument
from boxnet.firewall import bridge_rules
from boxnet.kernel import links, netns, vxlan, wireguard
from boxnet.model.container import Endpoint
from boxnet.model.macs import mac_for
from boxnet.model.network import OPT_MTU, Network, NetworkRequest, check_mtu

OPT_ENCRYPTED = "encrypted"
OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"
VXLAN_OVERHEAD = 50
# driver_data keys: written on each node as it realizes the network. INGRESS_ADDRESS: on the ingress network,
# the node's own address there (on its bridge), leased in the cluster store.
VNI, VXLAN, LOCAL, MTU, INGRESS_ADDRESS = "vni", "vxlan", "local", "mtu", "ingress_address"
# On an encrypted network: the node's WireGuard interface, the only way its VNI may leave or arrive.
WIREGUARD = "wireguard"
# In a task's namespace, the routing table its ingress address answers from (see join).
INGRESS_TABLE = 200


def encrypted(network: Network) -> bool:
    return OPT_ENCRYPTED in network.options


def device_names(network_id: str) -> tuple[str, str]:
    return f"ov-{network_id[:12]}", f"vx-{network_id[:12]}"


class OverlayDriver(NetworkDriver):
    name = "overlay"
    # Ports are published through the node's gateway bridge, where the container's way out is.
    capabilities = Capabilities(scope="global", subnet_on_host=False, egress_via_gateway=True)
    options = (OPT_MTU, OPT_ENCRYPTED)

    def validate(self, request: NetworkRequest) -> None:
        for key, value in request.options.items():
            if key == OPT_ENCRYPTED:
                if value not in ("", "true"):  # Docker encrypts on the key alone, whatever its value says
                    raise InvalidArgument(f"option {OPT_ENCRYPTED}={value!r}: give it with no value (--opt "
                                          "encrypted) or true; boxnet does not guess what else was meant")  # fmt: skip
                continue
            if key == OPT_VNI:
                raise InvalidArgument(f"option {OPT_VNI}: boxnet chooses the VXLAN id itself")
            if key not in self.options:
                known = ", ".join(self.options)
                raise InvalidArgument(f"unknown option {key!r} for the overlay driver; known: {known}")
            check_mtu(value, request.enable_ipv6)
        if request.enable_ipv6:
            raise InvalidArgument("IPv6 on overlay networks is not supported yet")

    def prepare(self, network: Network, others: list[Network]) -> None:
        """On each node that realizes the network: its device names, free on this host."""
        bridge, device = device_names(network.id)
        for name in (bridge, device):
            if links.link_exists(name):
                raise Conflict(f"an interface named {name} already exists and does not belong to boxnet")
        network.bridge = bridge
        network.driver_data[VXLAN] = device

    def mtu(self, network: Network) -> int:
        return int(network.options.get(OPT_MTU) or network.driver_data.get(MTU) or 1450)

    def create(self, network: Network) -> None:
        """On the ingress network the bridge has the node's address there (and a MAC made of it, as Docker
        makes containers'): the routing mesh sends from it to tasks on other nodes, and tasks answer it."""
        assert network.bridge
        own = network.driver_data.get(INGRESS_ADDRESS, "")
        address = [links.Address(own.split("/")[0], int(own.split("/")[1]))] if own else []
        links.ensure_bridge(network.bridge, address, self.mtu(network), mac_for(own) if own else None,
                            group_fwd_mask=bridge_rules.GROUP_FWD_MASK)  # fmt: skip
        vxlan.ensure_vxlan(network.driver_data[VXLAN], int(network.driver_data[VNI]), network.driver_data[LOCAL],
                           network.bridge, self.mtu(network))  # fmt: skip

    def missing(self, network: Network) -> list[str]:
        return [f"{kind} {name}" for kind, name in self.devices(network).items() if not links.link_exists(name)]

    def delete(self, network: Network) -> None:
        for name in (network.driver_data.get(VXLAN), network.bridge):
            if name:
                links.delete_link(name)

    def host_link_name(self) -> str:
        return "veth" + secrets.token_hex(4)[:7]

    def join(self, network: Network, endpoint: Endpoint, netns_path: str, default_route: bool) -> None:
        """No default route here: the container's way out is its gateway bridge interface. On the ingress
        network, what the task sends from its ingress address goes back out there, to this node's address:
        a client's connection the mesh handed to a local task unmasqueraded is answered the way it came (its
        gateway bridge port would drop a source that is not the task's address there)."""
        assert network.bridge
        links.create_veth(endpoint.host_veth, endpoint.ifname, netns_path, network.bridge, self.mtu(network),
                          endpoint.mac)  # fmt: skip
        netns.run_in(netns_path, links.configure_container_interface, endpoint.ifname, endpoint.addresses, [], False)
        own = network.driver_data.get(INGRESS_ADDRESS, "")
        if network.ingress and own and endpoint.ipv4:
            netns.run_in(netns_path, links.route_from_address, endpoint.ifname, endpoint.ipv4, own.split("/")[0],
                         INGRESS_TABLE)  # fmt: skip

    def leave(self, network: Network, endpoint: Endpoint, netns_path: str) -> None:
        links.delete_link(endpoint.host_veth)

    def endpoint_present(self, network: Network, endpoint: Endpoint, netns_path: str) -> bool:
        assert network.bridge
        return links.ensure_master(endpoint.host_veth, network.bridge)

    def sealed(self, network: Network) -> tuple[int, str] | None:
        """An encrypted network: its VNI only through the node's WireGuard interface."""
        if encrypted(network) and network.driver_data.get(VNI) and network.driver_data.get(WIREGUARD):
            return int(network.driver_data[VNI]), network.driver_data[WIREGUARD]
        return None

    def port_guard(self, network: Network, endpoint: Endpoint) -> bridge_rules.PortGuard:
        return bridge_rules.PortGuard(endpoint.host_veth, endpoint.mac, endpoint.address(4), endpoint.address(6))

    def devices(self, network: Network) -> dict[str, str]:
        return {"bridge": network.bridge or "", "vxlan": network.driver_data.get(VXLAN, "")}

    def inspect_options(self, network: Network) -> dict[str, str]:
        return {OPT_VNI: network.driver_data.get(VNI, "")}

    def tunnel_step(self, network: Network, address: str) -> str | None:
        """The VXLAN entry for the address: its MAC and VTEP, and whether the VTEP is reached through
        WireGuard (with that peer's last handshake) or in clear on the underlay."""
        device, vni = network.driver_data.get(VXLAN, ""), network.driver_data.get(VNI, "")
        entry = next((p for p in vxlan.peers(device) if p.ip == address), None)
        if entry is None:
            return f"VXLAN {device} (VNI {vni}): no entry for {address} (not on another node, or not programmed)"
        line = (f"VXLAN {device} (VNI {vni}): {address} is {entry.mac} behind VTEP {entry.vtep}, UDP "
                f"{vxlan.VXLAN_PORT} from {network.driver_data.get(LOCAL, '?')}")  # fmt: skip
        interface = network.driver_data.get(WIREGUARD, "")
        if not interface:
            return line + ", in clear on the underlay"
        try:
            peer = next((p for p in wireguard.peer_states(interface) if p.allowed == f"{entry.vtep}/32"), None)
        except BoxnetError as exc:
            return line + f", sealed to WireGuard {interface} (its peers unreadable: {exc.message})"
        if peer is None:
            return line + f", sealed to WireGuard {interface}, which has no peer for {entry.vtep}: dropped"
        shaken = f"last handshake {time.time() - peer.latest_handshake:.0f}s ago" if peer.latest_handshake \
            else "no handshake yet"  # fmt: skip
        return line + f", encrypted by WireGuard {interface} to {peer.endpoint} ({shaken})"

    def describe_endpoint(self, network: Network, endpoint: Endpoint) -> str:
        return (f"veth: {endpoint.ifname} <-> {endpoint.host_veth} on the host, port of bridge {network.bridge}, "
                f"VXLAN {network.driver_data.get(VXLAN)} (VNI {network.driver_data.get(VNI)}) to the other nodes")
