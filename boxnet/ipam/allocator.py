"""Allocates addresses inside one subnet, sequentially with a rolling cursor, as Docker's IPAM does.

The cursor means a released address is not handed out again at once, so a stale connection to a removed
container does not land on its successor.
"""

from __future__ import annotations

import ipaddress

from boxnet.errors import Conflict, Exhausted, InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SubnetAllocator:
    def __init__(
        self,
        subnet: IPNetwork,
        gateway: IPAddress,
        ip_range: IPNetwork | None = None,
        allocated: set[IPAddress] | None = None,
    ) -> None:
        self.subnet = subnet
        self.gateway = gateway
        self.range = ip_range or subnet
        self.allocated: set[IPAddress] = set(allocated or ())
        first = int(self.range.network_address)
        last = int(self.range.broadcast_address)
        if subnet.version == 4 and subnet.prefixlen < 31:
            # The network and broadcast addresses of the subnet are never handed out.
            first = max(first, int(subnet.network_address) + 1)
            last = min(last, int(subnet.broadcast_address) - 1)
        elif subnet.version == 6:
            first = max(first, int(subnet.network_address) + 1)  # the subnet-router anycast address
        self._first, self._last = first, last
        self._cursor = first

    @property
    def capacity(self) -> int:
        return self._last - self._first + 1 - (1 if self._first <= int(self.gateway) <= self._last else 0)

    def _reserved(self, address: IPAddress) -> bool:
        return address == self.gateway or address in self.allocated

    def allocate(self, requested: str | None = None) -> IPAddress:
        if requested:
            return self._allocate_exact(requested)
        span = self._last - self._first + 1
        for step in range(span):
            value = self._first + (self._cursor - self._first + step) % span
            address = ipaddress.ip_address(value)
            if not self._reserved(address):
                self.allocated.add(address)
                self._cursor = value + 1 if value < self._last else self._first
                return address
        raise Exhausted(f"no free address left in {self.range}")

    def _allocate_exact(self, requested: str) -> IPAddress:
        try:
            address = ipaddress.ip_address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid IP address {requested!r}") from None
        if address not in self.subnet:
            raise InvalidArgument(f"address {address} is outside the subnet {self.subnet}")
        if self.subnet.version == 4 and address in (self.subnet.network_address, self.subnet.broadcast_address):
            raise InvalidArgument(f"address {address} is the network or broadcast address of {self.subnet}")
        if address == self.gateway:
            raise Conflict(f"address {address} is the gateway of {self.subnet}")
        if address in self.allocated:
            raise Conflict(f"address {address} is already in use on {self.subnet}")
        self.allocated.add(address)
        return address

    def release(self, address: IPAddress | str) -> None:
        self.allocated.discard(ipaddress.ip_address(address))
