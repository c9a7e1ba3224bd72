"""The engine's read API: what the Docker API's answers and the read-only tools (boxnet.diag) may see.

The ledger (networks, containers, their endpoints) through read-only mappings, the engine's lock for a
consistent reading, and the read side of the connect redirect. Nothing reachable from here changes state:
changes go through the Engine's services.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType

from boxnet import paths
from boxnet.engine.connect_redirect import ConnectRedirect
from boxnet.engine.context import EngineContext
from boxnet.model.container import Container
from boxnet.model.network import Network


class EngineView:
    def __init__(self, ctx: EngineContext) -> None:
        self._registry = ctx.registry
        self._ctx = ctx

    @property
    def lock(self) -> threading.RLock:
        """Held while reading several objects that must agree with each other."""
        return self._ctx.lock

    @property
    def networks(self) -> Mapping[str, Network]:
        return MappingProxyType(self._registry.networks)

    @property
    def containers(self) -> Mapping[str, Container]:
        return MappingProxyType(self._registry.containers)

    def find_network(self, ref: str) -> Network:
        return self._registry.find_network(ref)

    def find_container(self, ref: str) -> Container:
        return self._registry.find_container(ref)

    def network_by_name(self, name: str) -> Network | None:
        return self._registry.network_by_name(name)

    def container_by_name(self, name: str) -> Container | None:
        return self._registry.container_by_name(name)

    def netns_owner(self, container: Container) -> Container:
        return self._registry.netns_owner(container)

    def containers_on(self, network_id: str) -> list[Container]:
        return self._registry.containers_on(network_id)

    @property
    def connect_redirect(self) -> ConnectRedirect:
        """Read only by convention: published(), destination_for(), enabled, reason, held."""
        return self._ctx.firewall.connect_redirect

    def remote_address(self, name: str, network_ids: set[str]) -> str:
        """The address of a container on another node of the swarm, by name, on one of these networks."""
        cluster = self._ctx.cluster
        return cluster.remote_address(name, network_ids) if cluster is not None else ""

    @property
    def trace_records(self) -> str:
        """Where a trace records the table it makes, before it makes it."""
        return paths.trace_records(self._ctx.config.root)

    def cluster_devices(self) -> set[str]:
        """The node's own swarm devices that are no network's (its WireGuard interface)."""
        cluster = self._ctx.cluster
        encryption = cluster.encryption if cluster is not None else None
        return {encryption.name} if encryption is not None else set()

    def dns_status(self) -> dict:
        return self._ctx.dns.status()
