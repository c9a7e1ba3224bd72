"""The routing mesh on this node: every port a service publishes is held here (no host process can take it,
and a container's `-p` on it is refused by name) and DNATed to the service's running tasks on the ingress
network, wherever they run (firewall/mesh_rules.py has the rules and why each is there)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from boxnet.errors import BoxnetError
from boxnet.firewall import mesh_rules
from boxnet.kernel import nft
from boxnet.model.network import Network
from boxnet.services.records import ServicesState

if TYPE_CHECKING:
    from boxnet.engine.context import EngineContext

log = logging.getLogger(__name__)


def mesh_ports(state: ServicesState, ingress_id: str, node_id: str) -> tuple[list[mesh_rules.MeshPort], list[str]]:
    """Each published port with the ingress addresses of its service's running tasks; and which of those
    addresses are on this node."""
    ports, local = [], []
    for service in state.services:
        if not service.spec.ports:
            continue
        backends = []
        for task_id, task in state.tasks.items():
            status = state.status.get(task_id, {})
            address = status.get("addresses", {}).get(ingress_id, "")
            if task["service_id"] == service.id and status.get("state") == "running" and address:
                backends.append(address)
                if task["node_id"] == node_id:
                    local.append(address)
        ports += [mesh_rules.MeshPort(p.protocol, p.published, p.target, tuple(backends))
                  for p in service.spec.ports if p.published]  # fmt: skip
    return ports, local


class IngressMesh:
    def __init__(self, ctx: EngineContext, node_id: str) -> None:
        self.ctx = ctx
        self.node_id = node_id
        self._applied: list[str] | None = None  # the commands of the table in place
        self._held: set[tuple[str, int]] = set()
        self._refused: set[tuple[str, int]] = set()  # named in the log once, tried again each round

    def _ingress(self) -> Network | None:
        return next((n for n in self.ctx.registry.networks.values() if n.ingress and n.bridge and not n.removing),
                    None)  # fmt: skip

    def reconcile(self, state: ServicesState) -> None:
        ingress = self._ingress()
        if ingress is None or ingress.bridge is None:
            self.clear()
            return
        ports, local = mesh_ports(state, ingress.id, self.node_id)
        self._hold({(p.protocol, p.published) for p in ports})
        commands = mesh_rules.full(ingress.bridge, ports, local)
        if commands != self._applied:
            nft.run(commands)
            self._applied = commands

    def _hold(self, wanted: set[tuple[str, int]]) -> None:
        reservations = self.ctx.reservations
        for protocol, port in self._held - wanted:
            reservations.release(f"mesh:{protocol}/{port}")
            self._held.discard((protocol, port))
        for protocol, port in wanted - self._held:
            try:
                reservations.hold(f"mesh:{protocol}/{port}", protocol, "", port)
                self._held.add((protocol, port))
                self._refused.discard((protocol, port))
            except BoxnetError as exc:  # a container or a host process had it first: the mesh still serves it
                if (protocol, port) not in self._refused:
                    log.warning("routing mesh port %d/%s is not held on this node: %s", port, protocol, exc.message)
                    self._refused.add((protocol, port))

    def clear(self) -> None:
        """No mesh on this node (it left the swarm, or the ingress network is gone)."""
        self._hold(set())
        if self._applied is not None:
            nft.run(mesh_rules.remove())
            self._applied = None
