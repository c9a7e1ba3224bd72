"""In-memory state, written through to the store: networks, containers, and the indexes over them.

The store is the ledger: every kernel object boxnet makes is named in a record here before it is made,
so that a crash at any point leaves enough behind to finish or undo the work.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import TypeVar

from boxnet.errors import Conflict, InvalidArgument, NotFound
from boxnet.ipam.allocator import SubnetAllocator
from boxnet.model.container import Container
from boxnet.model.network import Network
from boxnet.store.base import Store

T = TypeVar("T", Network, Container)

NETWORKS = "networks/"
CONTAINERS = "containers/"


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.networks: dict[str, Network] = {}
        self.containers: dict[str, Container] = {}
        # network id -> allocators, one per subnet
        self.allocators: dict[str, list[SubnetAllocator]] = {}
        self.load()

    # ---- persistence -------------------------------------------------------------------------------
    def load(self) -> None:
        for _, value in self.store.list(NETWORKS):
            network = Network.from_dict(json.loads(value))
            self.networks[network.id] = network
            self.allocators[network.id] = self._allocators_for(network)
        for _, value in self.store.list(CONTAINERS):
            container = Container.from_dict(json.loads(value))
            self.containers[container.id] = container
            for endpoint in container.endpoints.values():
                self._mark_leased(endpoint.network_id, endpoint.ipv4, endpoint.ipv6)

    def save_network(self, network: Network) -> None:
        self.store.put(NETWORKS + network.id, json.dumps(network.to_dict()))
        self.networks[network.id] = network
        if network.id not in self.allocators:
            self.allocators[network.id] = self._allocators_for(network)

    def drop_network(self, network: Network) -> None:
        self.store.delete(NETWORKS + network.id)
        self.networks.pop(network.id, None)
        self.allocators.pop(network.id, None)

    def save_container(self, container: Container) -> None:
        self.store.put(CONTAINERS + container.id, container.to_json())
        self.containers[container.id] = container

    def drop_container(self, container: Container) -> None:
        self.store.delete(CONTAINERS + container.id)
        self.containers.pop(container.id, None)

    # ---- lookups -----------------------------------------------------------------------------------
    def find_network(self, ref: str) -> Network:
        return _resolve(self.networks.values(), ref, "network", f"network {ref} not found")

    def find_container(self, ref: str) -> Container:
        ref = ref.lstrip("/")
        return _resolve(self.containers.values(), ref, "container", f"No such container: {ref}")

    def network_by_name(self, name: str) -> Network | None:
        return next((n for n in self.networks.values() if n.name == name), None)

    def container_by_name(self, name: str) -> Container | None:
        return next((c for c in self.containers.values() if c.name == name), None)

    def netns_owner(self, container: Container) -> Container:
        """The container whose network namespace this one lives in: itself, or X for --network container:X
        (itself again if X is gone from the ledger)."""
        shared = container.shares_netns_with
        return self.containers.get(shared, container) if shared else container

    def volume_users(self, name: str) -> list[str]:
        """The names of the containers (in any state) that mount the volume."""
        return sorted(c.name for c in self.containers.values()
                      if any(m.type == "volume" and m.source == name for m in c.mounts))  # fmt: skip

    def containers_on(self, network_id: str) -> list[Container]:
        return [c for c in self.containers.values() if network_id in c.endpoints]

    def used_bridges(self) -> set[str]:
        return {n.bridge for n in self.networks.values() if n.bridge}

    # ---- addresses ---------------------------------------------------------------------------------
    @staticmethod
    def _allocators_for(network: Network) -> list[SubnetAllocator]:
        return [
            SubnetAllocator(
                s.network, s.gateway_address, ipaddress.ip_network(s.ip_range) if s.ip_range else None,
                {ipaddress.ip_address(a) for a in s.auxiliary.values()},
            )
            for s in network.subnets
        ]

    def _mark_leased(self, network_id: str, *cidrs: str) -> None:
        for allocator in self.allocators.get(network_id, []):
            for cidr in cidrs:
                if cidr and ipaddress.ip_interface(cidr).ip in allocator.subnet:
                    allocator.allocated.add(ipaddress.ip_interface(cidr).ip)

    def allocate(self, network: Network, version: int, requested: str = "") -> str:
        """Leases an address on the network's first subnet of that IP version; returns address/prefix."""
        for allocator in self.allocators[network.id]:
            if allocator.subnet.version != version:
                continue
            if requested and ipaddress.ip_address(requested) not in allocator.subnet:
                continue
            address = allocator.allocate(requested or None)
            return f"{address}/{allocator.subnet.prefixlen}"
        if requested:
            raise InvalidArgument(f"address {requested} is not in any subnet of network {network.name}")
        raise Conflict(f"network {network.name} has no IPv{version} subnet")

    def release(self, network_id: str, cidr: str) -> None:
        if not cidr:
            return
        address = ipaddress.ip_interface(cidr).ip
        for allocator in self.allocators.get(network_id, []):
            if address in allocator.subnet:
                allocator.release(address)


def _resolve(objects: Iterable[T], ref: str, kind: str, not_found: str) -> T:
    """By exact name, full id, or unique id prefix, as Docker resolves references."""
    candidates = list(objects)
    for item in candidates:
        if item.name == ref or item.id == ref:
            return item
    matches = [item for item in candidates if ref and item.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidArgument(f"{kind} reference {ref!r} is ambiguous")
    raise NotFound(not_found)
