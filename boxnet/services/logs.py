"""`service logs`: each task's log read where the task runs, this node's from its file and the others' over
the node port (cluster/node_server.py, managers only), each line tagged with Docker's details
(`com.docker.swarm.node.id=...,com.docker.swarm.service.id=...,com.docker.swarm.task.id=...`), from which
the docker CLI makes its `NAME.SLOT.ID@NODE | ` prefix."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boxnet.cluster.node_server import ask
from boxnet.cluster.nodes import node_address
from boxnet.engine import log_files
from boxnet.errors import InvalidArgument, NotFound, Unavailable
from boxnet.model.service import TASK_LABEL
from boxnet.store.cluster import ClusterStore
from boxnet.store.etcd import Credentials

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

ROUTE = "/tasks/"  # /tasks/<task id>/logs on the node port


def details(task: dict[str, Any]) -> str:
    """Docker's log details for a task's lines (keys and values query-escaped, as the CLI parses them)."""
    pairs = {"com.docker.swarm.node.id": task["node_id"], "com.docker.swarm.service.id": task["service_id"],
             "com.docker.swarm.task.id": task["id"]}  # fmt: skip
    return ",".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in pairs.items())


def epoch(stamp: str) -> float:
    """A log entry's RFC 3339 time (nanoseconds and all) as seconds since the epoch."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return seconds + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)


def parse_tail(raw: str) -> int | None:
    if raw in ("", "all"):
        return None
    if not raw.isdigit():
        raise InvalidArgument(f"invalid tail {raw!r}: a number of lines, or all")
    return int(raw)


class TaskLogs:
    def __init__(self, engine: Engine, store: ClusterStore, node_id: str, credentials: Credentials | None) -> None:
        """credentials: this node's swarm certificates, which the node port needs (none with --cluster-store:
        then only this node's tasks have logs here)."""
        self.engine, self.store, self.node_id, self.credentials = engine, store, node_id, credentials

    def serve(self, rest: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The node port's route: /tasks/<id>/logs?tail=N&follow=0|1, from this node's container of the task."""
        task_id, _, what = rest.partition("/")
        if what != "logs":
            raise NotFound(f"no such path {ROUTE}{rest}")
        return self.local(task_id, parse_tail(query.get("tail", "")), query.get("follow") == "1")

    def local(self, task_id: str, tail: int | None, keep_following: bool) -> Iterator[dict[str, Any]]:
        container = next((c for c in self.engine.view.containers.values() if c.labels.get(TASK_LABEL) == task_id),
                         None)  # fmt: skip
        if container is None:
            raise NotFound(f"task {task_id} has no container on this node")
        return log_files.entries(self.engine, container, tail, keep_following)

    def check_reachable(self, tasks: list[dict[str, Any]]) -> None:
        """Before a stream starts: logs of other nodes' tasks need the node port's certificates."""
        if self.credentials is None and any(t["node_id"] != self.node_id for t in tasks):
            raise Unavailable("logs of tasks on other nodes come over the swarm's own certificates, which a swarm "
                              "on --cluster-store does not have: read them on their nodes (boxnet logs)")  # fmt: skip

    def of(self, task: dict[str, Any], tail: int | None, keep_following: bool) -> Iterator[dict[str, Any]]:
        """One task's entries, wherever it runs."""
        if task["node_id"] == self.node_id:
            yield from self.local(task["id"], tail, keep_following)
            return
        address, _ = node_address(self.store, task["node_id"])
        if not address or self.credentials is None:
            return
        query = {"tail": "all" if tail is None else str(tail), "follow": "1" if keep_following else "0"}
        yield from ask(address, self.credentials, f"{ROUTE}{task['id']}/logs", query,
                       timeout=None if keep_following else 30)  # fmt: skip
