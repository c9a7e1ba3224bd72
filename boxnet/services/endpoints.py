"""What every node does for services: their names in the embedded DNS, and their VIPs in the namespace of
each local container on their networks (services/vip.py), kept equal to the running tasks.

`tasks.NAME` (and NAME in dnsrr mode) are network aliases of the task containers themselves, which reach
every node with the endpoints; in vip mode NAME answers the VIP, registered here on each network.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from boxnet.errors import BoxnetError
from boxnet.kernel import netns, nft
from boxnet.services import vip
from boxnet.services.records import ServiceRecord, ServicesState

if TYPE_CHECKING:
    from boxnet.engine.context import EngineContext

log = logging.getLogger(__name__)


class ServiceEndpoints:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._named: set[tuple[str, str]] = set()  # (service id, network id) with a VIP name registered
        # (container, (service, network)) -> the VIP and backends applied in the container's namespace
        self._applied: dict[tuple[str, tuple[str, str]], tuple[str, tuple[str, ...]]] = {}
        self._fresh_done: set[str] = set()  # containers whose VIP table this daemon has made

    def reconcile(self, state: ServicesState) -> None:
        services, tasks, status = state.services, state.tasks, state.status
        wanted: dict[tuple[str, str], vip.VipService] = {}  # (service, network) -> its VIP and backends
        for service in services:
            running = [status[t] for t, task in tasks.items()
                       if task["service_id"] == service.id and status.get(t, {}).get("state") == "running"]
            for network_id, address in service.networks.items():
                if address:
                    backends = tuple(sorted({s["addresses"][network_id] for s in running
                                             if s.get("addresses", {}).get(network_id)}))  # fmt: skip
                    wanted[(service.id, network_id)] = vip.VipService(service.id.lower(), address, backends,
                                                                      network_id)
        self._names(services, wanted)
        self._rules(wanted)

    def _names(self, services: list[ServiceRecord], wanted: dict[tuple[str, str], vip.VipService]) -> None:
        by_id = {s.id: s for s in services}
        for key in list(self._named - set(wanted)):
            self.ctx.dns.remote_endpoint_removed(key[1], f"vip:{key[0]}")
            self._named.discard(key)
        for key, service in wanted.items():
            if key in self._named:
                continue
            network = self.ctx.registry.networks.get(key[1])
            if network is not None:
                self.ctx.dns.remote_endpoint_added(network, f"vip:{key[0]}", by_id[key[0]].spec.name, "", [],
                                                   service.vip)  # fmt: skip
                self._named.add(key)

    def _rules(self, wanted: dict[tuple[str, str], vip.VipService]) -> None:
        """Each local container gets the VIP of every service on every network it shares with it."""
        with self.ctx.lock:
            containers = [c for c in self.ctx.registry.containers.values()
                          if c.state.status == "running" and c.sandbox_key and c.endpoints]  # fmt: skip
        for container in containers:
            mine = {key: v for key, v in wanted.items() if key[1] in container.endpoints}
            commands: list[str] = []
            fresh = container.id not in self._fresh_done
            if mine and fresh:
                commands += vip.skeleton()
            elif fresh:  # none of its services is left: nothing of an earlier daemon's VIPs either
                commands += vip.clear()
            for key, service in mine.items():
                state = (service.vip, service.backends)
                if fresh or self._applied.get((container.id, key)) != state:
                    commands += vip.set_backends(service)
                    self._applied[(container.id, key)] = state
            for key in [k[1] for k in self._applied if k[0] == container.id and k[1] not in mine]:
                old_vip = self._applied.pop((container.id, key))[0]
                commands += vip.remove(vip.VipService(key[0].lower(), old_vip, (), key[1]))
            if commands:
                try:
                    netns.run_in(container.sandbox_key, nft.run, commands)
                    self._fresh_done.add(container.id)
                except (BoxnetError, OSError, nft.NftError) as exc:
                    log.warning("service VIPs in %s: %s", container.name, exc)
                    for key in [k for k in self._applied if k[0] == container.id]:
                        self._applied.pop(key)
                    self._fresh_done.discard(container.id)
        running = {c.id for c in containers}
        for key in [k for k in self._applied if k[0] not in running]:
            self._applied.pop(key)
        self._fresh_done &= running
