"""Services on one node while it is in a swarm: the leader's loop on managers, and on every node one loop
that runs the node's tasks (services/agent.py) and keeps service names and VIPs (services/endpoints.py)."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from typing import TYPE_CHECKING

from boxnet.cluster import keys
from boxnet.cluster.node_server import NodeServer
from boxnet.diag.cluster_capture import NodeCaptures
from boxnet.diag.cluster_view import serve_view
from boxnet.diag.node_view import ROUTE as VIEW_ROUTE
from boxnet.diag.remote_trace import ROUTE as TRACE_ROUTE
from boxnet.diag.remote_trace import serve_trace
from boxnet.errors import BoxnetError
from boxnet.services.agent import TaskAgent
from boxnet.services.endpoints import ServiceEndpoints
from boxnet.services.leader import Leader
from boxnet.services.logs import ROUTE, TaskLogs
from boxnet.services.mesh import IngressMesh
from boxnet.services.records import ServicesState

if TYPE_CHECKING:
    from boxnet.cluster.swarm import Swarm
    from boxnet.engine.controller import Engine

log = logging.getLogger(__name__)

ROUND_SECONDS = 0.25


class ServicesRuntime:
    def __init__(self, engine: Engine, swarm: Swarm) -> None:
        assert swarm.store is not None and swarm.liveness is not None
        liveness = swarm.liveness
        manager = swarm.state.role == "manager"
        self.leader = Leader(swarm.store, swarm.state.node_id, lambda: liveness.lease) if manager else None
        self._stopping = threading.Event()
        self.agent = TaskAgent(engine, swarm.store, swarm.state.node_id, self._stopping)
        self.endpoints = ServiceEndpoints(engine.ctx)
        self.mesh = IngressMesh(engine.ctx, swarm.state.node_id)
        # The node port needs the swarm's certificates: none with --cluster-store (then logs are local only).
        credentials = swarm.files.credentials() if swarm.external is None else None
        self.logs = TaskLogs(engine, swarm.store, swarm.state.node_id, credentials)
        self.address = swarm.state.addr
        self.captures = NodeCaptures(engine, self.address, socket.gethostname())
        self.node_server: NodeServer | None = None
        self.engine = engine
        self.store = swarm.store
        self._thread = threading.Thread(target=self._run, name="services", daemon=True)

    def _is_manager(self, node_id: str) -> bool:
        try:
            entry = self.store.get(keys.node(node_id))
            return entry is not None and json.loads(entry.value).get("role") == "manager"
        except BoxnetError:
            return False

    def start(self) -> None:
        if self.logs.credentials is not None:
            try:
                routes = {("GET", ROUTE): self.logs.serve, ("GET", VIEW_ROUTE): serve_view(self.engine),
                          ("GET", TRACE_ROUTE): serve_trace(self.engine), **self.captures.routes()}  # fmt: skip
                self.node_server = NodeServer(self.address, self.logs.credentials, self._is_manager, routes)
                self.node_server.start()
            except (OSError, ssl.SSLError) as exc:
                log.error("the node port is not served (no service logs from this node): %s", exc)
        if self.leader is not None:
            self.leader.start()
        self._thread.start()

    def quiesce(self) -> None:
        """No round after this returns (the node is about to leave: its tasks go)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def stop(self, leaving: bool = False) -> None:
        """The daemon stops (the data plane stays, as the containers do) or the node leaves (the mesh goes)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self._thread.is_alive():
            log.error("the services round did not end within 30 s of the daemon stopping")
        if self.leader is not None:
            self.leader.stop()
        self.captures.stop_all()  # their handler threads outlive the server's shutdown
        if self.node_server is not None:
            self.node_server.stop()
        if leaving:
            try:
                self.mesh.clear()
            except BoxnetError as exc:
                log.warning("removing the routing mesh: %s", exc.message)

    def _run(self) -> None:
        while not self._stopping.wait(ROUND_SECONDS):
            try:
                state = ServicesState.read(self.store)
            except BoxnetError as exc:
                log.warning("services round: %s", exc.message)
                continue
            for part in (self.agent.reconcile, self.endpoints.reconcile, self.mesh.reconcile):
                try:
                    part(state)
                except BoxnetError as exc:
                    log.warning("services round: %s", exc.message)
                except Exception:
                    log.exception("services round failed")
