"""HTTP/1.1 over a unix socket: routing, JSON bodies, errors in Docker's shape, and hijacked streams.

A thread per connection keeps long requests (wait, logs -f, exec) from holding up the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import socketserver
import struct
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from boxnet.errors import BoxnetError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(/.*)$")

STDOUT, STDERR = 1, 2


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        self.handler = handler
        self.method = handler.command
        self.path = path
        self.query = query
        self._body: bytes | None = None

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return self.arg(name, "").lower() in ("1", "true", "yes")

    @property
    def headers(self):
        return self.handler.headers

    def body(self) -> bytes:
        if self._body is None:
            handler = self.handler
            if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        handler.rfile.readline()
                        break
                    data += handler.rfile.read(size)
                    handler.rfile.readline()
                self._body = data
            else:
                length = int(handler.headers.get("Content-Length") or 0)
                self._body = handler.rfile.read(length) if length else b""
        return self._body

    def json(self) -> Any:
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(f"invalid JSON body: {exc}") from None

    def filters(self) -> dict[str, list[str]]:
        raw = self.arg("filters")
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise InvalidArgument(f"invalid filters: {raw}") from None
        # Old clients send {"key": {"value": true}}; new ones send {"key": ["value"]}.
        return {k: list(v) if isinstance(v, list) else [x for x, on in v.items() if on] for k, v in parsed.items()}


class Response:
    def __init__(self, status: int = 200, body: Any = None, raw: bytes | None = None,
                 content_type: str = "application/json") -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.raw = raw
        self.content_type = content_type


class Stream:
    """A response written by the handler itself: hijacked (exec) or streamed until done (logs -f)."""

    def __init__(self, run: Callable[[socket.socket, Any], None], upgrade: bool, content_type: str) -> None:
        self.run = run
        self.upgrade = upgrade
        self.content_type = content_type


Handler = Callable[..., Response | Stream]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile("^" + pattern + "$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and (route_method == method or (method == "HEAD" and route_method == "GET")):
                return handler, match.groupdict()
        return None


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream framing: stream id, three zero bytes, big-endian length, payload."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def make_handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class ApiHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "boxnetd"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s", format % args)

        def address_string(self) -> str:
            return "unix"

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            path = split.path
            versioned = _VERSION_PREFIX.match(path)
            if versioned:
                path = versioned.group(1)
            request = Request(self, path, parse_qs(split.query, keep_blank_values=True))
            resolved = router.resolve(self.command, path)
            try:
                if resolved is None:
                    raise NotFound(f"page not found: {self.command} {path}")
                handler, params = resolved
                result = handler(request, **params)
            except BoxnetError as exc:
                request.body()  # drain, so the connection can be reused
                self._send(Response(exc.http_status, {"message": exc.message}))
                return
            except Exception as exc:
                log.exception("%s %s failed", self.command, path)
                request.body()
                self._send(Response(500, {"message": f"internal error: {exc}"}))
                return
            if isinstance(result, Stream):
                self._stream(result)
            else:
                self._send(result)

        do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch

        def _send(self, response: Response) -> None:
            if response.raw is not None:
                payload = response.raw
            elif response.body is None:
                payload = b""
            else:
                payload = json.dumps(response.body).encode() + b"\n"
            self.send_response(response.status)
            self._common_headers()
            if payload or response.status not in (204, 304):
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD" and response.status not in (204, 304):
                self.wfile.write(payload)

        def _common_headers(self) -> None:
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Docker-Experimental", "false")
            self.send_header("Ostype", "linux")
            self.send_header("Server", "boxnetd")

        def _stream(self, stream: Stream) -> None:
            wants_upgrade = "upgrade" in self.headers.get("Connection", "").lower()
            if stream.upgrade and wants_upgrade:
                self.send_response(101, "UPGRADED")
                self.send_header("Content-Type", stream.content_type)
                self.send_header("Connection", "Upgrade")
                self.send_header("Upgrade", self.headers.get("Upgrade", "tcp"))
            else:
                self.send_response(200)
                self.send_header("Content-Type", stream.content_type)
                self.send_header("Connection", "close")
            self._common_headers()
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stream.run(self.connection, self.rfile)

    return ApiHandler


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, path: str, router: Router) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, make_handler(router))
        os.chmod(path, 0o660)
