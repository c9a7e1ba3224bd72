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
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from boxnet.api.access import AccessPolicy, Peer, peer_of
from boxnet.errors import BoxnetError, Forbidden, InvalidArgument, NotFound, TooLarge

log = logging.getLogger(__name__)
audit = logging.getLogger("boxnet.audit")

# JSON bodies only: a container with a thousand published ports is about 60 KB.
MAX_BODY = 1 << 20

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
            self._body = b""  # a body that cannot be read is not read twice (the error path drains)
            self._body = self._read_body()
        return self._body

    def body_stream(self) -> BodyStream:
        """The body as a stream, of any size (an image tarball); the connection closes after the answer,
        since what the handler leaves unread cannot be skipped reliably."""
        self._body = b""
        self.handler.close_connection = True
        headers = self.handler.headers
        chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        raw = (headers.get("Content-Length") or "0").strip()
        if not chunked and not (raw.isascii() and raw.isdigit()):
            raise InvalidArgument(f"invalid Content-Length {raw!r}: expected a number of bytes")
        return BodyStream(self.handler.rfile, None if chunked else int(raw))

    def _read_body(self) -> bytes:
        headers, rfile = self.handler.headers, self.handler.rfile
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(rfile)
        lengths = headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        raw = lengths[0].strip()
        if len(set(lengths)) > 1 or not (raw.isascii() and raw.isdigit()):
            self.handler.close_connection = True
            raise InvalidArgument(f"invalid Content-Length {', '.join(lengths)!r}: expected one number of bytes")
        length = int(raw)
        if length > MAX_BODY:
            self.handler.close_connection = True  # not read: the connection cannot be reused
            raise TooLarge(f"request body of {length} bytes is larger than the limit of {MAX_BODY} bytes")
        data = rfile.read(length)
        if len(data) < length:
            self.handler.close_connection = True
            raise InvalidArgument(f"the request body ended after {len(data)} of its {length} bytes")
        return data

    def _read_chunked(self, rfile: Any) -> bytes:
        data = bytearray()
        while True:
            line = rfile.readline(1024)
            size_text = line.split(b";")[0].strip()
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                self.handler.close_connection = True
                raise InvalidArgument(f"malformed chunk size {line[:40]!r} in a chunked request body")
            size = int(size_text, 16)
            if len(data) + size > MAX_BODY:
                self.handler.close_connection = True
                raise TooLarge(f"chunked request body larger than the limit of {MAX_BODY} bytes")
            if size == 0:
                while rfile.readline(1024).strip():  # trailers, up to the empty line
                    pass
                return bytes(data)
            chunk = rfile.read(size)
            if len(chunk) < size:
                self.handler.close_connection = True
                raise InvalidArgument("the chunked request body ended inside a chunk")
            data += chunk
            rfile.readline(1024)

    def json(self) -> Any:
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"invalid JSON body: {exc}") from None

    def filters(self) -> dict[str, list[str]]:
        raw = self.arg("filters")
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"invalid filters: {raw}") from None
        if not isinstance(parsed, dict):
            raise InvalidArgument(f"invalid filters {raw!r}: expected a JSON object")
        result: dict[str, list[str]] = {}
        for key, value in parsed.items():
            # Old clients send {"key": {"value": true}}; new ones send {"key": ["value"]}.
            values = list(value) if isinstance(value, list) else [x for x, on in value.items() if on] \
                if isinstance(value, dict) else None
            if values is None or not all(isinstance(v, str) for v in values):
                raise InvalidArgument(f"invalid filter {key!r}: expected a list of strings")
            result[key] = values
        return result


class BodyStream:
    """A request body read as it arrives: Content-Length bytes, or chunks until the last one."""

    def __init__(self, rfile: Any, length: int | None) -> None:
        self.rfile = rfile
        self.left = length if length is not None else 0
        self.chunked = length is None
        self.done = length == 0

    def read(self, size: int = -1) -> bytes:
        if self.done:
            return b""
        if size < 0:
            size = 1 << 20
        if self.chunked and self.left == 0:
            line = self.rfile.readline(1024)
            size_text = line.split(b";")[0].strip()
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise InvalidArgument(f"malformed chunk size {line[:40]!r} in a chunked request body")
            self.left = int(size_text, 16)
            if self.left == 0:
                while self.rfile.readline(1024).strip():
                    pass
                self.done = True
                return b""
        data = self.rfile.read1(min(size, self.left)) if hasattr(self.rfile, "read1") else \
            self.rfile.read(min(size, self.left))  # fmt: skip
        if not data:
            raise InvalidArgument("the request body ended early")
        self.left -= len(data)
        if self.left == 0:
            if self.chunked:
                self.rfile.readline(1024)
            else:
                self.done = True
        return data


class Response:
    def __init__(self, status: int = 200, body: Any = None, raw: bytes | None = None,
                 content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.raw = raw
        self.content_type = content_type
        self.headers = headers or {}


class Stream:
    """A response written by the handler itself: hijacked (exec) or streamed until done (logs -f)."""

    def __init__(self, run: Callable[[socket.socket, Any], None], upgrade: bool, content_type: str,
                 chunked: bool = False) -> None:  # fmt: skip
        self.run = run
        self.upgrade = upgrade
        self.content_type = content_type
        # Sent in HTTP chunks, as Docker sends /events and stats: the docker SDK reads a stream that is not
        # chunked as one document, to the end (and so never returns an event).
        self.chunked = chunked


class ChunkedSocket:
    """What a chunked stream's run() writes to: each sendall one HTTP chunk."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, data: bytes) -> None:
        if data:
            self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    def __getattr__(self, name: str) -> Any:  # recv, fileno: a follower watches the client through them
        return getattr(self.sock, name)


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


def make_handler(router: Router, policy: AccessPolicy) -> type[BaseHTTPRequestHandler]:
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
            peer = self._peer()
            try:
                if not policy.allows(peer):
                    raise Forbidden(policy.refusal(peer))
                if resolved is None:
                    raise NotFound(f"page not found: {self.command} {path}")
                handler, params = resolved
                result = handler(request, **params)
            except BoxnetError as exc:
                self._drain(request)
                result = Response(exc.http_status, {"message": exc.message})
            except Exception as exc:
                log.exception("%s %s failed", self.command, path)
                self._drain(request)
                result = Response(500, {"message": f"internal error: {exc}"})
            # Logged before the answer goes out: a client that hangs up early does not hide what it did.
            if isinstance(result, Stream):
                self._audit(peer, path, 101 if result.upgrade else 200)
                self._stream(result)
            else:
                self._audit(peer, path, result.status)
                self._send(result)

        def _peer(self) -> Peer:
            """The caller, as the kernel saw it connect (once per connection)."""
            if not hasattr(self, "peer"):
                self.peer = peer_of(self.connection)
            return self.peer

        def _audit(self, peer: Peer, path: str, status: int) -> None:
            """Who changed what: every request but reads."""
            if self.command not in ("GET", "HEAD"):
                audit.info("%s %s %s -> %d", peer.describe(), self.command, path, status)

        def _drain(self, request: Request) -> None:
            """Reads what is left of the body, so that the connection can be reused; one that cannot be read
            (malformed, too large) closes the connection after the answer."""
            try:
                request.body()
            except BoxnetError:
                self.close_connection = True

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
            for name, value in response.headers.items():
                self.send_header(name, value)
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
                if stream.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
            self._common_headers()
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            chunked = stream.chunked and not (stream.upgrade and wants_upgrade)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stream.run(ChunkedSocket(self.connection) if chunked else self.connection, self.rfile)  # type: ignore[arg-type]
                if chunked:
                    self.connection.sendall(b"0\r\n\r\n")

    return ApiHandler


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is no error of the daemon's; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            log.debug("a client hung up before its answer was sent")
            return
        log.exception("error while serving a request")

    def __init__(self, path: str, router: Router, policy: AccessPolicy | None = None) -> None:
        policy = policy or AccessPolicy()
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, make_handler(router, policy))
        policy.secure_socket_file(path)
