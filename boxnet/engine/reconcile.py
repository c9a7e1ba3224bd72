"""Bringing the kernel back in line with the ledger: at start-up (live restore) and on demand.

Running containers whose shim is alive are adopted; the ones that died while the daemon was away are marked
exited and their network released; what a crash left half-made is undone; missing bridges, veths and rules
are made again. Networks removed by the user stay removed: only what the ledger records comes back.
"""

from __future__ import annotations

import logging
import os

from boxnet.engine.containers import ContainerService
from boxnet.engine.context import EngineContext
from boxnet.kernel import links, netns
from boxnet.model.container import Container
from boxnet.runtime.launcher import proc_start_time

log = logging.getLogger(__name__)


def shim_alive(container: Container) -> bool:
    state = container.state
    return bool(state.shim_pid) and proc_start_time(state.shim_pid) == state.shim_start_time


class Reconciler:
    def __init__(self, ctx: EngineContext, containers: ContainerService) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.containers = containers

    def at_startup(self) -> dict[str, list[str]]:
        """Adopts survivors, settles the dead, repairs the kernel. Returns what it did, for the log."""
        report: dict[str, list[str]] = {"adopted": [], "exited": [], "cleaned": [], "repaired": []}
        with self.ctx.lock:
            for container in list(self.registry.containers.values()):
                if container.state.status == "running":
                    if shim_alive(container):
                        report["adopted"].append(container.name)
                        continue
                    self.containers.mark_exited(container)
                    report["exited"].append(container.name)
                elif container.endpoints or container.sandbox_key:
                    errors = self.containers.release_network(container)
                    self.registry.save_container(container)
                    report["cleaned"].append(container.name + (f" ({errors.errors})" if errors else ""))
            report["repaired"] = self.repair()
        for container in list(self.registry.containers.values()):
            if container.state.status == "running" and not self.containers.monitor.watch(
                container.id, container.state.shim_pid
            ):
                self.containers._on_shim_exit(container.id)
        return report

    def repair(self) -> list[str]:
        """Makes missing bridges, veths and rules again, from the ledger. Idempotent."""
        repaired: list[str] = []
        with self.ctx.lock:
            for network in self.registry.networks.values():
                if network.bridge:
                    if not links.link_exists(network.bridge):
                        repaired.append(f"bridge {network.bridge}")
                    self.ctx.bridge.create(network)
            for container in self.registry.containers.values():
                if container.state.status != "running":
                    continue
                for endpoint in container.endpoints.values():
                    network = self.registry.networks.get(endpoint.network_id)
                    if network is None or network.bridge is None:
                        continue
                    if links.ensure_master(endpoint.host_veth, network.bridge):
                        continue
                    if container.sandbox_key and os.path.exists(container.sandbox_key):
                        # Both ends went together; the addresses come back from the ledger.
                        netns.run_in(container.sandbox_key, _delete_if_present, endpoint.ifname)
                        first = next(iter(container.endpoints)) == endpoint.network_id
                        self.ctx.bridge.join(network, endpoint, container.sandbox_key, first)
                        repaired.append(f"veth {endpoint.host_veth} of {container.name}")
            self.ctx.firewall.rebuild(self.registry)
        return repaired


def _delete_if_present(ifname: str) -> None:
    if links.link_exists(ifname):
        links.delete_link(ifname)
