"""What a capture target names: containers (by name, `network:NAME`, `label:K=V`), or an interface of the
daemon's own namespace (`host:IFACE`: the node's uplink, for the underlay), as capture points."""

from __future__ import annotations

import re

from boxnet.capture.session import CapturePoint
from boxnet.drivers import registry as drivers
from boxnet.engine.view import EngineView
from boxnet.errors import InvalidArgument, NotFound
from boxnet.kernel import links
from boxnet.model.container import Container
from boxnet.model.names import parse_key_values


class CaptureTargets:
    def __init__(self, view: EngineView) -> None:
        self.view = view
        self.registry = view

    def points(self, targets: list[str], interface: str = "") -> list[CapturePoint]:
        if not targets:
            raise InvalidArgument("name at least one target: a container, network:NAME or label:K=V")
        found: dict[tuple[str | None, str], CapturePoint] = {}
        with self.view.lock:
            for target in targets:
                for point in self._resolve(target, interface):
                    found.setdefault((point.netns, point.interface), point)
        return list(found.values())

    def _resolve(self, target: str, interface: str) -> list[CapturePoint]:
        if target.startswith("network:"):
            network = self.registry.find_network(target.split(":", 1)[1])
            members = [c for c in self.registry.containers_on(network.id) if c.state.status == "running"]
            points = [self.container_point(c, interface or c.endpoints[network.id].ifname) for c in members]
            for role, device in drivers.of(network).devices(network).items():
                points.append(CapturePoint(device, f"{role} of network {network.name}", None, device))
            return points
        if target.startswith("host:"):
            device = target.split(":", 1)[1]
            if not re.fullmatch(r"[A-Za-z0-9_.@][A-Za-z0-9_.@-]{0,14}", device):
                raise InvalidArgument(f"invalid interface name {device!r}")
            if device != "any" and not links.link_exists(device):
                raise NotFound(f"no interface {device!r} in the daemon's namespace")
            return [CapturePoint(f"host:{device}", f"{device} on the host", None, device)]
        if target.startswith("label:"):
            wanted = parse_key_values("label", [target.split(":", 1)[1]])
            members = [c for c in self.registry.containers.values() if c.state.status == "running"
                       and all(c.labels.get(k) == v for k, v in wanted.items())]  # fmt: skip
            if not members:
                raise NotFound(f"no running container has the label {target.split(':', 1)[1]}")
            return [self.container_point(c, interface) for c in members]
        return [self.container_point(self.registry.find_container(target), interface)]

    def container_point(self, container: Container, interface: str) -> CapturePoint:
        if container.state.status != "running":
            raise InvalidArgument(f"container {container.name} is not running")
        if container.network_mode == "host":
            return CapturePoint(container.name, f"{interface or 'any'} on the host (container {container.name} "
                                "uses the host's network)", None, interface or "any")  # fmt: skip
        owner = self.registry.netns_owner(container)
        if not interface:
            endpoints = list(owner.endpoints.values())
            interface = endpoints[0].ifname if len(endpoints) == 1 else "any"
        return CapturePoint(container.name, f"{interface} in the network namespace of {owner.name}",
                            owner.sandbox_key, interface)  # fmt: skip

    def addresses(self) -> dict[str, list[str]]:
        """Every running container's name (and short id) with its addresses, for filters."""
        found: dict[str, list[str]] = {}
        for container in self.registry.containers.values():
            if container.state.status != "running":
                continue
            owner = self.registry.netns_owner(container)
            addresses = [a.split("/")[0] for e in owner.endpoints.values() for a in (e.ipv4, e.ipv6) if a]
            if addresses:
                found[container.name] = addresses
                found.setdefault(container.short_id, addresses)
        return found
