"""Network lifecycle: create, remove, prune, and the predefined bridge, host and none networks."""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime

from boxnet.drivers import registry as drivers
from boxnet.drivers.api import NetworkDriver
from boxnet.engine import faults
from boxnet.engine.context import EngineContext
from boxnet.engine.undo import UndoStack
from boxnet.errors import Conflict, Forbidden, InvalidArgument
from boxnet.ipam import pools
from boxnet.kernel import links
from boxnet.kernel.nft import NftError
from boxnet.model.names import new_id
from boxnet.model.network import (
    GATEWAY_BRIDGE,
    OPT_BRIDGE_NAME,
    OPT_DEFAULT_BRIDGE,
    OPT_ENABLE_ICC,
    PREDEFINED,
    Network,
    NetworkRequest,
    SubnetConfig,
    requested_subnets,
)

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NetworkService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.registry = ctx.registry

    def _subnets_in_use(self, with_host_routes: bool = True) -> list[pools.IPNetwork]:
        """Subnets of boxnet's networks, and the host's routes unless the new subnet is not routed on the host
        (a macvlan network's subnet is the parent's LAN, whose route the host has)."""
        taken = [s.network for n in self.registry.networks.values() for s in n.subnets]
        if with_host_routes:
            ours = {s.network for n in self.registry.networks.values() for s in n.subnets}
            taken += [route for route in links.route_networks() if route not in ours]
        return taken

    def _build(self, request: NetworkRequest, network_id: str, driver: NetworkDriver) -> Network:
        in_use = self._subnets_in_use(driver.capabilities.subnet_on_host)
        subnets = requested_subnets(request, in_use, "is already in use")
        if not any(s.network.version == 4 for s in subnets):
            subnet = pools.choose_subnet(in_use)
            subnets.insert(0, SubnetConfig(str(subnet), str(pools.first_host(subnet))))
        if request.enable_ipv6 and not any(s.network.version == 6 for s in subnets):
            subnet6 = pools.ula_subnet(network_id)
            subnets.append(SubnetConfig(str(subnet6), str(pools.first_host(subnet6))))
        network = Network(
            id=network_id, name=request.name, driver=request.driver, created=now(), subnets=subnets,
            enable_ipv6=request.enable_ipv6, internal=request.internal, attachable=request.attachable,
            options=dict(request.options), labels=dict(request.labels),
        )  # fmt: skip
        driver.prepare(network, list(self.registry.networks.values()))
        return network

    def create(self, request: NetworkRequest) -> Network:
        request.validate()
        driver = drivers.for_creation(request.driver)
        driver.validate(request)
        if request.name == GATEWAY_BRIDGE:
            raise InvalidArgument(f"network name {GATEWAY_BRIDGE} is reserved for the nodes' gateway bridge")
        if request.ingress and driver.capabilities.scope != "global":
            raise InvalidArgument(f"an ingress network is an overlay: the {request.driver} driver has no routing mesh")
        if driver.capabilities.scope == "global":
            return self._create_swarm_network(request)
        with self.ctx.lock:
            if self.registry.network_by_name(request.name):
                raise Conflict(f"network with name {request.name} already exists")
            network = self._build(request, new_id(), driver)
            self._make(network, fault_points=True)
            log.info("created network %s (%s, %s) on %s", network.name, network.driver, network.subnets[0].subnet,
                     driver.devices(network))  # fmt: skip
            self._event("create", network)
            return network

    def _event(self, action: str, network: Network) -> None:
        scope = drivers.of(network).capabilities.scope
        self.ctx.events.publish("network", action, network.id, {"name": network.name, "type": network.driver},
                                scope="swarm" if scope == "global" else "local")  # fmt: skip

    def _create_swarm_network(self, request: NetworkRequest) -> Network:
        """A manager records it in the cluster store; every node (this one at once) realizes it."""
        cluster = self.ctx.require_manager()
        with self.ctx.lock:
            if self.registry.network_by_name(request.name):
                raise Conflict(f"network with name {request.name} already exists")
            local = [s.network for n in self.registry.networks.values() for s in n.ipv4_subnets]
        network = cluster.adopt(cluster.cluster_networks.create(request, local))
        self._event("create", network)
        return network

    def remove(self, ref: str) -> None:
        with self.ctx.lock:
            network = self.registry.find_network(ref)
            if network.name in PREDEFINED:
                raise Forbidden(f"{network.name} is a pre-defined network and cannot be removed")
            if drivers.of(network).capabilities.scope == "global":
                cluster = self.ctx.require_manager()
                cluster.cluster_networks.remove(network)  # refused while any node has an endpoint on it
                self.remove_local(network)
                return
            users = self.registry.containers_on(network.id)
            if users:
                names = ", ".join(c.name for c in users)
                raise Conflict(f"error while removing network: network {network.name} has active endpoints "
                               f"({names})")  # fmt: skip
            self._remove(network)

    def remove_local(self, network: Network) -> None:
        self._remove(network)

    def _remove(self, network: Network) -> None:
        """Intent first: a daemon killed half-way finds the network marked and finishes the removal."""
        network.removing = True
        self.registry.save_network(network)
        faults.check("network-rm:after-intent")
        self.finish_removal(network)

    def finish_removal(self, network: Network) -> None:
        self._teardown(network)
        self.registry.drop_network(network)
        self._event("destroy", network)

    def _teardown(self, network: Network) -> None:
        self.ctx.dns.network_removed(network)
        try:
            self.ctx.firewall.remove_network(network)
        except NftError as exc:
            # Part of it was already gone (a flushed ruleset, say): rebuild from what remains.
            log.warning("incremental removal of %s's rules failed (%s); rebuilding the table", network.name, exc)
            self.ctx.firewall.rebuild(self.registry, without=network)
        drivers.of(network).delete(network)

    def prune(self) -> list[str]:
        removed = []
        with self.ctx.lock:
            for network in list(self.registry.networks.values()):
                if network.name in PREDEFINED or self.registry.containers_on(network.id):
                    continue
                if drivers.of(network).capabilities.scope == "global":
                    continue  # the swarm's, not this node's to prune
                self._remove(network)
                removed.append(network.name)
        return removed

    def ensure_predefined(self) -> None:
        """The default `bridge` network on boxnet0, and `host` and `none`, made at first start."""
        with self.ctx.lock:
            for name, driver in (("host", "host"), ("none", "null")):
                if not self.registry.network_by_name(name):
                    self.registry.save_network(Network(id=new_id(), name=name, driver=driver, created=now()))
            if self.registry.network_by_name("bridge"):
                return
            network_id = new_id()
            preferred = ipaddress.ip_network("172.17.0.0/16")
            in_use = self._subnets_in_use()
            subnet = preferred
            if any(preferred.overlaps(other) for other in in_use if other.version == 4):
                subnet = pools.choose_subnet(in_use)
            bridge = self.ctx.config.default_bridge
            if links.link_exists(bridge):
                raise InvalidArgument(f"an interface named {bridge} exists and is not boxnet's; remove it first")
            network = Network(
                id=network_id, name="bridge", driver="bridge", created=now(),
                subnets=[SubnetConfig(str(subnet), str(pools.first_host(subnet)))],
                options={OPT_DEFAULT_BRIDGE: "true", OPT_BRIDGE_NAME: bridge}, bridge=bridge,
            )  # fmt: skip
            self._make(network, fault_points=False)

    def make(self, network: Network) -> None:
        """Records and realizes a network whose record is complete (a swarm network this node adopts)."""
        self._make(network, fault_points=False)

    def ensure_gateway_bridge(self) -> Network:
        """The node's way out for containers on swarm networks: Docker's docker_gwbridge, a bridge network
        with icc off, made the first time a container needs it."""
        with self.ctx.lock:
            existing = self.registry.network_by_name(GATEWAY_BRIDGE)
            if existing is not None:
                return existing
            request = NetworkRequest(GATEWAY_BRIDGE, options={OPT_BRIDGE_NAME: GATEWAY_BRIDGE, OPT_ENABLE_ICC: "false"})
            driver = drivers.get("bridge")
            driver.validate(request)
            network = self._build(request, new_id(), driver)
            self._make(network, fault_points=False)
            return network

    def _make(self, network: Network, fault_points: bool) -> None:
        """Records the network, then makes its bridge and rules; a failure undoes them in reverse.

        Fault points only for networks users create: the default bridge is made while the daemon starts,
        where an injected fault would keep the daemon from starting at all."""
        driver = drivers.of(network)
        with UndoStack() as undo:
            self.registry.save_network(network)
            undo.push("record", lambda: self.registry.drop_network(network))
            if fault_points:
                faults.check("network:after-record")
            undo.push("devices", lambda: driver.delete(network))  # before: a half-made device goes too
            driver.create(network)
            if fault_points:
                faults.check("network:after-bridge")
            self.ctx.firewall.add_network(network)
            undo.push("rules", lambda: self.ctx.firewall.remove_network(network))
            if fault_points:
                faults.check("network:after-rules")
            self.ctx.dns.network_added(network)
