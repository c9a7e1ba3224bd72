"""Who is called what, on which network, and what one container may see. Pure: no sockets.

Scope follows Docker: a container sees the names of the containers it shares a network with, and nothing of
the others. The default bridge is recorded (it counts as a way out for forwarding) but serves no names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from boxnet.dns import packet


@dataclass(frozen=True, slots=True)
class Registration:
    """One container's endpoint on one network, as the resolver needs it."""

    container_id: str
    network_id: str
    names: tuple[str, ...]  # container name, hostname, aliases, short id: lower case, no duplicates
    fqdn: str  # NAME.NETWORK, the PTR answer
    ipv4: str = ""
    ipv6: str = ""

    @staticmethod
    def make(container_id: str, network_id: str, network_name: str, container_name: str, hostname: str,
             aliases: list[str], ipv4: str = "", ipv6: str = "") -> Registration:  # fmt: skip
        ordered: dict[str, None] = {}
        for name in (container_name, hostname, *aliases, container_id[:12]):
            if name:
                ordered[name.lower().rstrip(".")] = None
        fqdn = f"{container_name}.{network_name}".lower()
        ordered[fqdn] = None
        return Registration(container_id, network_id, tuple(ordered), fqdn, ipv4, ipv6)


@dataclass
class Zone:
    """One network's names."""

    network_id: str
    name: str
    internal: bool
    discoverable: bool  # False for the default bridge: Docker serves no names there
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    by_name: dict[str, list[Registration]] = field(default_factory=dict)
    by_address: dict[str, Registration] = field(default_factory=dict)
    by_container: dict[str, Registration] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)

    def add(self, registration: Registration) -> None:
        self.remove(registration.container_id)
        self.by_container[registration.container_id] = registration
        for name in registration.names:
            self.by_name.setdefault(name, []).append(registration)
        for address in (registration.ipv4, registration.ipv6):
            if address:
                self.by_address[address] = registration

    def remove(self, container_id: str) -> Registration | None:
        """Costs what the container's own names do, not what the network's do: a network of 500
        containers must take the 500th as fast as the 10th."""
        found = self.by_container.pop(container_id, None)
        if found is None:
            return None
        for name in found.names:
            kept = [r for r in self.by_name.get(name, ()) if r.container_id != container_id]
            if kept:
                self.by_name[name] = kept
            else:
                self.by_name.pop(name, None)
                self.turns.pop(name, None)
        for address in (found.ipv4, found.ipv6):
            if address and self.by_address.get(address) is found:
                del self.by_address[address]
        return found

    def contains(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip.version == net.version and ip in net for net in self.subnets)

    def addresses(self, name: str, qtype: int) -> list[str] | None:
        """Every address of the name for the type, in rotating order; None if the name is not here."""
        registrations = self.by_name.get(name)
        if registrations is None:
            return None
        found = [r.ipv4 if qtype == packet.TYPE_A else r.ipv6 for r in registrations]
        found = [a for a in found if a] if qtype in (packet.TYPE_A, packet.TYPE_AAAA) else []
        if len(found) > 1:
            turn = self.turns.get(name, 0)
            self.turns[name] = turn + 1
            shift = turn % len(found)
            found = found[shift:] + found[:shift]
        return found


class Action(Enum):
    ANSWER = "local"
    FORWARD = "upstream"
    REFUSE = "refused"


@dataclass(frozen=True, slots=True)
class Resolution:
    action: Action
    rcode: int = packet.NOERROR
    records: tuple[bytes, ...] = ()
    cacheable: bool = True  # False when the next identical question gets a different order


class Directory:
    def __init__(self) -> None:
        self.zones: dict[str, Zone] = {}
        self.memberships: dict[str, list[str]] = {}  # container id -> network ids, in attach order

    def set_network(self, network_id: str, name: str, subnets: list[str], internal: bool,
                    discoverable: bool) -> None:  # fmt: skip
        parsed = [ipaddress.ip_network(s, strict=False) for s in subnets]
        zone = self.zones.get(network_id)
        if zone is None:
            self.zones[network_id] = Zone(network_id, name.lower(), internal, discoverable, parsed)
        else:
            zone.name, zone.internal, zone.discoverable, zone.subnets = name.lower(), internal, discoverable, parsed

    def add(self, registration: Registration) -> None:
        self.zones[registration.network_id].add(registration)
        networks = self.memberships.setdefault(registration.container_id, [])
        if registration.network_id not in networks:
            networks.append(registration.network_id)

    def remove(self, container_id: str, network_id: str) -> None:
        zone = self.zones.get(network_id)
        if zone is not None:
            zone.remove(container_id)
        networks = self.memberships.get(container_id, [])
        if network_id in networks:
            networks.remove(network_id)
        if not networks:
            self.memberships.pop(container_id, None)

    def drop_network(self, network_id: str) -> None:
        self.zones.pop(network_id, None)

    def zones_of(self, container_id: str) -> list[Zone]:
        return [self.zones[n] for n in self.memberships.get(container_id, ()) if n in self.zones]

    def may_forward(self, container_id: str) -> bool:
        """Only through a network with a way out: an internal-only container gets no answers from outside
        (CVE-2024-29018 was Docker forwarding for such containers from the host's namespace)."""
        return any(not zone.internal for zone in self.zones_of(container_id))

    def resolve(self, container_id: str, query: packet.Query) -> Resolution:
        name = query.name
        zones = [z for z in self.zones_of(container_id) if z.discoverable]
        if query.qclass != packet.CLASS_IN:
            return self._elsewhere(container_id)
        if query.qtype == packet.TYPE_PTR:
            address = packet.address_from_reverse(name)
            if address is not None:
                for zone in zones:
                    registration = zone.by_address.get(address)
                    if registration is not None:
                        return Resolution(Action.ANSWER, records=(packet.ptr_record(registration.fqdn + "."),))
                if any(zone.contains(address) for zone in zones):
                    return Resolution(Action.ANSWER, packet.NXDOMAIN)
                return self._elsewhere(container_id)
        for zone in zones:
            addresses = zone.addresses(name, query.qtype)
            if addresses is not None:
                records = tuple(packet.address_record(a) for a in addresses)
                return Resolution(Action.ANSWER, records=records, cacheable=len(records) < 2)
        if (name and "." not in name) or any(name.endswith("." + zone.name) for zone in zones):
            # The containers' own domain: a name that is not here is nowhere, and never leaks upstream.
            return Resolution(Action.ANSWER, packet.NXDOMAIN)
        return self._elsewhere(container_id)

    def _elsewhere(self, container_id: str) -> Resolution:
        if self.may_forward(container_id):
            return Resolution(Action.FORWARD)
        return Resolution(Action.REFUSE, packet.REFUSED)
