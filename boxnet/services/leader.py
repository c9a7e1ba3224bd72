"""The leader's loop: every manager campaigns; the one that leads turns services into desired tasks.

Each round it reads the services, the desired tasks (`tasks/`), what the nodes report (`status/`) and the
nodes, asks the scheduler for a plan per service, and writes the plan in one transaction guarded by its
election: a deposed leader's round fails whole. Tasks that ended (failed, or their service gone) are removed
and their slots placed again. The leader writes only `tasks/`; the nodes write only `status/`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from boxnet.cluster import keys, pki
from boxnet.cluster.election import Election
from boxnet.cluster.nodes import NodeDirectory
from boxnet.engine.encryption import ROTATE_EVERY, bump_epoch
from boxnet.errors import BoxnetError
from boxnet.model.service import NodeFacts, task_spec
from boxnet.services.records import ServicesState, now, task_record
from boxnet.services.scheduler import UNASSIGNED, NodeView, TaskView, plan, why_pending
from boxnet.store.cluster import ClusterStore, Delete, Operation, Put

log = logging.getLogger(__name__)

ROUND_SECONDS = 0.25
MAX_OPERATIONS = 100  # etcd takes at most 128 in one transaction


ROTATION_CHECK_ROUNDS = 40  # about every 10 s, the leader asks whether the nodes' keys are due for rotation
RESTART_DELAY = 5.0  # seconds a failed or rejected task waits before its slot is placed again (Docker's)


def _age(observed: dict) -> float:
    try:
        return time.time() - datetime.fromisoformat(observed["timestamp"].replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return RESTART_DELAY


def _view(task_id: str, task: dict, observed: dict | None) -> TaskView:
    state = "pending" if task["node_id"] == UNASSIGNED else _state(observed)
    running_for = _age(observed) if observed and state == "running" else 0.0
    return TaskView(task_id, task["slot"], task["node_id"], task["spec_version"], state, running_for)


def _state(observed: dict | None) -> str:
    """The task's state for the scheduler: a task that failed a moment ago still holds its slot, so that a
    task failing at once (a wrong image) is retried every few seconds, not every round."""
    if observed is None:
        return "assigned"
    state = observed.get("state", "assigned")
    if state in ("failed", "rejected") and _age(observed) < RESTART_DELAY:
        return "starting"
    return state


class Leader:
    def __init__(self, store: ClusterStore, node_id: str, lease: Callable[[], int]) -> None:
        self.store = store
        self.node_id = node_id
        self.lease = lease
        self.election = Election(store, node_id)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swarm leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(BoxnetError):  # the store is gone: the lease ends the term anyway
            self.election.resign()

    def _run(self) -> None:
        while not self._stopping.wait(ROUND_SECONDS):
            try:
                if self.election.campaign(self.lease()):
                    self.reconcile()
                    if self.rounds % ROTATION_CHECK_ROUNDS == 1:  # scheduled WireGuard key rotation
                        bump_epoch(self.store, [self.election.guard()], ROTATE_EVERY)
            except BoxnetError as exc:
                log.warning("leader round: %s", exc.message)
            except Exception:
                log.exception("leader round failed")

    def reconcile(self) -> None:
        state = ServicesState.read(self.store)
        services, tasks, status = {r.id: r for r in state.services}, state.tasks, state.status
        nodes = [NodeView(NodeFacts(s.node.id, s.node.hostname, s.node.role, s.node.labels), s.alive,
                          s.node.availability) for s in NodeDirectory(self.store, self.node_id).list()]  # fmt: skip
        operations: list[Operation] = []
        for task_id, task in tasks.items():
            if task["service_id"] not in services:
                operations.append(Delete(keys.TASKS + task_id))
        load = Counter(t["node_id"] for t in tasks.values())
        for service in services.values():
            views = [_view(task_id, t, status.get(task_id)) for task_id, t in tasks.items()
                     if t["service_id"] == service.id]  # fmt: skip
            spec = service.spec
            if service.rolling_back:
                parallelism, wait = spec.rollback_parallelism, spec.rollback_delay + spec.rollback_monitor
            else:
                parallelism, wait = spec.update_parallelism, spec.update_delay + spec.update_monitor
            result = plan(spec, service.task_version, nodes, views, parallelism, load, wait)
            ended = [v.id for v in views if not v.live and v.id not in result.stop]
            for task_id in [*result.stop, *ended]:
                operations.append(Delete(keys.TASKS + task_id))
            for task_id, node_id in result.assign:
                operations.append(Put(keys.TASKS + task_id, task_record({**tasks[task_id], "node_id": node_id,
                                                                           "pending": ""})))  # fmt: skip
            reason = why_pending(spec, nodes) if result.unplaceable else ""
            for slot, node_id in result.create:
                task_id = pki.new_node_id()
                operations.append(Put(keys.TASKS + task_id, task_record({
                    "id": task_id, "service_id": service.id, "service_name": spec.name, "slot": slot,
                    "node_id": node_id, "spec_version": service.task_version, "created": now(),
                    "pending": reason if node_id == UNASSIGNED else "", "spec": task_spec(spec),
                })))  # fmt: skip
        self.rounds += 1
        for start in range(0, len(operations), MAX_OPERATIONS):
            if not self.store.txn([self.election.guard()], operations[start:start + MAX_OPERATIONS]):
                log.warning("no longer the leader: the round's writes were refused")
                self.election.term = None
                return
