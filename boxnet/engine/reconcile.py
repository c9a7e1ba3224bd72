"""Bringing the kernel back in line with the ledger: at start-up (live restore) and on demand.

Running containers whose shim is alive are adopted; the ones that died while the daemon was away are marked
exited and their network released; what a crash left half-made is undone; missing bridges, veths and rules
are made again. Networks removed by the user stay removed: only what the ledger records comes back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from boxnet import paths
from boxnet.drivers import registry as drivers
from boxnet.engine.containers import ContainerService
from boxnet.engine.context import EngineContext
from boxnet.engine.networks import NetworkService
from boxnet.engine.restarts import RAN_LONG_ENOUGH
from boxnet.kernel import links, netns
from boxnet.kernel.port_reservations import PortInUse
from boxnet.model.container import Container, ContainerState
from boxnet.runtime.launcher import read_shim_record
from boxnet.runtime.procs import proc_start_time, wait_gone

log = logging.getLogger(__name__)


def shim_alive(container: Container) -> bool:
    state = container.state
    return bool(state.shim_pid) and proc_start_time(state.shim_pid) == state.shim_start_time


class Reconciler:
    def __init__(self, ctx: EngineContext, containers: ContainerService, networks: NetworkService) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.containers = containers
        self.networks = networks

    def at_startup(self) -> dict[str, list[str]]:
        """Adopts survivors, settles the dead and what a killed daemon left half-done, repairs the kernel,
        and starts what its restart policy brings back with the daemon. Returns what it did, for the log."""
        report: dict[str, list[str]] = {"adopted": [], "exited": [], "cleaned": [], "repaired": [],
                                        "interrupted": [], "removed": []}  # fmt: skip
        with self.ctx.lock:
            for container in list(self.registry.containers.values()):
                status = container.state.status
                if status == "running":
                    if shim_alive(container):
                        report["adopted"].append(container.name)
                        self._reserve_ports(container)
                        continue
                    self.containers.mark_exited(container)
                    report["exited"].append(container.name)
                elif status == "starting":
                    self._end_interrupted_start(container)
                    report["interrupted"].append(container.name)
                elif status == "removing":
                    self.containers.release(container)
                    self.containers.forget(container)
                    report["removed"].append(container.name)
                elif container.endpoints or container.sandbox_key or container.cgroups:
                    errors = self.containers.release(container)
                    self.registry.save_container(container)
                    report["cleaned"].append(container.name + (f" ({errors.errors})" if errors else ""))
            self._finish_network_removals(report)
            report["repaired"] = self.repair()
            from boxnet.diag.trace import end_recorded_traces  # the tools' module: only its leftovers here

            ended = end_recorded_traces(paths.trace_records(self.ctx.config.root))
            report["cleaned"] += [f"trace table {table}" for table in ended]
        for container in list(self.registry.containers.values()):
            if container.state.status == "running" and not self.containers.monitor.watch(
                container.id, container.state.shim_pid
            ):
                self.containers._on_shim_exit(container.id)
            elif container.state.status == "exited" and _starts_with_the_daemon(container):
                self.containers.restarts.schedule(container.id, 0, RAN_LONG_ENOUGH, with_the_daemon=True)
        return report

    def _reserve_ports(self, container: Container) -> None:
        """The host ports of an adopted container, bound again; one a host process took meanwhile stays
        published (its container is running) and is named in the log."""
        endpoint = container.endpoints.get(container.port_network)
        for mapping in container.published_ports:
            try:
                self.ctx.reservations.hold(container.id, mapping.protocol, mapping.host_ip, mapping.host_port,
                                           bool(endpoint and endpoint.ipv6))  # fmt: skip
            except OSError as exc:
                log.warning("%s: host port %s/%d of %s is not held: %s", container.name, mapping.host_ip or "*",
                            mapping.host_port, mapping.protocol, exc)  # fmt: skip
            except PortInUse as exc:
                log.warning("%s: %s", container.name, exc.message)

    def _end_interrupted_start(self, container: Container) -> None:
        """A start the daemon died in the middle of: its shim (and with it the container, which dies with
        its shim) is killed by PID, checked by start time; what it made is released from the record."""
        shim = read_shim_record(self.ctx.config.container_dir(container.id))
        if shim and proc_start_time(shim["shim_pid"]) == shim["shim_start_time"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim["shim_pid"], signal.SIGKILL)
            wait_gone(shim["shim_pid"], shim["shim_start_time"])
        errors = self.containers.release(container)
        state = container.state
        state.status = "exited" if state.started_at != ContainerState().started_at else "created"
        state.pid = state.shim_pid = 0
        state.error = "the daemon stopped while starting it" + (f" ({'; '.join(errors.errors)})" if errors else "")
        self.registry.save_container(container)

    def _finish_network_removals(self, report: dict[str, list[str]]) -> None:
        for network in [n for n in self.registry.networks.values() if n.removing]:
            self.networks.finish_removal(network)
            report["removed"].append(f"network {network.name}")

    def repair(self) -> list[str]:
        """Makes missing bridges, veths and rules again, from the ledger. Idempotent."""
        repaired: list[str] = []
        with self.ctx.lock:
            for network in self.registry.networks.values():
                driver = drivers.of(network)
                repaired += driver.missing(network)
                driver.create(network)
            for container in self.registry.containers.values():
                if container.state.status != "running":
                    continue
                for endpoint in container.endpoints.values():
                    network = self.registry.networks.get(endpoint.network_id)
                    if network is None:
                        continue
                    driver = drivers.of(network)
                    if driver.endpoint_present(network, endpoint, container.sandbox_key):
                        continue
                    if container.sandbox_key and os.path.exists(container.sandbox_key):
                        # Half of it may be left; the addresses come back from the ledger.
                        driver.leave(network, endpoint, container.sandbox_key)
                        netns.run_in(container.sandbox_key, _delete_if_present, endpoint.ifname)
                        first = next(iter(container.endpoints)) == endpoint.network_id
                        driver.join(network, endpoint, container.sandbox_key, first)
                        repaired.append(f"{endpoint.ifname} of {container.name} ({network.driver})")
            self.ctx.firewall.rebuild(self.registry)
        return repaired


def _starts_with_the_daemon(container: Container) -> bool:
    """Docker's rule: `always` comes back with the daemon even if it was stopped by hand; `unless-stopped`
    unless it was."""
    policy = container.restart_policy.name
    return policy == "always" or (policy == "unless-stopped" and not container.state.stopped_by_user)


def _delete_if_present(ifname: str) -> None:
    if links.link_exists(ifname):
        links.delete_link(ifname)
