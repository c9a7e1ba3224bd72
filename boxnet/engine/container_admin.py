"""What changes a container without starting or ending it: pause and unpause (the freezer), rename, and
the prune of stopped containers."""

from __future__ import annotations

import logging
import os

from boxnet.drivers import registry as drivers
from boxnet.engine.containers import ContainerService, seconds_of
from boxnet.engine.context import EngineContext
from boxnet.errors import Conflict, InvalidArgument
from boxnet.kernel import netns
from boxnet.model.container import Container, check_container_name
from boxnet.model.names import labels_match
from boxnet.model.times import point_in_time
from boxnet.runtime import cgroups

log = logging.getLogger(__name__)


class ContainerAdmin:
    def __init__(self, ctx: EngineContext, containers: ContainerService) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.containers = containers

    # ---- pause -------------------------------------------------------------------------------------
    def _freezer(self, container: Container) -> str:
        freezer = self.ctx.cgroups.path_of(container.cgroups, "freezer")
        if not freezer:
            raise Conflict(f"cannot pause {container.name}: it has no freezer cgroup (this machine has no cgroup v1 "
                           "freezer mounted)")  # fmt: skip
        return freezer

    def pause(self, ref: str) -> None:
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status != "running":
                raise Conflict(f"Container {container.id} is not running")
            if container.state.paused:
                raise Conflict(f"Container {container.id} is already paused")
            freezer = self._freezer(container)
            # Recorded first: a daemon that dies meanwhile finds it paused, and unpause thaws it.
            container.state.paused = True
            self.registry.save_container(container)
            try:
                cgroups.set_frozen(freezer, True)
            except OSError as exc:
                cgroups.set_frozen(freezer, False)
                container.state.paused = False
                self.registry.save_container(container)
                raise Conflict(f"cannot pause {container.name}: {exc.strerror or exc}") from None
        self.containers.event(container, "pause")

    def unpause(self, ref: str) -> None:
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if not container.state.paused:
                raise Conflict(f"Container {container.id} is not paused")
            cgroups.set_frozen(self._freezer(container), False)
            container.state.paused = False
            self.registry.save_container(container)
        self.containers.event(container, "unpause")

    # ---- rename ------------------------------------------------------------------------------------
    def rename(self, ref: str, new_name: str) -> None:
        """Docker's rename: the name changes at once in the DNS of every network it is on (and on the other
        nodes of a swarm), and `ip netns` knows it by the new one."""
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        new_name = check_container_name(new_name)
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            old_name = container.name
            if new_name == old_name:
                raise InvalidArgument("Renaming a container with the same name as its current name")
            existing = self.registry.container_by_name(new_name)
            if existing is not None:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                               f'"{existing.id}". You have to remove (or rename) that container to be able to '
                               "reuse that name.")  # fmt: skip
            container.name = new_name
            self.registry.save_container(container)
            self._rename_endpoints(container)
            if container.netns_name:
                self._rename_netns(container)
        self.containers.event(container, "rename", oldName="/" + old_name)

    def _rename_endpoints(self, container: Container) -> None:
        for network_id, endpoint in container.endpoints.items():
            network = self.registry.networks.get(network_id)
            if network is None:
                continue
            self.ctx.dns.endpoint_removed(container, network_id)
            self.ctx.dns.endpoint_added(container, network, endpoint)
            cluster = self.ctx.cluster
            if cluster is not None and drivers.of(network).capabilities.scope == "global":
                cluster.publish(container, network, endpoint)  # the other nodes' DNS learn the new name

    def _rename_netns(self, container: Container) -> None:
        registry_dir = self.ctx.config.netns_registry
        netns.unregister(container.netns_name, container.sandbox_key, registry_dir)
        container.netns_name = container.name
        self.registry.save_container(container)  # the name before the link
        if not netns.register(container.name, container.sandbox_key, registry_dir):
            container.netns_name = ""
            self.registry.save_container(container)
            log.warning("/run/netns/%s exists and is not boxnet's: not registering", container.name)

    # ---- prune -------------------------------------------------------------------------------------
    def prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """Removes every stopped container (until=, label= and label!= as Docker's); what their writable
        layers held is the space reclaimed."""
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter {key!r}: containers are pruned by until, label, label!")
        until = min((point_in_time(v) for v in filters.get("until", [])), default=None)
        removed, reclaimed = [], 0
        with self.ctx.lock:
            candidates = [c for c in self.registry.containers.values()
                          if c.state.status in ("created", "exited") and self._pruned(c, filters, until)]  # fmt: skip
        for container in candidates:
            size = writable_size(self.ctx.config.container_dir(container.id))
            try:
                self.containers.remove(container.id)
            except Conflict:
                continue  # started (or joined) meanwhile
            removed.append(container.id)
            reclaimed += size
        return removed, reclaimed

    def _pruned(self, container: Container, filters: dict[str, list[str]], until: float | None) -> bool:
        if until is not None and seconds_of(container.created) >= until:
            return False
        if not labels_match(container.labels, filters.get("label", [])):
            return False
        return not any(labels_match(container.labels, [wanted]) for wanted in filters.get("label!", []))


def writable_size(state_dir: str) -> int:
    """What a container's own upper directory holds (an image container's changes; 0 for the others)."""
    total = 0
    for directory, _, files in os.walk(os.path.join(state_dir, "fs", "upper")):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total
