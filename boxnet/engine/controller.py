"""The engine: one object that the API, the CLI's Python API and the tests drive."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from boxnet import __version__
from boxnet.cluster.networks import ingress_request
from boxnet.cluster.swarm import Swarm
from boxnet.engine.cluster_sync import ClusterSync, is_swarm_network
from boxnet.engine.container_admin import ContainerAdmin
from boxnet.engine.containers import ContainerService
from boxnet.engine.context import EngineConfig, EngineContext
from boxnet.engine.execs import ExecService
from boxnet.engine.firewall_watch import FirewallWatch
from boxnet.engine.images import ImageService
from boxnet.engine.networks import NetworkService
from boxnet.engine.reconcile import Reconciler
from boxnet.engine.registry import Registry
from boxnet.engine.view import EngineView
from boxnet.engine.volumes import VolumeService
from boxnet.errors import BoxnetError, Conflict, InvalidArgument
from boxnet.model.service import TASK_LABEL, ServiceSpec
from boxnet.services.records import ServiceRecord, ServiceRecords, read_tasks
from boxnet.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from boxnet.services.runtime import ServicesRuntime

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        os.makedirs(config.root, mode=0o710, exist_ok=True)
        os.makedirs(config.containers_dir, exist_ok=True)
        self.config = config
        self.store = SqliteStore(os.path.join(config.root, "boxnet.db"))
        self.ctx = EngineContext(config=config, registry=Registry(self.store))
        self.registry = self.ctx.registry
        # What the API and the tools read; changes go through the services below.
        self.view = EngineView(self.ctx)
        self.networks = NetworkService(self.ctx)
        self.containers = ContainerService(self.ctx, self.networks)
        self.container_admin = ContainerAdmin(self.ctx, self.containers)
        self.execs = ExecService(self.ctx)
        self.images = ImageService(self.ctx)
        self.volumes = VolumeService(self.ctx)
        self.reconciler = Reconciler(self.ctx, self.containers, self.networks)
        self.swarm = Swarm(config.root, __version__, config.node_ttl, self._own_links, config.cluster_store)
        self.swarm.listeners.append(self)
        self.services_runtime: ServicesRuntime | None = None
        self.firewall_watch = FirewallWatch(self.ctx)

    def start(self) -> dict[str, list[str]]:
        """Live restore: adopt what survived, settle what did not, repair the kernel, then serve."""
        self.containers.monitor.start()
        if self.config.connect_redirect:
            self.ctx.firewall.connect_redirect.start()
        # The table's skeleton must exist before a network adds its chain to it. Changes by anyone else
        # from here on are noticed; the reconciler's rebuild below covers what came before.
        self.firewall_watch.start()
        self.ctx.firewall.rebuild(self.registry)
        self.networks.ensure_predefined()
        report = self.reconciler.at_startup()
        # After the reconciler: the resolver gets the settled state (survivors only) in one go.
        self.ctx.dns.start()
        self.swarm.resume()
        log.info("started: %s", {k: v for k, v in report.items() if v})
        return report

    def _own_links(self) -> set[str]:
        """boxnet's own devices, which are never the address a node advertises."""
        own = set(self.registry.used_bridges())
        own |= {e.host_veth for c in self.registry.containers.values() for e in c.endpoints.values() if e.host_veth}
        return own

    # ---- the swarm ---------------------------------------------------------------------------------
    def swarm_init(self, advertise: str, port: int) -> str:
        return self.swarm.init(advertise, port)

    def swarm_join(self, remotes: list[str], token: str, advertise: str, availability: str) -> None:
        self.swarm.join(remotes, token, advertise, availability)

    def swarm_leave(self, force: bool) -> None:
        """As Docker: the node's tasks stop with it (their services place them elsewhere); containers a user
        put on swarm networks must go first, as they would lose their network."""
        self.swarm.check_leave(force)
        with self.ctx.lock:
            on_swarm = [c for c in self.registry.containers.values() for e in c.endpoints.values()
                        if (n := self.registry.networks.get(e.network_id)) is not None
                        and is_swarm_network(n)]  # fmt: skip
            attached = sorted({c.name for c in on_swarm if TASK_LABEL not in c.labels})
            tasks = sorted({c.id for c in self.registry.containers.values() if TASK_LABEL in c.labels})
        if attached:
            raise Conflict(f"containers on swarm networks run here ({', '.join(attached)}): remove them or "
                           "disconnect them first")  # fmt: skip
        if self.services_runtime is not None:
            self.services_runtime.quiesce()  # no task starts again here
        for container_id in tasks:
            self.containers.remove(container_id, force=True)
        self.swarm.leave(force)

    def rotate_keys(self) -> int:
        """Every node makes itself a new WireGuard key now (the private keys never leave their nodes)."""
        from boxnet.engine.encryption import bump_epoch

        return bump_epoch(self.ctx.require_manager().store)

    # ---- services (a manager's) ---------------------------------------------------------------------
    def _service_records(self) -> ServiceRecords:
        cluster = self.ctx.require_manager()
        return ServiceRecords(cluster.store, cluster.cluster_networks)

    def create_service(self, spec: ServiceSpec) -> ServiceRecord:
        records = self._service_records()
        networks = []
        for ref in spec.networks:
            network = self.registry.find_network(ref)
            if not is_swarm_network(network):
                raise InvalidArgument(f"network {network.name} is not a swarm network: services attach to "
                                      "overlay networks")  # fmt: skip
            networks.append(network)
        spec.networks = [n.id for n in networks]
        self._check_ingress(spec)
        return records.create(spec, networks)

    def _check_ingress(self, spec: ServiceSpec) -> None:
        if spec.ports and not any(n.ingress for n in self.registry.networks.values()):
            raise Conflict("the swarm has no ingress network, so no port can be published: create one with "
                           "`network create --driver overlay --ingress NAME`")  # fmt: skip

    def services(self) -> list[ServiceRecord]:
        return self._service_records().list()

    def service(self, ref: str) -> ServiceRecord:
        return self._service_records().get(ref)

    def update_service(self, ref: str, version: int, spec: ServiceSpec, rollback: bool = False) -> ServiceRecord:
        current = self._service_records().get(ref)
        spec.networks = [self.registry.find_network(n).id for n in spec.networks] or current.spec.networks
        self._check_ingress(spec)
        return self._service_records().update(ref, version, spec, rollback)

    def remove_service(self, ref: str) -> None:
        self._service_records().remove(ref)

    def tasks(self) -> list[tuple[dict, dict]]:
        """Every desired task with what its node reports of it."""
        tasks, status = read_tasks(self.ctx.require_manager().store)
        return [(task, status.get(task_id, {})) for task_id, task in tasks.items()]

    def subnet_sizes(self) -> dict[str, int]:
        return {n.id: n.subnets[0].prefixlen for n in self.registry.networks.values() if n.subnets}

    # The swarm's listener: this node in step with the swarm while it is connected.
    def swarm_connected(self, swarm: Swarm) -> None:
        assert swarm.store is not None and swarm.liveness is not None
        sync = ClusterSync(self.ctx, self.networks, swarm.store, swarm.state.node_id, swarm.state.addr,
                           swarm.liveness)  # fmt: skip
        self.ctx.cluster, self.ctx.cluster_role = sync, swarm.state.role
        sync.start()
        if swarm.made_the_swarm:
            swarm.made_the_swarm = False
            self._make_ingress(sync)
        from boxnet.services.runtime import ServicesRuntime  # services come with the swarm

        self.services_runtime = ServicesRuntime(self, swarm)
        self.services_runtime.start()

    def _make_ingress(self, sync: ClusterSync) -> None:
        """A new swarm has its routing mesh network, as Docker's has (`ingress`, 10.0.0.0/24, VNI 4096)."""
        with self.ctx.lock:
            local = [s.network for n in self.registry.networks.values() for s in n.ipv4_subnets]
        try:
            sync.adopt(sync.cluster_networks.create(ingress_request(), local))
        except BoxnetError as exc:
            log.error("the swarm has no ingress network (no port can be published): %s", exc.message)

    def swarm_disconnecting(self, swarm: Swarm, leaving: bool) -> None:
        runtime, self.services_runtime = self.services_runtime, None
        if runtime is not None:
            runtime.stop(leaving)
        sync, self.ctx.cluster, self.ctx.cluster_role = self.ctx.cluster, None, ""
        if sync is not None:
            if leaving:
                sync.leave()
            else:
                sync.stop()  # the daemon stops; the data plane stays, as it is

    def close(self) -> None:
        self.swarm.close()
        self.containers.restarts.close()
        self.firewall_watch.stop()
        self.ctx.dns.stop()
        self.ctx.firewall.connect_redirect.close()
        self.containers.monitor.stop()
        self.containers.launcher.close()
        self.store.close()
