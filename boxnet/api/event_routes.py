"""GET /events: the daemon's events, one JSON object per line, as they happen."""

from __future__ import annotations

import json
import socket
from typing import Any

from boxnet.api.server import Request, Router, Stream
from boxnet.engine.controller import Engine
from boxnet.engine.events import EventFilter, parse_time
from boxnet.errors import InvalidArgument
from boxnet.kernel.readiness import readable


def hung_up(sock: socket.socket) -> bool:
    """The client closed its end (a readable socket with nothing to read)."""
    try:
        return bool(readable([sock], 0)) and not sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


def add_event_routes(router: Router, engine: Engine) -> None:
    def events(request: Request) -> Stream:
        # Everything is checked before the headers go: a bad filter is a 400, not a stream that ends.
        wanted = EventFilter(request.filters())
        since = parse_time(request.arg("since"), "since")
        until = parse_time(request.arg("until"), "until")
        if since is not None and until is not None and until < since:
            raise InvalidArgument("until must not be before since")

        def run(sock: socket.socket, rfile: Any) -> None:
            for event in engine.ctx.events.follow(since, until, lambda: hung_up(sock)):
                if wanted.matches(event):
                    sock.sendall(json.dumps(event.to_json()).encode() + b"\n")

        return Stream(run, upgrade=False, content_type="application/json", chunked=True)

    router.add("GET", "/events", events)
