"""A macvlan network: `-o parent=IFACE` (or `IFACE.VLAN`, an 802.1q sub-interface made if missing) and a
macvlan device per endpoint, born in the container's namespace as ethN.

As Docker's: containers are on the parent's LAN, with the subnet and gateway of that LAN; the host reaches
them through its own macvlan device only (the kernel keeps parent and macvlan apart), so no NAT and no
published ports; one network per parent. Docker makes a dummy parent when none is given; this kernel may
lack dummy devices, so boxnet asks for the parent instead.
"""

from __future__ import annotations

import os

from boxnet.drivers.api import Capabilities, NetworkDriver
from boxnet.errors import Conflict, InvalidArgument
from boxnet.kernel import links, netns
from boxnet.model.container import Endpoint
from boxnet.model.names import check_ifname
from boxnet.model.network import Network, NetworkRequest

OPT_PARENT = "parent"
OPT_MODE = "macvlan_mode"
MODES = ("bridge", "private", "vepa", "passthru")
# driver_data key: the 802.1q sub-interface this network made, and deletes with it.
VLAN_LINK = "vlan_link"


def split_vlan(parent: str) -> tuple[str, int] | None:
    """("eth0", 10) for "eth0.10"; None for a plain interface name."""
    base, dot, tag = parent.rpartition(".")
    if not dot or not tag.isdigit():
        return None
    vlan_id = int(tag)
    if not base or not 1 <= vlan_id <= 4094:
        raise InvalidArgument(f"option parent={parent}: VLAN id {tag} is not from 1 to 4094")
    return base, vlan_id


class MacvlanDriver(NetworkDriver):
    name = "macvlan"
    capabilities = Capabilities(publishes_ports=False, subnet_on_host=False)
    options = (OPT_PARENT, OPT_MODE)

    def validate(self, request: NetworkRequest) -> None:
        for key in request.options:
            if key not in self.options:
                known = ", ".join(self.options)
                raise InvalidArgument(f"unknown option {key!r} for the macvlan driver; known: {known}")
        parent = request.options.get(OPT_PARENT, "")
        if not parent:
            raise InvalidArgument("the macvlan driver needs -o parent=IFACE (or IFACE.VLAN for an 802.1q "
                                  "sub-interface); boxnet makes no dummy parent")  # fmt: skip
        check_ifname(parent, "option parent")
        split_vlan(parent)
        mode = request.options.get(OPT_MODE, "bridge")
        if mode not in MODES:
            raise InvalidArgument(f"option {OPT_MODE}={mode}: not one of {', '.join(MODES)}")

    def prepare(self, network: Network, others: list[Network]) -> None:
        parent = network.options[OPT_PARENT]
        for other in others:
            if other.driver == self.name and other.options.get(OPT_PARENT) == parent:
                raise Conflict(f"network {other.name} is already using parent interface {parent}")
            if parent in {other.bridge, other.driver_data.get(VLAN_LINK)}:
                raise Conflict(f"{parent} is a device of network {other.name}, not a parent for macvlan")
        if parent == "lo":
            raise InvalidArgument("the loopback interface cannot be a macvlan parent")
        if links.link_exists(parent):
            return
        vlan = split_vlan(parent)
        if vlan is None:
            raise InvalidArgument(f"parent interface {parent} does not exist")
        if not links.link_exists(vlan[0]):
            raise InvalidArgument(f"parent interface {vlan[0]} (of {parent}) does not exist")
        network.driver_data[VLAN_LINK] = parent

    def create(self, network: Network) -> None:
        made = network.driver_data.get(VLAN_LINK)
        if made:
            vlan = split_vlan(made)
            assert vlan is not None
            links.ensure_vlan(made, *vlan)

    def missing(self, network: Network) -> list[str]:
        parent = network.options[OPT_PARENT]
        return [] if links.link_exists(parent) else [f"parent {parent}"]

    def delete(self, network: Network) -> None:
        made = network.driver_data.get(VLAN_LINK)
        if made:
            links.delete_link(made)

    def join(self, network: Network, endpoint: Endpoint, netns_path: str, default_route: bool) -> None:
        links.create_macvlan(endpoint.ifname, network.options[OPT_PARENT], netns_path,
                             network.options.get(OPT_MODE, "bridge"), endpoint.mac)  # fmt: skip
        netns.run_in(netns_path, links.configure_container_interface, endpoint.ifname, endpoint.addresses,
                     endpoint.gateways, default_route and not network.internal)  # fmt: skip

    def leave(self, network: Network, endpoint: Endpoint, netns_path: str) -> None:
        if netns_path and os.path.exists(netns_path):
            netns.run_in(netns_path, links.delete_link, endpoint.ifname)

    def endpoint_present(self, network: Network, endpoint: Endpoint, netns_path: str) -> bool:
        return bool(netns_path) and netns.run_in(netns_path, links.link_exists, endpoint.ifname)

    def devices(self, network: Network) -> dict[str, str]:
        return {"parent": network.options[OPT_PARENT]}

    def describe_endpoint(self, network: Network, endpoint: Endpoint) -> str:
        return (f"macvlan: {endpoint.ifname} on parent {network.options[OPT_PARENT]} "
                f"(mode {network.options.get(OPT_MODE, 'bridge')}): its frames go out by the parent, past the "
                "host's stack")  # fmt: skip
