"""Services on one node while it is in a swarm: the leader's loop on managers, and on every node one loop
that runs the node's tasks (services/agent.py) and keeps service names and VIPs (services/endpoints.py)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from boxnet.errors import BoxnetError
from boxnet.services.agent import TaskAgent
from boxnet.services.endpoints import ServiceEndpoints
from boxnet.services.leader import Leader
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
        self.store = swarm.store
        self._thread = threading.Thread(target=self._run, name="services", daemon=True)

    def start(self) -> None:
        if self.leader is not None:
            self.leader.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            log.error("the services round did not end within 30 s of the daemon stopping")
        if self.leader is not None:
            self.leader.stop()

    def _run(self) -> None:
        while not self._stopping.wait(ROUND_SECONDS):
            try:
                state = ServicesState.read(self.store)
            except BoxnetError as exc:
                log.warning("services round: %s", exc.message)
                continue
            for part in (self.agent.reconcile, self.endpoints.reconcile):
                try:
                    part(state)
                except BoxnetError as exc:
                    log.warning("services round: %s", exc.message)
                except Exception:
                    log.exception("services round failed")
