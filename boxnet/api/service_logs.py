"""GET /services/{id}/logs and /tasks/{id}/logs: every task's lines, as Docker multiplexes them, each with
the details the docker CLI builds its `NAME.SLOT.ID@NODE | ` prefix from (services/logs.py reads them)."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

from boxnet.api.server import STDERR, STDOUT, Request, Router, Stream, frame
from boxnet.api.streams import MULTIPLEXED
from boxnet.errors import BoxnetError, InvalidArgument, NotFound, Unavailable
from boxnet.services.logs import details, epoch, parse_tail

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine


def _since(raw: str) -> float:
    """Docker's since: seconds since the epoch, with nanoseconds after a dot (the CLI converts 42m to it)."""
    if raw in ("", "0"):
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise InvalidArgument(f"invalid since {raw!r}: seconds since the epoch") from None


def logs_stream(engine: Engine, tasks: list[dict[str, Any]], request: Request) -> Stream:
    want = {"stdout": request.flag("stdout"), "stderr": request.flag("stderr")}
    if not any(want.values()):
        raise InvalidArgument("you must choose at least one stream (stdout or stderr)")
    if request.arg("until"):
        raise InvalidArgument("until is not supported for service logs")
    keep_following, timestamps, with_details = request.flag("follow"), request.flag("timestamps"), \
        request.flag("details")  # fmt: skip
    tail, since = parse_tail(request.arg("tail")), _since(request.arg("since"))
    runtime = engine.services_runtime
    if runtime is None:
        raise Unavailable("this node is not in a swarm")
    logs = runtime.logs
    logs.check_reachable(tasks)
    lock = threading.Lock()

    def line(task: dict[str, Any], text: str, stamp: str) -> bytes:
        prefix = (f"{stamp} " if timestamps else "") + (f"{details(task)} " if with_details else "")
        return (prefix + text).encode()

    def pump(sock: socket.socket, task: dict[str, Any]) -> None:
        try:
            for entry in logs.of(task, tail, keep_following):
                if not want.get(entry["stream"]) or (since and epoch(entry["time"]) < since):
                    continue
                data = frame(STDOUT if entry["stream"] == "stdout" else STDERR, line(task, entry["log"], entry["time"]))
                with lock:
                    sock.sendall(data)
        except BoxnetError as exc:  # one task's node out of reach: said on stderr, in the task's own line
            with lock:
                sock.sendall(frame(STDERR, line(task, f"(boxnet: no logs from this task: {exc.message})\n", "")))

    def run(sock: socket.socket, rfile: Any) -> None:
        if not keep_following:
            for task in tasks:
                pump(sock, task)
            return
        threads = [threading.Thread(target=pump, args=(sock, task), daemon=True) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return Stream(run, upgrade=False, content_type=MULTIPLEXED)


def add_service_log_routes(router: Router, engine: Engine) -> None:
    def service_logs(request: Request, ref: str) -> Stream:
        record = engine.service(ref)
        tasks = [task for task, _ in engine.tasks() if task["service_id"] == record.id]
        return logs_stream(engine, sorted(tasks, key=lambda t: (t["slot"] or 0, t["node_id"])), request)

    def task_logs(request: Request, ref: str) -> Stream:
        found = [task for task, _ in engine.tasks() if task["id"] == ref or task["id"].startswith(ref)]
        if len(found) != 1:
            raise NotFound(f"task {ref} not found") if not found else InvalidArgument(f"task {ref} is ambiguous")
        return logs_stream(engine, found, request)

    router.add("GET", "/services/(?P<ref>[^/]+)/logs", service_logs)
    router.add("GET", "/tasks/(?P<ref>[^/]+)/logs", task_logs)
