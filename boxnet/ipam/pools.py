"""Choosing a subnet for a network that did not ask for one, from Docker's default address pools."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from boxnet.errors import Exhausted

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Docker's default-address-pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    *((f"172.{n}.0.0/16", 16) for n in range(17, 32)),
    ("192.168.0.0/16", 20),
)


def candidate_subnets(pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> Iterator[IPNetwork]:
    for base, size in pools:
        yield from ipaddress.ip_network(base).subnets(new_prefix=size)


def choose_subnet(in_use: Iterable[IPNetwork], pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> IPNetwork:
    taken = list(in_use)
    for candidate in candidate_subnets(pools):
        if not any(candidate.version == other.version and candidate.overlaps(other) for other in taken):
            return candidate
    raise Exhausted("all predefined address pools have been fully subnetted")


def ula_subnet(network_id: str) -> ipaddress.IPv6Network:
    """A unique-local /64 derived from the network id, for --ipv6 without a v6 --subnet."""
    global_id = int(network_id[:10], 16)
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 64))


def first_host(subnet: IPNetwork) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return subnet.network_address + 1
