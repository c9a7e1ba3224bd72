"""The contract between the engine and a network driver, after libnetwork's driverapi and netavark's
NetworkDriver: validate, prepare, create/delete a network, join/leave an endpoint, restore; and what the driver
can do, as capabilities the engine reads instead of asking which driver it is.

A driver describes and makes kernel objects through `boxnet.kernel`; it keeps no state of its own. Whatever it
must find again (a device it made) it writes into `Network.driver_data` in `prepare`, which the engine records
before `create` runs, so that a crash at any point leaves a ledger naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from boxnet.firewall.bridge_rules import PortGuard
    from boxnet.firewall.ruleset import NetworkRules
    from boxnet.model.container import Endpoint
    from boxnet.model.network import Network, NetworkRequest


@dataclass(frozen=True)
class Capabilities:
    # "local": the network exists on one host; "global": on every node of a cluster.
    scope: Literal["local", "global"] = "local"
    # Containers get an endpoint (an interface with addresses) on it; host and null are modes instead.
    endpoints: bool = True
    # Users may create networks of this driver (host and null exist once, predefined).
    user_created: bool = True
    # `-p` works: the host NATs its ports to the endpoint's address.
    publishes_ports: bool = True
    # The subnet is routed on the host itself, so it must not overlap a route the host already has.
    subnet_on_host: bool = True
    # A user-defined network of this driver gives its containers the embedded DNS at 127.0.0.11.
    embedded_dns: bool = True
    # Containers go out (and are published) through the node's gateway bridge, not through this network.
    egress_via_gateway: bool = False


class NetworkDriver:
    """Defaults do nothing, which is what host and null need; a driver overrides what applies to it."""

    name: str = ""
    capabilities = Capabilities()
    # The options `network create -o` accepts; anything else is refused by name.
    options: tuple[str, ...] = ()

    def validate(self, request: NetworkRequest) -> None:
        """Pure checks of a create request (options, their values); raises InvalidArgument."""

    def prepare(self, network: Network, others: list[Network]) -> None:
        """Chooses the network's devices and checks them against the kernel and the other networks, without
        changing anything; raises Conflict or InvalidArgument. Runs before the network is recorded."""

    def create(self, network: Network) -> None:
        """Makes (or completes) the network's kernel objects. Idempotent: restore and repair call it too."""

    def missing(self, network: Network) -> list[str]:
        """The network's devices that are not in the kernel (for the repair report)."""
        return []

    def delete(self, network: Network) -> None:
        """Removes what create made; idempotent, tolerates half-made networks."""

    def host_link_name(self) -> str:
        """A name for the endpoint's host-side device, chosen before it exists ("" if it has none)."""
        return ""

    def join(self, network: Network, endpoint: Endpoint, netns_path: str, default_route: bool) -> None:
        """Makes the endpoint's interface inside the namespace, with its addresses and (if asked) routes."""
        raise NotImplementedError(f"the {self.name} driver has no endpoints")

    def leave(self, network: Network, endpoint: Endpoint, netns_path: str) -> None:
        """Removes the endpoint's devices; idempotent (a namespace already gone took them with it)."""

    def endpoint_present(self, network: Network, endpoint: Endpoint, netns_path: str) -> bool:
        """Whether the endpoint's devices are all there (and attached where they belong); may re-attach."""
        return True

    def firewall_rules(self, network: Network) -> NetworkRules | None:
        """The network's NAT and isolation rules in `inet boxnet`, or None if it has none."""
        return None

    def sealed(self, network: Network) -> tuple[int, str] | None:
        """(VNI, interface) when the network's tunnel may only use that interface (encryption), else None."""
        return None

    def port_guard(self, network: Network, endpoint: Endpoint) -> PortGuard | None:
        """What the endpoint's host-side port is held to (anti-spoofing), or None."""
        return None

    def devices(self, network: Network) -> dict[str, str]:
        """The network's host devices by role ({"bridge": "br-..."}, {"parent": "eth0.10"}) for the tools."""
        return {}

    def inspect_options(self, network: Network) -> dict[str, str]:
        """Options Docker shows in `network inspect` that the driver chose (a VXLAN id), beside the user's."""
        return {}

    def tunnel_step(self, network: Network, address: str) -> str | None:
        """For trace: how a frame to this address on the network leaves the node, if through a tunnel."""
        return None

    def describe_endpoint(self, network: Network, endpoint: Endpoint) -> str:
        """One line saying how the endpoint's frames reach the network, for trace."""
        return f"{endpoint.ifname} on network {network.name} ({self.name})"
