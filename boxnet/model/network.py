"""Networks and their endpoints, as desired state."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from boxnet.errors import InvalidArgument
from boxnet.model.names import check_object_name, parse_key_values

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Networks that exist on every daemon and cannot be removed.
PREDEFINED = ("bridge", "host", "none")
# Each node's way out for containers on swarm networks (Docker's name, and its bridge's).
GATEWAY_BRIDGE = "docker_gwbridge"

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ENABLE_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"


@dataclass
class SubnetConfig:
    subnet: str
    gateway: str
    ip_range: str | None = None
    # Addresses IPAM never hands out (Docker's --aux-address NAME=IP): a router, a printer, a VIP.
    auxiliary: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.subnet)

    @property
    def gateway_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.gateway)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str
    subnets: list[SubnetConfig] = field(default_factory=list)
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # The bridge device: Docker's names, boxnet0 for the default network, br-<12 hex> otherwise.
    bridge: str | None = None
    # What the driver must find again (a device it made), recorded before it makes it (drivers/api.py).
    driver_data: dict[str, str] = field(default_factory=dict)
    # Set before a removal starts, so that a daemon killed half-way finishes it (engine/reconcile.py).
    removing: bool = False
    # The swarm's routing mesh network (at most one): tasks of services that publish ports join it, and each
    # node has an address on it (services/mesh.py).
    ingress: bool = False

    @property
    def icc(self) -> bool:
        return parse_bool(OPT_ENABLE_ICC, self.options.get(OPT_ENABLE_ICC, "true"))

    @property
    def masquerade(self) -> bool:
        return not self.internal and parse_bool(OPT_MASQUERADE, self.options.get(OPT_MASQUERADE, "true"))

    @property
    def mtu(self) -> int | None:
        raw = self.options.get(OPT_MTU)
        return int(raw) if raw else None

    @property
    def is_default_bridge(self) -> bool:
        return self.options.get(OPT_DEFAULT_BRIDGE) == "true"

    @property
    def serves_names(self) -> bool:
        """Whether the embedded DNS answers names on it: not on the default bridge, the gateway bridge nor the
        ingress network (only the routing mesh addresses tasks there)."""
        return not self.is_default_bridge and self.name != GATEWAY_BRIDGE and not self.ingress

    @property
    def ipv4_subnets(self) -> list[SubnetConfig]:
        return [s for s in self.subnets if s.network.version == 4]

    @property
    def ipv6_subnets(self) -> list[SubnetConfig]:
        return [s for s in self.subnets if s.network.version == 6]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Network:
        data = dict(data)
        data["subnets"] = [SubnetConfig(**s) for s in data.get("subnets", [])]
        return cls(**data)


@dataclass
class NetworkRequest:
    """What a user asked for in `network create`, before IPAM filled the gaps."""

    name: str
    driver: str = "bridge"
    subnets: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    ip_ranges: list[str] = field(default_factory=list)
    auxiliary_addresses: list[dict[str, str]] = field(default_factory=list)  # per subnet: name -> address
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ingress: bool = False

    def validate(self) -> None:
        check_object_name("network", self.name)
        if self.name in PREDEFINED:
            raise InvalidArgument(f"network name {self.name!r} is reserved for a predefined network")
        self.labels = parse_key_values("label", self.labels)
        self.options = parse_key_values("option", self.options)
        if self.ingress and self.attachable:
            raise InvalidArgument("an ingress network cannot be attachable: only the routing mesh puts tasks on it")
        if len(self.gateways) > len(self.subnets):
            raise InvalidArgument("--gateway given without a matching --subnet")
        if len(self.ip_ranges) > len(self.subnets):
            raise InvalidArgument("--ip-range given without a matching --subnet")
        if len(self.auxiliary_addresses) > len(self.subnets):
            raise InvalidArgument("--aux-address given without a matching --subnet")
        seen: list[IPNetwork] = []
        for index, raw in enumerate(self.subnets):
            subnet = parse_subnet(raw)
            if subnet.version == 6 and not self.enable_ipv6:
                raise InvalidArgument(f"IPv6 subnet {raw} given without --ipv6")
            for other in seen:
                if subnet.version == other.version and subnet.overlaps(other):
                    raise InvalidArgument(f"subnets {other} and {subnet} overlap")
            seen.append(subnet)
            if index < len(self.gateways) and self.gateways[index]:
                check_gateway(subnet, self.gateways[index])
            if index < len(self.ip_ranges) and self.ip_ranges[index]:
                check_ip_range(subnet, self.ip_ranges[index])
            if index < len(self.auxiliary_addresses):
                check_auxiliary(subnet, self.auxiliary_addresses[index], self.gateways[index]
                                if index < len(self.gateways) else "")  # fmt: skip


def parse_bool(key: str, raw: str) -> bool:
    lowered = str(raw).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidArgument(f"option {key}: {raw!r} is not a boolean")


def check_mtu(value: str, ipv6: bool) -> None:
    if not value.isdigit() or not 68 <= int(value) <= 65535:
        raise InvalidArgument(f"option {OPT_MTU}: MTU {value!r} is not a number from 68 to 65535")
    if ipv6 and int(value) < IPV6_MIN_MTU:
        raise InvalidArgument(f"option {OPT_MTU}: MTU {value} is too small for IPv6, which needs at least "
                              f"{IPV6_MIN_MTU}")  # fmt: skip


IPV6_MIN_MTU = 1280
# Ranges a container network must not take: loopback, "this network", link-local, multicast, reserved,
# and for IPv6 the unspecified and loopback addresses, link-local, multicast and IPv4-mapped addresses.
RESERVED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fe80::/10", "ff00::/8", "::ffff:0:0/96",
))  # fmt: skip


def parse_subnet(raw: str) -> IPNetwork:
    if "/" not in raw:
        raise InvalidArgument(f"invalid subnet {raw!r}: expected CIDR notation such as 10.1.0.0/24")
    try:
        network = ipaddress.ip_network(raw, strict=False)
    except ValueError as exc:
        raise InvalidArgument(f"invalid subnet {raw!r}: {exc}") from None
    if str(network) != raw and network.with_prefixlen != raw:
        raise InvalidArgument(f"invalid subnet {raw!r}: host bits are set (did you mean {network}?)")
    limit = 30 if network.version == 4 else 126
    if network.prefixlen > limit:
        raise InvalidArgument(f"subnet {raw} is too small: at most /{limit}")
    for reserved in RESERVED:
        if reserved.version == network.version and reserved.overlaps(network):
            raise InvalidArgument(f"subnet {raw} overlaps {reserved}, which is reserved (loopback, link-local, "
                                  "multicast or otherwise not for hosts)")  # fmt: skip
    return network


def requested_subnets(request: NetworkRequest, in_use: list[IPNetwork], in_use_by: str) -> list[SubnetConfig]:
    """The subnets a create request names, with their gateways (the first host unless given), ranges and
    auxiliary addresses; Conflict if one overlaps a subnet in use (`in_use_by` says whose, in the error)."""
    from boxnet.errors import Conflict

    found = []
    for index, raw in enumerate(request.subnets):
        subnet = parse_subnet(raw)
        for other in in_use:
            if other.version == subnet.version and other.overlaps(subnet):
                raise Conflict(f"subnet {subnet} overlaps with {other}, which {in_use_by}")
        gateway = request.gateways[index] if index < len(request.gateways) else ""
        ip_range = request.ip_ranges[index] if index < len(request.ip_ranges) else None
        auxiliary = request.auxiliary_addresses[index] if index < len(request.auxiliary_addresses) else {}
        found.append(SubnetConfig(str(subnet), gateway or str(next(subnet.hosts())), ip_range or None,
                                  dict(auxiliary)))  # fmt: skip
    return found


def _address_in(subnet: IPNetwork, raw: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """raw as an address of subnet; `what` names it in errors ("gateway 10.0.0.1")."""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: not an IP address") from None
    if address not in subnet:
        raise InvalidArgument(f"{what} is outside the subnet {subnet}")
    return address


def check_gateway(subnet: IPNetwork, raw: str) -> None:
    gateway = _address_in(subnet, raw, f"gateway {raw}")
    if subnet.version == 4 and gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {raw} is the network or broadcast address of {subnet}")


def check_auxiliary(subnet: IPNetwork, auxiliary: dict[str, str], gateway: str) -> None:
    for name, raw in auxiliary.items():
        check_object_name("auxiliary address", name)
        address = _address_in(subnet, raw, f"auxiliary address {name}={raw}")
        if gateway and address == ipaddress.ip_address(gateway):
            raise InvalidArgument(f"auxiliary address {name}={raw} is the gateway")


def check_ip_range(subnet: IPNetwork, raw: str) -> None:
    ip_range = parse_subnet(raw)
    if ip_range.version != subnet.version or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
        raise InvalidArgument(f"ip range {raw} is not inside the subnet {subnet}")
