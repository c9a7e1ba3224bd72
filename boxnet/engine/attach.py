"""Joining a container's namespace to a network and leaving it: addresses, veth, published ports."""

from __future__ import annotations

import logging
import random

from boxnet.drivers import registry as drivers
from boxnet.engine.container_requests import ingress_refusal
from boxnet.engine.context import EngineContext
from boxnet.engine.firewall import address_of, port_rules
from boxnet.engine.undo import UndoStack
from boxnet.errors import Conflict, ErrorList, Exhausted, Forbidden
from boxnet.kernel import conntrack
from boxnet.kernel.port_reservations import PortInUse
from boxnet.model.container import Container, Endpoint
from boxnet.model.macs import mac_for, random_mac
from boxnet.model.names import new_id
from boxnet.model.network import Network
from boxnet.model.ports import PortMapping
from boxnet.model.service import TASK_LABEL

log = logging.getLogger(__name__)

EPHEMERAL_PORTS = (32768, 60999)


def next_ifname(container: Container) -> str:
    used = {e.ifname for e in container.endpoints.values()}
    index = 0
    while f"eth{index}" in used:
        index += 1
    return f"eth{index}"


class Attacher:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.registry = ctx.registry

    def attach(
        self, container: Container, network: Network, settings: dict, default_route: bool, undo: UndoStack
    ) -> Endpoint:
        """Leases addresses, records the endpoint, then has the driver make it; each step registered on undo."""
        driver = drivers.of(network)
        if network.ingress and TASK_LABEL not in container.labels:
            raise Forbidden(ingress_refusal(network))
        endpoint = Endpoint(
            network_id=network.id, endpoint_id=new_id(), ifname=next_ifname(container),
            host_veth=driver.host_link_name(), aliases=list(settings.get("aliases", [])),
            requested_ipv4=settings.get("ipv4", ""),
        )  # fmt: skip
        cluster = self.ctx.require_cluster() if driver.capabilities.scope == "global" else None
        if network.ipv4_subnets:
            endpoint.ipv4 = self._allocate(network, 4, endpoint.requested_ipv4, endpoint.endpoint_id)
            undo.push("ipv4 lease", lambda: self._release(network, endpoint.ipv4))
            endpoint.gateway4 = network.ipv4_subnets[0].gateway
        if network.enable_ipv6 and network.ipv6_subnets:
            endpoint.ipv6 = self._allocate(network, 6, settings.get("ipv6", ""), endpoint.endpoint_id)
            undo.push("ipv6 lease", lambda: self._release(network, endpoint.ipv6))
            endpoint.gateway6 = network.ipv6_subnets[0].gateway
        endpoint.mac = settings.get("mac") or (mac_for(endpoint.ipv4) if endpoint.ipv4 else random_mac())
        self._check_mac_free(network, container, endpoint.mac)
        # The ledger first: a crash after this line leaves a record naming the veth to clean up.
        container.endpoints[network.id] = endpoint
        self.registry.save_container(container)
        undo.push("endpoint record", lambda: self._forget(container, network.id))
        # A host-side port is pinned to its MAC and addresses before it exists: not one frame leaves it unchecked.
        guard = driver.port_guard(network, endpoint)
        if guard is not None:
            self.ctx.firewall.guard_port(guard)
            undo.push("port guard", lambda: self.ctx.firewall.unguard_port(guard))
        sandbox = container.sandbox_key
        undo.push("interface", lambda: driver.leave(network, endpoint, sandbox))
        driver.join(network, endpoint, sandbox, default_route)
        self.ctx.dns.endpoint_added(container, network, endpoint)
        undo.push("DNS names", lambda: self.ctx.dns.endpoint_removed(container, network.id))
        if cluster is not None:
            # The other nodes learn of it last, once it works: on this node's lease, gone if the node dies.
            cluster.publish(container, network, endpoint)
            undo.push("published endpoint", lambda: cluster.unpublish(network.id, endpoint.endpoint_id))
        self._network_event("connect", container, network)
        undo.push("disconnect event", lambda: self._network_event("disconnect", container, network))
        return endpoint

    def _network_event(self, action: str, container: Container, network: Network) -> None:
        self.ctx.events.publish("network", action, network.id,
                                {"container": container.id, "name": network.name, "type": network.driver})  # fmt: skip

    def _allocate(self, network: Network, version: int, requested: str, owner: str) -> str:
        """Swarm networks lease their addresses in the cluster store, the others in the local ledger."""
        if drivers.of(network).capabilities.scope == "global":
            return self.ctx.require_cluster().cluster_networks.allocate(network, version, requested, owner)
        return self.registry.allocate(network, version, requested)

    def _release(self, network: Network | None, cidr: str) -> None:
        if network is not None and drivers.of(network).capabilities.scope == "global":
            if self.ctx.cluster is not None:
                self.ctx.cluster.cluster_networks.release(network.id, cidr)
            return
        if network is not None:
            self.registry.release(network.id, cidr)

    def _check_mac_free(self, network: Network, container: Container, mac: str) -> None:
        """Two ports of one bridge with one MAC would steal each other's frames (and the anti-spoofing
        rules pin each port to its own)."""
        for other in self.registry.containers_on(network.id):
            endpoint = other.endpoints.get(network.id)
            if other.id != container.id and endpoint is not None and endpoint.mac == mac:
                raise Conflict(f"MAC address {mac} is already in use on network {network.name} by {other.name}")

    def _forget(self, container: Container, network_id: str) -> None:
        container.endpoints.pop(network_id, None)
        self.registry.save_container(container)

    def detach(self, container: Container, network_id: str, errors: ErrorList) -> None:
        """Best effort: the veth goes, the leases are released, the record forgets the endpoint."""
        endpoint = container.endpoints.get(network_id)
        if endpoint is None:
            return
        network = self.registry.networks.get(network_id)
        errors.attempt("DNS names", self.ctx.dns.endpoint_removed, container, network_id)
        if network is not None and drivers.of(network).capabilities.scope == "global" and self.ctx.cluster:
            errors.attempt("published endpoint", self.ctx.cluster.unpublish, network_id, endpoint.endpoint_id)
        if network is not None:
            driver = drivers.of(network)
            errors.attempt(f"remove {endpoint.ifname}", driver.leave, network, endpoint, container.sandbox_key)
            guard = driver.port_guard(network, endpoint)
            if guard is not None:
                errors.attempt("port guard", self.ctx.firewall.unguard_port, guard)
        for cidr in (endpoint.ipv4, endpoint.ipv6):
            if cidr:
                # No flow meant for this container may reach the next one given its address.
                errors.attempt("conntrack entries", conntrack.forget_address, address_of(cidr))
                errors.attempt("address lease", self._release, network, cidr)
        container.endpoints.pop(network_id, None)
        if network is not None:
            self._network_event("disconnect", container, network)

    # ---- published ports ---------------------------------------------------------------------------
    def published_elsewhere(self, container: Container) -> list[PortMapping]:
        return [
            p
            for other in self.registry.containers.values()
            if other.id != container.id and other.state.status == "running"
            for p in other.published_ports
        ]

    def assign_host_ports(self, container: Container) -> None:
        """Chooses free ports for `-p CONTAINERPORT` and rejects clashes with ports already published."""
        taken = self.published_elsewhere(container)
        resolved: list[PortMapping] = []
        for mapping in container.ports:
            if mapping.host_port:
                for other in taken + resolved:
                    if mapping.clashes_with(other):
                        where = mapping.host_ip or "0.0.0.0"
                        raise Conflict(
                            f"Bind for {where}:{mapping.host_port}/{mapping.protocol} failed: port is already allocated"
                        )
                resolved.append(mapping)
                continue
            resolved.append(self._free_port(mapping, taken + resolved))
        container.published_ports = resolved

    @staticmethod
    def _free_port(mapping: PortMapping, taken: list[PortMapping]) -> PortMapping:
        used = {p.host_port for p in taken if p.protocol == mapping.protocol}
        low, high = EPHEMERAL_PORTS
        start = random.randint(low, high)
        for offset in range(high - low + 1):
            port = low + (start - low + offset) % (high - low + 1)
            if port not in used:
                return PortMapping(mapping.container_port, mapping.protocol, mapping.host_ip, port)
        raise Exhausted(f"no free host port left for {mapping.protocol}")

    def publish(self, container: Container, undo: UndoStack) -> None:
        endpoint = container.endpoints.get(container.port_network)
        if not container.published_ports or endpoint is None:
            return
        undo.push("host ports", lambda: self.ctx.reservations.release(container.id))
        self.reserve(container, bool(endpoint.ipv6))
        rules = port_rules(container, endpoint)
        self.ctx.firewall.add_ports(rules)
        undo.push("published ports", lambda: self.ctx.firewall.remove_ports(rules))
        # A client that kept sending to a UDP port while nothing was published has an entry without NAT,
        # which its packets keep alive: gone, so that its next packet meets the new DNAT.
        for port in {(m.protocol, m.host_port) for m in container.published_ports if m.protocol != "tcp"}:
            conntrack.forget_port(*port)

    def reserve(self, container: Container, ipv6: bool) -> None:
        """Binds each host port (kernel/port_reservations.py): a port a host process uses is an error when it
        was asked for, and another free port when boxnet chose it."""
        taken = self.published_elsewhere(container)
        for index, mapping in enumerate(container.published_ports):
            for _ in range(100):
                try:
                    self.ctx.reservations.hold(container.id, mapping.protocol, mapping.host_ip, mapping.host_port,
                                               ipv6)  # fmt: skip
                    break
                except PortInUse:
                    if container.ports[index].host_port:
                        raise
                    mapping = self._free_port(mapping, [*taken, *container.published_ports])
                    container.published_ports[index] = mapping
            else:
                raise Exhausted(f"no free host port left for {mapping.protocol}")

    def unpublish(self, container: Container, errors: ErrorList) -> None:
        errors.attempt("host ports", self.ctx.reservations.release, container.id)
        endpoint = container.endpoints.get(container.port_network)
        if container.published_ports and endpoint is not None:
            errors.attempt("remove published ports", self.ctx.firewall.remove_ports,
                           port_rules(container, endpoint))  # fmt: skip

