"""Looking into a running container: stats (streamed or once) and top."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import Any

from boxnet.api.event_routes import hung_up
from boxnet.api.server import Request, Response, Router, Stream
from boxnet.api.stats_json import stats_json
from boxnet.engine.controller import Engine
from boxnet.errors import Conflict, InvalidArgument
from boxnet.kernel.readiness import readable
from boxnet.model.container import Container
from boxnet.runtime import usage

# Docker samples a container's stats once a second.
INTERVAL = 1.0


def _truth(raw: str, name: str, default: bool) -> bool:
    if raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"invalid {name} {raw!r}: true or false")


def container_pids(engine: Engine, container: Container) -> list[int]:
    """Every process of the container: its pids cgroup, which its init and every exec joined."""
    cgroup = engine.ctx.cgroups.path_of(container.cgroups, "pids") or engine.ctx.cgroups.path_of(
        container.cgroups, "freezer")
    return usage.cgroup_pids(cgroup) if cgroup else [container.state.pid]


def top(engine: Engine, container: Container, ps_args: str) -> dict[str, Any]:
    """Docker's top: the host's ps, with the client's arguments, keeping the rows of the container's
    processes (found by the PID column)."""
    if container.state.status != "running":
        raise Conflict(f"Container {container.id} is not running")
    pids = set(container_pids(engine, container))
    try:
        listed = subprocess.run(["ps", *ps_args.split()], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise Conflict("ps is not installed on the daemon's host") from None
    if listed.returncode != 0:
        raise InvalidArgument(f"ps {ps_args}: {listed.stderr.strip() or 'failed'}")
    lines = listed.stdout.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise InvalidArgument(f"ps {ps_args}: its output has no PID column (give -o pid,... or -ef)")
    column = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)  # the last column (the command) keeps its spaces
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}


def add_inspection_routes(router: Router, engine: Engine) -> None:
    registry = engine.view
    cgroups = engine.ctx.cgroups

    def stats(request: Request, ref: str) -> Response | Stream:
        container = registry.find_container(ref)
        stream = _truth(request.arg("stream"), "stream", True)
        one_shot = _truth(request.arg("one-shot"), "one-shot", False)
        if stream and one_shot:
            raise InvalidArgument("cannot have stream=true and one-shot=true")
        if not stream:
            first = None
            if not one_shot and container.state.status == "running":
                first = stats_json(cgroups, container, None)  # Docker's CPU % needs two samples
                time.sleep(INTERVAL)
            return Response(200, stats_json(cgroups, registry.containers.get(container.id) or container, first))

        def run(sock: socket.socket, rfile: Any) -> None:
            previous = None
            while (current := registry.containers.get(container.id)) is not None:
                previous = stats_json(cgroups, current, previous)
                sock.sendall(json.dumps(previous).encode() + b"\n")
                if readable([sock], INTERVAL) and hung_up(sock):
                    return

        return Stream(run, upgrade=False, content_type="application/json", chunked=True)

    def container_top(request: Request, ref: str) -> Response:
        return Response(200, top(engine, registry.find_container(ref), request.arg("ps_args") or "-ef"))

    router.add("GET", "/containers/(?P<ref>[^/]+)/stats", stats)
    router.add("GET", "/containers/(?P<ref>[^/]+)/top", container_top)
