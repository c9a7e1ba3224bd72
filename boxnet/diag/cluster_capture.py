"""Capture across a swarm: `boxnet capture service:web` captures every task of the service on every node into
one pcapng, one interface per task (named after its container), on one timeline; `--underlay` adds each node's
underlay interface, with only what carries overlays on it (VXLAN, and WireGuard for encrypted networks).

The manager asked runs the capture of its own tasks itself and asks each other node, over the node port
(cluster/node_server.py: the swarm's certificates, managers only), to capture its tasks and stream the pcapng
back; capture/merge.py puts the streams together. A node's capture stops when the manager asks it to (a second
request, by the capture's id), so that its last packets and its counters still come.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boxnet.capture.merge import Input, Merge
from boxnet.capture.session import SNAPLEN, Capture, CapturePoint
from boxnet.cluster import keys
from boxnet.cluster.node_server import Reply, open_stream
from boxnet.diag.capture_targets import CaptureTargets
from boxnet.errors import BoxnetError, InvalidArgument, NotFound, Unavailable
from boxnet.kernel import vxlan, wireguard
from boxnet.model.service import TASK_LABEL
from boxnet.store.etcd import Credentials

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

ROUTE = "/captures/"  # GET /captures/<id>?tasks=...: the stream; POST /captures/<id>/stop
PCAPNG = "application/x-pcapng"
INTERFACES_HEADER = "X-Boxnet-Interfaces"
UNDERLAY_FILTER = f"udp port {vxlan.VXLAN_PORT} or udp port {wireguard.PORT}"
CAPTURE_ID_LENGTH = 16


@dataclass(frozen=True)
class Settings:
    """What every node's part of one capture is asked for."""

    bpf: str = ""
    interface: str = ""
    snaplen: int = SNAPLEN
    count: int = 0
    duration: float = 0
    underlay: bool = False

    def query(self) -> dict[str, str]:
        return {"filter": self.bpf, "interface": self.interface, "snaplen": str(self.snaplen),
                "count": str(self.count), "duration": str(self.duration),
                "underlay": "1" if self.underlay else ""}  # fmt: skip

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Settings:
        try:
            return cls(query.get("filter", ""), query.get("interface", ""), int(query.get("snaplen") or SNAPLEN),
                       int(query.get("count") or 0), float(query.get("duration") or 0),
                       query.get("underlay") == "1")  # fmt: skip
        except ValueError as exc:
            raise InvalidArgument(f"bad capture settings: {exc}") from None


class NodeCaptures:
    """This node's part: its tasks' containers (and its underlay) captured for a manager that asked."""

    def __init__(self, engine: Engine, address: str, hostname: str) -> None:
        self.engine, self.address, self.hostname = engine, address, hostname
        self.running: dict[str, Capture] = {}
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], Any]:
        return {("GET", ROUTE): self.serve, ("POST", ROUTE): self.stop}

    def points(self, task_ids: list[str], settings: Settings) -> list[CapturePoint]:
        """The capture points of these tasks' containers here, and of this node's underlay if asked."""
        targets = CaptureTargets(self.engine.view)
        points = []
        with self.engine.view.lock:
            by_task = {c.labels.get(TASK_LABEL): c for c in self.engine.view.containers.values()
                       if c.state.status == "running"}  # fmt: skip
            for task_id in task_ids:
                container = by_task.get(task_id)
                if container is None:
                    raise NotFound(f"task {task_id} has no running container on {self.hostname}")
                points.append(targets.container_point(container, settings.interface))
        if settings.underlay:
            points.append(self.underlay_point())
        return points

    def underlay_point(self) -> CapturePoint:
        device = vxlan.underlay_device(self.address)
        if device is None:
            raise Unavailable(f"{self.hostname} has no interface with its underlay address {self.address}")
        return CapturePoint(f"{self.hostname}:{device}", f"the underlay of {self.hostname} ({self.address} on "
                            f"{device}): VXLAN and WireGuard", None, device, UNDERLAY_FILTER)  # fmt: skip

    def serve(self, rest: str, query: dict[str, str]) -> Reply:
        capture_id = rest.strip("/")
        if len(capture_id) != CAPTURE_ID_LENGTH * 2 or not capture_id.isalnum():
            raise InvalidArgument(f"bad capture id {capture_id!r}")
        settings = Settings.from_query(query)
        task_ids = [t for t in query.get("tasks", "").split(",") if t]
        capture = Capture(self.points(task_ids, settings), settings.bpf, settings.count, settings.duration,
                          settings.snaplen)  # fmt: skip
        capture.start()
        with self._lock:
            self.running[capture_id] = capture

        def write_body(write: Any, sock: Any) -> None:
            threading.Thread(target=_stop_when_gone, args=(sock, capture), daemon=True).start()
            try:
                capture.run(write)
            finally:
                capture.stopping.set()
                with self._lock:
                    self.running.pop(capture_id, None)

        return Reply(PCAPNG, write_body, {INTERFACES_HEADER: str(len(capture.points))})

    def stop(self, rest: str, query: dict[str, str]) -> Any:
        capture_id, _, what = rest.strip("/").partition("/")
        if what != "stop":
            raise NotFound(f"no such path {ROUTE}{rest}")
        with self._lock:
            capture = self.running.get(capture_id)
        if capture is not None:
            capture.stopping.set()
        yield {"stopped": capture is not None}


def _stop_when_gone(sock: Any, capture: Capture) -> None:
    """Ends a node's capture when the manager that asked for it goes away (dies, or drops the connection):
    a capture that sees no packet would otherwise never write, and never learn. The socket is polled, not
    read (a read here would race the TLS writes of the capture's thread); the manager sends nothing after
    its request, so anything readable, or a hang-up, means it is done."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while not capture.stopping.is_set():
        if poller.poll(500):
            capture.stopping.set()
            return


class _Local:
    """The manager's own part, run on a thread into a pipe, as another node's arrives."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.read_fd, self.write_fd = os.pipe()
        self.begun = False

    def begin(self) -> None:
        self.begun = True

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.write_fd, view) :]

        def run() -> None:
            try:
                with contextlib.suppress(OSError):
                    self.capture.run(write)
            finally:
                os.close(self.write_fd)

        threading.Thread(target=run, name="capture-local", daemon=True).start()

    def input(self, name: str) -> Input:
        return Input(name, self.read_fd, len(self.capture.points), self.capture.stopping.set)

    def abort(self) -> None:
        if self.begun:
            self.capture.stopping.set()
            return
        self.capture.abort()
        os.close(self.write_fd)


class _Remote:
    """Another node's part: its answer relayed from the TLS connection into a pipe, which the merge reads."""

    def __init__(self, address: str, hostname: str, credentials: Credentials, capture_id: str, tasks: list[str],
                 settings: Settings) -> None:  # fmt: skip
        self.address, self.hostname, self.credentials, self.capture_id = address, hostname, credentials, capture_id
        query = settings.query() | {"tasks": ",".join(tasks)}
        self.connection, self.response = open_stream(address, credentials, f"{ROUTE}{capture_id}", query,
                                                     timeout=None)  # fmt: skip
        try:
            self.interfaces = int(self.response.getheader(INTERFACES_HEADER) or "")
        except ValueError:
            self.connection.close()
            raise Unavailable(f"{hostname} answered the capture without saying what it captures") from None
        self.read_fd, self.write_fd = os.pipe()
        self.begun = False

    def begin(self) -> None:
        self.begun = True
        threading.Thread(target=self._relay, name=f"capture-{self.hostname}", daemon=True).start()

    def _relay(self) -> None:
        try:
            while chunk := self.response.read1(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.write_fd, view) :]
        except OSError:
            pass  # the merge has ended, or the node went away: either way this stream is over
        finally:
            os.close(self.write_fd)
            self.connection.close()

    def stop(self) -> None:
        """Asks the node to end its capture; a node that does not answer is cut off."""
        try:
            connection, response = open_stream(self.address, self.credentials, f"{ROUTE}{self.capture_id}/stop",
                                               {}, timeout=5, method="POST")  # fmt: skip
            response.read()
            connection.close()
        except BoxnetError:
            with contextlib.suppress(OSError):
                if self.connection.sock is not None:
                    self.connection.sock.shutdown(socket.SHUT_RDWR)

    def input(self) -> Input:
        return Input(self.hostname, self.read_fd, self.interfaces, self.stop)

    def abort(self) -> None:
        if not self.begun:
            os.close(self.write_fd)
            self.connection.close()
            return
        with contextlib.suppress(OSError):
            if self.connection.sock is not None:
                self.connection.sock.shutdown(socket.SHUT_RDWR)


class ClusterCapture:
    """What the API runs for a capture naming a service: the same stop event, run() and abort() as a capture
    on one node (api/streams.py drives either)."""

    def __init__(self, engine: Engine, services: list[str], local_points: list[CapturePoint],
                 settings: Settings) -> None:  # fmt: skip
        runtime = engine.services_runtime
        if runtime is None:
            raise Unavailable("this node is not in a swarm: capturing a service needs one")
        self.engine, self.settings = engine, settings
        self.node_id = runtime.logs.node_id
        self.credentials = runtime.logs.credentials
        self.node_captures = runtime.captures
        self.by_node = self._tasks_by_node(services)
        self.local_points = local_points
        self._locals: list[_Local] = []
        self._remotes: list[_Remote] = []
        self.merge: Merge | None = None
        self.stopping = threading.Event()

    def _tasks_by_node(self, services: list[str]) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for ref in services:
            record = self.engine.service(ref)
            running = [task for task, status in self.engine.tasks()
                       if task["service_id"] == record.id and status.get("state") == "running"]  # fmt: skip
            if not running:
                raise NotFound(f"service {record.spec.name} has no running task to capture")
            for task in sorted(running, key=lambda t: (t["slot"] or 0, t["node_id"])):
                by_node.setdefault(task["node_id"], []).append(task["id"])
        return by_node

    def _node(self, node_id: str) -> tuple[str, str]:
        entry = self.engine.ctx.require_manager().store.get(keys.node(node_id))
        if entry is None:
            raise Unavailable(f"node {node_id} has tasks to capture but is not in the swarm's store")
        record = json.loads(entry.value)
        return record.get("addr", ""), record.get("hostname", node_id)

    def start(self) -> None:
        """Starts every node's part; any one refusing (its reason named) stops them all before a byte is sent."""
        capture_id = secrets.token_hex(CAPTURE_ID_LENGTH)
        inputs = []
        try:
            local = list(self.local_points)
            if self.node_id in self.by_node:
                local = self.node_captures.points(self.by_node[self.node_id], self.settings) + local
            elif self.settings.underlay:
                local.append(self.node_captures.underlay_point())
            if local:
                capture = Capture(local, self.settings.bpf, self.settings.count, self.settings.duration,
                                  self.settings.snaplen)  # fmt: skip
                capture.start()
                part = _Local(capture)  # made after start: a capture that did not start has stopped itself
                self._locals.append(part)
                inputs.append(part.input(self.node_captures.hostname))
            remote_nodes = [n for n in self.by_node if n != self.node_id]
            if remote_nodes and self.credentials is None:
                raise Unavailable("tasks on other nodes are captured over the swarm's own certificates, which a "
                                  "swarm on --cluster-store does not have: capture them on their nodes")  # fmt: skip
            for node_id in remote_nodes:
                address, hostname = self._node(node_id)
                assert self.credentials is not None
                remote = _Remote(address, hostname, self.credentials, capture_id, self.by_node[node_id],
                                 self.settings)  # fmt: skip
                self._remotes.append(remote)
                inputs.append(remote.input())
            for part in [*self._locals, *self._remotes]:
                part.begin()
            self.merge = Merge(inputs, self.settings.count, self.settings.duration)
            self.merge.stopping = self.stopping
            self.merge.start()
        except BaseException:
            self.abort()
            raise

    def run(self, write: Any) -> None:
        assert self.merge is not None
        try:
            self.merge.run(write)
        finally:
            self._close_pipes()

    def abort(self) -> None:
        for part in [*self._locals, *self._remotes]:
            part.abort()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for part in [*self._locals, *self._remotes]:
            with contextlib.suppress(OSError):
                os.close(part.read_fd)
        self._locals, self._remotes = [], []
