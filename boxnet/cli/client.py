"""A small Docker Engine API client over a unix socket (http.client), used by the CLI and the tests."""

from __future__ import annotations

import http.client
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from boxnet import paths
from boxnet.errors import BoxnetError, from_http_status


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class DaemonUnreachable(BoxnetError):
    exit_code = 1


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or paths.socket_path()
        self.timeout = timeout
        self._conn: UnixConnection | None = None

    def _connection(self) -> UnixConnection:
        if self._conn is None:
            self._conn = UnixConnection(self.socket_path, self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, method: str, path: str, query: dict[str, Any] | None, body: Any,
              headers: dict[str, str] | None = None) -> http.client.HTTPResponse:  # fmt: skip
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=payload, headers=all_headers)
                return conn.getresponse()
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                self.close()
                raise DaemonUnreachable(
                    f"Cannot connect to the boxnet daemon at unix://{self.socket_path}. Is boxnetd running? ({exc})"
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server closed: retry once on a fresh one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        response = self._send(method, path, query, body)
        data = response.read()
        if response.status >= 400:
            raise _error(response.status, data)
        if not data or response.getheader("Content-Type", "").split(";")[0] != "application/json":
            return data.decode() if data else None
        return json.loads(data)

    def stream(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
               upgrade: bool = False) -> tuple[http.client.HTTPResponse, socket.socket]:  # fmt: skip
        """Sends a request whose response is a stream; returns it and the raw socket (for hijacking)."""
        headers = {"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}
        conn = UnixConnection(self.socket_path, None)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            if query:
                path += "?" + urlencode(query)
            conn.request(method, path, body=payload,
                         headers={**headers, **({"Content-Type": "application/json"} if payload else {})})
            sock = conn.sock  # kept before http.client lets go of it for a response it reads to the close
            response = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnreachable(
                f"Cannot connect to the boxnet daemon at unix://{self.socket_path}. Is boxnetd running? ({exc})"
            ) from None
        if response.status >= 400:
            raise _error(response.status, response.read())
        assert sock is not None
        return response, sock

    # ---- conveniences ------------------------------------------------------------------------------
    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query or None)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, query or None, body)

    def delete(self, path: str, **query: Any) -> Any:
        return self.request("DELETE", path, query or None)


def _error(status: int, data: bytes) -> BoxnetError:
    try:
        message = json.loads(data).get("message", "")
    except ValueError:
        message = data.decode(errors="replace").strip()
    return from_http_status(status, message or f"HTTP {status}")


def ref(value: str) -> str:
    return quote(value, safe="")


def demux(read: Any) -> Iterator[tuple[int, bytes]]:
    """Splits Docker's multiplexed stream into (stream id, payload) chunks."""
    while True:
        header = _read_exact(read, 8)
        if not header:
            return
        stream, length = struct.unpack(">BxxxL", header)
        yield stream, _read_exact(read, length)


def _read_exact(read: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = read(size - len(data))
        if not chunk:
            return data if data else b""
        data += chunk
    return data
