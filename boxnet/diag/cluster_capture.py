"""Capture across a swarm: `boxnet capture service:web` captures every task of the service on every node into
one pcapng, one interface per task (named after its container), on one timeline; `--underlay` adds each node's
underlay interface, with only what carries overlays on it (VXLAN, and WireGuard for encrypted networks).

The manager asked starts tcpdumps for its own tasks and asks each other node, over the node port
(cluster/node_server.py: the swarm's certificates, managers only), to start tcpdumps for its tasks and stream
what they write (capture/relay.py). All of them are sources of one Capture on the manager, which parses the
packets once and merges them on one timeline. A node's tcpdumps stop when the manager asks (a second request,
by the capture's id), so that their last packets and their counters still come, or when the manager's
connection goes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boxnet.capture import relay
from boxnet.capture.filters import check_filter, check_snaplen
from boxnet.capture.relay import RelayedSource
from boxnet.capture.session import READ_CHUNK, SNAPLEN, Capture, CapturePoint
from boxnet.cluster.node_server import Reply, open_stream
from boxnet.cluster.nodes import node_address
from boxnet.diag.capture_targets import CaptureTargets
from boxnet.errors import BoxnetError, Conflict, InvalidArgument, NotFound, Unavailable
from boxnet.kernel import vxlan, wireguard
from boxnet.kernel.readiness import readable
from boxnet.model.service import TASK_LABEL
from boxnet.store.etcd import Credentials

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

ROUTE = "/captures/"  # GET /captures/<id>?tasks=...: the stream; POST /captures/<id>/stop
FRAMES = "application/x-boxnet-pcap-frames"
REORDER_SECONDS = 0.5  # more than on one node: another node's packets come later than this one's
STOP_GRACE_SECONDS = 5
START_SECONDS = 10
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
            settings = cls(query.get("filter", ""), query.get("interface", ""), int(query.get("snaplen") or SNAPLEN),
                           int(query.get("count") or 0), float(query.get("duration") or 0),
                           query.get("underlay") == "1")  # fmt: skip
        except ValueError as exc:
            raise InvalidArgument(f"bad capture settings: {exc}") from None
        check_filter(settings.bpf)
        check_snaplen(settings.snaplen)
        if settings.interface and not re.fullmatch(r"[A-Za-z0-9_.@][A-Za-z0-9_.@-]{0,14}", settings.interface):
            raise InvalidArgument(f"invalid interface name {settings.interface!r}")
        return settings


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
        if len(points) > relay.MAX_SOURCES:
            raise InvalidArgument(f"{len(points)} capture points on {self.hostname}: at most {relay.MAX_SOURCES}")
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
        capture = Capture(self.points(task_ids, settings), settings.bpf, snaplen=settings.snaplen)
        with self._lock:  # taken before anything starts: one capture per id
            if capture_id in self.running:
                raise Conflict(f"capture {capture_id} is already running here")
            self.running[capture_id] = capture
        try:
            capture.start()
        except BaseException:
            self._forget(capture_id)
            raise

        def write_body(write: Any, sock: Any) -> None:
            threading.Thread(target=_stop_when_gone, args=(sock, capture), daemon=True).start()
            _stream(capture, settings.bpf, write)

        def cleanup() -> None:
            """Whatever happened (the manager gone before the first byte): the tcpdumps end, by PID."""
            capture.stopping.set()
            capture.abort()
            self._forget(capture_id)

        return Reply(FRAMES, write_body, cleanup=cleanup)

    def _forget(self, capture_id: str) -> None:
        with self._lock:
            self.running.pop(capture_id, None)

    def stop(self, rest: str, query: dict[str, str]) -> Any:
        capture_id, _, what = rest.strip("/").partition("/")
        if what != "stop":
            raise NotFound(f"no such path {ROUTE}{rest}")
        with self._lock:
            capture = self.running.get(capture_id)
        if capture is not None:
            capture.stopping.set()
        yield {"stopped": capture is not None}

    def stop_all(self) -> None:
        """The daemon stops: every capture a manager asked for ends (their streams end with their counters)."""
        with self._lock:
            captures = list(self.running.values())
        for capture in captures:
            capture.stopping.set()


def _stream(capture: Capture, bpf: str, write: Any) -> None:
    """A node's part: what each tcpdump writes, in frames, as it comes; then their counters."""
    sources = capture.sources
    live = {source.fd: source for source in sources}
    grace: float | None = None
    try:
        write(relay.describe(sources, bpf))
        for source in sources:  # what came with the header
            if source.buffer:
                write(relay.frame(relay.DATA, source.index, bytes(source.buffer)))
                source.buffer.clear()
        while live:
            if grace is None and capture.stopping.is_set():
                for source in sources:
                    source.interrupt()
                grace = time.monotonic() + STOP_GRACE_SECONDS
            if grace is not None and time.monotonic() > grace:
                break
            for fd in readable(live, 0.2):
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    del live[fd]
                    continue
                write(relay.frame(relay.DATA, live[fd].index, chunk))
    finally:
        for source in sources:
            source.interrupt()
        for source in sources:
            source.finish()  # the counters (what is left unread after a grace that ran out is lost)
    write(relay.counters(sources))


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


class _Remote:
    """Another node's part: its tcpdumps' frames read from the TLS connection, each one's pcap handed to its
    RelayedSource, which the manager's Capture reads with its local tcpdumps."""

    def __init__(self, address: str, hostname: str, credentials: Credentials, capture_id: str, tasks: list[str],
                 settings: Settings) -> None:  # fmt: skip
        self.address, self.hostname, self.credentials, self.capture_id = address, hostname, credentials, capture_id
        query = settings.query() | {"tasks": ",".join(tasks)}
        # A timeout while the node starts its part (a node that does not answer must not hang the request);
        # none once it streams (a quiet capture is not a dead one: the stop request, or a shutdown, ends it).
        self.connection, self.response = open_stream(address, credentials, f"{ROUTE}{capture_id}", query,
                                                     timeout=START_SECONDS)  # fmt: skip
        self.frames = relay.FrameReader()
        self.pending: list[tuple[int, int, bytes]] = []
        self._stopped = False
        try:
            info = self._first_frame()
            if self.connection.sock is not None:
                self.connection.sock.settimeout(None)
        except (OSError, ValueError) as exc:
            self.connection.close()
            raise Unavailable(f"{hostname} did not start its capture: {exc}") from None
        except BaseException:
            self.connection.close()
            raise
        self.sources = [RelayedSource.from_info(item, self.stop) for item in info]
        self.begun = False
        self._thread: threading.Thread | None = None

    def _first_frame(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + STOP_GRACE_SECONDS * 2
        while not self.pending:
            if time.monotonic() > deadline:
                raise Unavailable(f"{self.hostname} did not start its capture")
            chunk = self.response.read1(READ_CHUNK)
            if not chunk:
                raise Unavailable(f"{self.hostname} ended its capture before it started")
            self.pending += self.frames.feed(chunk)
        kind, _, payload = self.pending.pop(0)
        if kind != relay.INFO:
            raise Unavailable(f"{self.hostname} answered the capture without saying what it captures")
        return json.loads(payload)

    def begin(self) -> None:
        self.begun = True
        self._thread = threading.Thread(target=self._relay, name=f"capture-{self.hostname}", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        stats = None
        try:
            frames, self.pending = self.pending, []
            while True:
                for kind, index, payload in frames:
                    if kind == relay.DATA and index < len(self.sources):
                        self.sources[index].deliver(payload)
                    elif kind == relay.STATS:
                        stats = json.loads(payload)
                chunk = self.response.read1(READ_CHUNK)
                if not chunk:
                    break
                frames = self.frames.feed(chunk)
        except (OSError, ValueError):
            pass  # the capture has ended here, or the node went away, or sent garbage: this stream is over
        finally:
            for index, source in enumerate(self.sources):
                source.end(stats[index] if isinstance(stats, list) and index < len(stats) else None)
            self.connection.close()

    def stop(self) -> None:
        """Asks the node to end its capture (once, for all its tcpdumps); a node that does not answer is cut
        off. Never raises: it runs in the Capture's cleanup, which must reach every source."""
        if self._stopped:
            return
        self._stopped = True
        connection = None
        try:
            connection, response = open_stream(self.address, self.credentials, f"{ROUTE}{self.capture_id}/stop",
                                               {}, timeout=5, method="POST")  # fmt: skip
            response.read()
        except (BoxnetError, OSError, http.client.HTTPException):
            self.abort()
        finally:
            if connection is not None:
                connection.close()

    def abort(self) -> None:
        """Cuts the node's stream (its relay ends, and the node's tcpdumps with the connection)."""
        if not self.begun:
            for source in self.sources:
                source.end(None)
            self.connection.close()
            return
        with contextlib.suppress(OSError):
            if self.connection.sock is not None:
                self.connection.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """After the Capture: the relay is made to end (and waited for), then the sources' descriptors go."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(STOP_GRACE_SECONDS)
            if self._thread.is_alive():
                self.abort()
                self._thread.join(STOP_GRACE_SECONDS)
        for source in self.sources:
            source.close()


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
        self._remotes: list[_Remote] = []
        self.capture: Capture | None = None
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
        address, hostname = node_address(self.engine.ctx.require_manager().store, node_id)
        if not address:
            raise Unavailable(f"node {node_id} has tasks to capture but no address in the swarm's store")
        return address, hostname

    def start(self) -> None:
        """Starts every node's part; any one refusing (its reason named) stops them all before a byte is sent."""
        capture_id = secrets.token_hex(CAPTURE_ID_LENGTH)
        try:
            local = list(self.local_points)
            if self.node_id in self.by_node:
                local = self.node_captures.points(self.by_node[self.node_id], self.settings) + local
            elif self.settings.underlay:
                local.append(self.node_captures.underlay_point())
            remote_nodes = [n for n in self.by_node if n != self.node_id]
            if remote_nodes and self.credentials is None:
                raise Unavailable("tasks on other nodes are captured over the swarm's own certificates, which a "
                                  "swarm on --cluster-store does not have: capture them on their nodes")  # fmt: skip
            for node_id in remote_nodes:
                address, hostname = self._node(node_id)
                assert self.credentials is not None
                self._remotes.append(_Remote(address, hostname, self.credentials, capture_id, self.by_node[node_id],
                                             self.settings))  # fmt: skip
            settings = self.settings
            self.capture = Capture(local, settings.bpf, settings.count, settings.duration, settings.snaplen,
                                   relayed=[s for r in self._remotes for s in r.sources],
                                   reorder_seconds=REORDER_SECONDS)  # fmt: skip
            self.capture.stopping = self.stopping
            for remote in self._remotes:  # first: a local tcpdump that fails to start stops them, quickly
                remote.begin()
            self.capture.start()
        except BaseException:
            self.abort()
            raise

    def run(self, write: Any) -> None:
        assert self.capture is not None
        try:
            self.capture.run(write)
        finally:
            for remote in self._remotes:
                remote.close()

    def abort(self) -> None:
        for remote in self._remotes:
            remote.abort()
        if self.capture is not None:
            self.capture.abort()
        for remote in self._remotes:
            remote.close()
