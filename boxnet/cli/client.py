"""A small Docker Engine API client over a unix socket, for the CLI and the tests.

It speaks just the HTTP/1.1 that boxnetd answers with (Content-Length bodies, chunked ones, bodies that end
with the connection, and 101 upgrades). Start-up time is the CLI's budget, so it avoids http.client, urllib
and even the `socket` module (its enums cost ~10 ms on an unoptimised interpreter): `_socket` does the same work.
"""

from __future__ import annotations

import _socket
import struct

from boxnet import paths
from boxnet.cli.jsoncodec import dumps, loads
from boxnet.errors import BoxnetError, from_http_status

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SHUT_WR = _socket.SHUT_WR
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~")


def quote(value: str, safe: str = "") -> str:
    allowed = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in allowed else f"%{b:02X}" for b in str(value).encode())


def urlencode(pairs: dict[str, Any]) -> str:
    return "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in pairs.items())


class DaemonUnreachable(BoxnetError):
    exit_code = 1


class Reader:
    """Buffered reads from a raw socket: lines, exact sizes, what is there, or all until the end."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            if not self._fill():
                break
        line, sep, rest = self.buffer.partition(b"\n")
        self.buffer = rest
        return line + sep

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            while self._fill():
                pass
            data, self.buffer = self.buffer, b""
            return data
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read1(self, size: int = 65536) -> bytes:
        if not self.buffer:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


class Response:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fp = Reader(sock)
        status_line = self.fp.readline()
        if not status_line:
            raise ConnectionResetError("the daemon closed the connection")
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.fp.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            self.headers[key.strip().lower()] = value.strip()
        length = self.headers.get("content-length")
        self.length = int(length) if length is not None else None
        self.keep_alive = self.headers.get("connection", "").lower() != "close" and self.length is not None

    def getheader(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def chunked(self) -> bool:
        return self.headers.get("transfer-encoding", "").lower() == "chunked"

    def chunks(self) -> Iterator[bytes]:
        """The body piece by piece as it comes: its HTTP chunks, or what each read brings."""
        if not self.chunked:
            while data := self.read1():
                yield data
            return
        while size_line := self.fp.readline():
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = self.fp.read(size)
            self.fp.read(2)  # the chunk's CRLF
            yield data

    def lines(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                yield line
        if pending:
            yield pending

    def read(self, size: int = -1) -> bytes:
        if self.chunked and size < 0:
            return b"".join(self.chunks())
        if self.length is not None:
            size = self.length if size < 0 else min(size, self.length)
            data = self.fp.read(size) if size else b""
            self.length -= len(data)
            return data
        if self.status in (204, 304):
            return b""
        return self.fp.read(size) if size >= 0 else self.fp.read()

    def read1(self, size: int = 65536) -> bytes:
        return self.fp.read1(size)


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or paths.socket_path()
        self.timeout = timeout
        self._sock: Any = None

    def _connect(self) -> Any:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonUnreachable(
                f"Cannot connect to the boxnet daemon at unix://{self.socket_path}. Is boxnetd running? ({exc})"
            ) from None
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _message(method: str, path: str, query: dict[str, Any] | None, body: Any,
                 headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                path += "?" + urlencode(pairs)
        payload = dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: boxnet", f"Content-Length: {len(payload)}"]
        if payload:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        message = self._message(method, path, query, body)
        for attempt in (1, 2):
            reused = self._sock is not None
            sock = self._sock or self._connect()
            try:
                sock.sendall(message)
                response = Response(sock)
                data = response.read()
            except (ConnectionResetError, BrokenPipeError):
                self._sock = None
                sock.close()
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server had closed: once more, on a fresh one
                raise
            if response.keep_alive:
                self._sock = sock
            else:
                self._sock = None
                sock.close()
            break
        if response.status >= 400:
            raise _error(response.status, data)
        if not data or response.getheader("Content-Type").split(";")[0] != "application/json":
            return data.decode() if data else None
        return loads(data)

    def stream(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
               upgrade: bool = False) -> tuple[Response, Any]:  # fmt: skip
        """A request whose response is a stream, on a connection of its own (hijacked when upgraded)."""
        sock = self._connect()
        sock.settimeout(None)
        headers = {"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}
        sock.sendall(self._message(method, path, query, body, headers))
        response = Response(sock)
        if response.status >= 400:
            error = _error(response.status, response.read())
            sock.close()
            raise error
        return response, sock

    def upload(self, method: str, path: str, query: dict[str, Any] | None, source: Any) -> str:
        """A request whose body is a file (an image tarball), sent in chunks as it is read; the answer's text."""
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                path += ("&" if "?" in path else "?") + urlencode(pairs)
        sock = self._connect()
        sock.settimeout(None)
        try:
            head = (f"{method} {path} HTTP/1.1\r\nHost: boxnet\r\nContent-Type: application/x-tar\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            sock.sendall(head.encode())
            try:
                while chunk := source.read(1 << 20):
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except BrokenPipeError:
                pass  # the daemon refused early: its answer says why
            response = Response(sock)
            data = response.read()
        finally:
            sock.close()
        if response.status >= 400:
            raise _error(response.status, data)
        return data.decode()

    # ---- conveniences ------------------------------------------------------------------------------
    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query or None)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, query or None, body)

    def delete(self, path: str, **query: Any) -> Any:
        return self.request("DELETE", path, query or None)


def _error(status: int, data: bytes) -> BoxnetError:
    try:
        message = loads(data).get("message", "")
    except ValueError:
        message = data.decode(errors="replace").strip()
    return from_http_status(status, message or f"HTTP {status}")


def ref(value: str) -> str:
    return quote(value, safe="")


def demux(read: Any) -> Iterator[tuple[int, bytes]]:
    """Splits Docker's multiplexed stream into (stream id, payload) chunks."""
    while True:
        header = _read_exact(read, 8)
        if len(header) < 8:
            return
        stream, length = struct.unpack(">BxxxL", header)
        yield stream, _read_exact(read, length)


def _read_exact(read: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
