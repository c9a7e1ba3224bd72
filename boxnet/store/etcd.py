"""The cluster store on etcd, through its v3 JSON gateway over HTTP/1.1 and TLS with a client certificate.

Why not a gRPC client library: `etcd3` is unmaintained and breaks on current protobuf, the others are
asyncio-only or undeclared in their dependencies (measured in ../shared/notes/multihost-facts.md); the
gateway is etcd's own, spoken with the standard library (put ~0.9 ms, get ~0.6 ms over one kept-alive TLS
connection here). Facts this relies on (etcd 3.4.23): int64 fields are JSON strings; a field at its zero
value is left out (a failed txn has no "succeeded", a PUT event no "type"); a watch answers with chunked
newline-separated {"result": ...} objects, first `created`, and a watch from a compacted revision is
`canceled` with `compact_revision`; a single POST to /v3/lease/keepalive refreshes once and returns.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from boxnet.errors import InvalidArgument
from boxnet.store.cluster import Compacted, Compare, Entry, Event, Operation, Put, StoreUnavailable

log = logging.getLogger(__name__)

# Without a leader a member fails at once (503 "no leader") instead of holding the request 7 s, so the next
# member gets it.
HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
_TARGETS = {"create": ("CREATE", "create_revision"), "mod": ("MOD", "mod_revision"), "value": ("VALUE", "value"),
            "lease": ("LEASE", "lease")}  # fmt: skip


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(raw: str | None) -> str:
    return base64.b64decode(raw).decode() if raw else ""


def prefix_end(prefix: str) -> str:
    """etcd's range_end for "every key starting with prefix": the prefix with its last byte plus one."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return base64.b64encode(b"\0").decode()
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


def _entry(kv: dict[str, Any]) -> Entry:
    return Entry(_text(kv.get("key")), _text(kv.get("value")), int(kv.get("mod_revision", 0)),
                 int(kv.get("create_revision", 0)), int(kv.get("lease", 0)))  # fmt: skip


def _operation(operation: Operation) -> dict[str, Any]:
    if isinstance(operation, Put):
        body: dict[str, Any] = {"key": _b64(operation.key), "value": _b64(operation.value)}
        if operation.lease:
            body["lease"] = str(operation.lease)
        return {"request_put": body}
    body = {"key": _b64(operation.key)}
    if operation.prefix:
        body["range_end"] = prefix_end(operation.key)
    return {"request_delete_range": body}


def _compare(compare: Compare) -> dict[str, Any]:
    target, field = _TARGETS[compare.target]
    value = _b64(compare.expected) if compare.target == "value" else str(compare.expected)
    return {"key": _b64(compare.key), "target": target, "result": "EQUAL", field: value}


@dataclass(frozen=True)
class Credentials:
    """The cluster's CA and this node's client certificate, as files."""

    ca: str
    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca)
        context.load_cert_chain(self.cert, self.key)
        # Members are named by address; their certificates carry IP SANs, which the chain check covers.
        context.check_hostname = False
        return context


class EtcdStore:
    def __init__(self, endpoints: list[str], credentials: Credentials | None, timeout: float = 5.0) -> None:
        if not endpoints:
            raise InvalidArgument("the cluster store needs at least one etcd endpoint")
        self.endpoints = [self._parse(e) for e in endpoints]
        self._context = credentials.context() if credentials else None
        self.timeout = timeout
        self._local = threading.local()
        self._preferred = 0

    @staticmethod
    def _parse(endpoint: str) -> tuple[str, str, int]:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if url.scheme not in ("http", "https", "etcd") or not url.hostname or not url.port:
            raise InvalidArgument(f"etcd endpoint {endpoint!r}: expected https://HOST:PORT")
        return ("http" if url.scheme == "http" else "https"), url.hostname, url.port

    def _connect(self, index: int, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = self.endpoints[index]
        if scheme == "https":
            if self._context is None:
                raise InvalidArgument("an https etcd endpoint needs the cluster's certificates")
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    # ---- requests ----------------------------------------------------------------------------------
    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One unary request, on this thread's kept-alive connection; the next member on failure."""
        payload = json.dumps(body).encode()
        errors = []
        for attempt in range(len(self.endpoints)):
            index = (self._preferred + attempt) % len(self.endpoints)
            try:
                status, answer = self._exchange(index, path, payload)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{self.endpoints[index][1]}:{self.endpoints[index][2]}: {exc}")
                continue
            self._preferred = index
            if status == 200:
                return answer
            message = answer.get("error") or answer.get("message") or str(answer)
            if status == 503 or answer.get("code") == 14:  # unavailable: try another member
                errors.append(f"{self.endpoints[index][1]}: {message}")
                continue
            raise EtcdError(status, message, answer.get("code", 0))
        raise StoreUnavailable("no etcd member answered: " + "; ".join(errors))

    def _exchange(self, index: int, path: str, payload: bytes) -> tuple[int, dict[str, Any]]:
        """A kept-alive connection may have died with its member since its last use: once more on a new one."""
        for fresh in (False, True):
            reused = index in getattr(self._local, "connections", {})
            connection = self._connection(index)
            try:
                connection.request("POST", path, payload, HEADERS)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._drop_connection(index)
                if fresh or not reused:
                    raise
                continue
            answer = json.loads(data) if data.startswith(b"{") else {"error": data.decode(errors="replace")}
            return response.status, answer
        raise AssertionError("unreachable")

    def _connection(self, index: int) -> http.client.HTTPConnection:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        if index not in connections:
            connections[index] = self._connect(index, self.timeout)
        return connections[index]

    def _drop_connection(self, index: int) -> None:
        getattr(self._local, "connections", {}).pop(index, None)

    # ---- the protocol ------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _entry(kvs[0]) if kvs else None

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        answer = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": prefix_end(prefix)})
        return [_entry(kv) for kv in answer.get("kvs", [])], int(answer["header"]["revision"])

    def put(self, key: str, value: str, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        return int(self.call("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, compares: list[Compare], success: list[Operation], failure: list[Operation] = ()) -> bool:
        answer = self.call("/v3/kv/txn", {"compare": [_compare(c) for c in compares],
                                          "success": [_operation(o) for o in success],
                                          "failure": [_operation(o) for o in failure]})  # fmt: skip
        return bool(answer.get("succeeded", False))

    def grant(self, ttl: int) -> int:
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        return int(self.call("/v3/lease/keepalive", {"ID": str(lease)}).get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if exc.status != 404:  # already gone
                raise

    def watch(self, prefix: str, start_revision: int) -> EtcdWatch:
        return EtcdWatch(self, prefix, start_revision)

    def status(self) -> dict[str, Any]:
        return self.call("/v3/maintenance/status", {})

    def members(self) -> list[dict[str, Any]]:
        return self.call("/v3/cluster/member/list", {}).get("members", [])

    def add_member(self, peer_url: str) -> dict[str, Any]:
        return self.call("/v3/cluster/member/add", {"peerURLs": [peer_url]})

    def remove_member(self, member_id: str) -> None:
        self.call("/v3/cluster/member/remove", {"ID": member_id})

    def close(self) -> None:
        for connection in getattr(self._local, "connections", {}).values():
            connection.close()
        self._local = threading.local()


class EtcdError(Exception):
    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(f"etcd: {message} (HTTP {status})")
        self.status, self.message, self.code = status, message, code


class EtcdWatch:
    """One watch stream on its own connection: batches of events, in revision order."""

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        self.store, self.prefix, self.start_revision = store, prefix, start_revision
        self._connection: http.client.HTTPConnection | None = None
        self._closed = False

    def __iter__(self) -> Iterator[list[Event]]:
        body = json.dumps({"create_request": {"key": _b64(self.prefix), "range_end": prefix_end(self.prefix),
                                              "start_revision": str(self.start_revision)}}).encode()  # fmt: skip
        response = self._open(body)
        while not self._closed:
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise StoreUnavailable(f"the watch stream broke: {exc}") from None
            if not line:
                raise StoreUnavailable("the watch stream ended")
            result = json.loads(line).get("result", {})
            if result.get("canceled"):
                if result.get("compact_revision"):
                    raise Compacted(int(result["compact_revision"]))
                raise StoreUnavailable(f"the watch was cancelled: {result.get('cancel_reason', '')}")
            events = [Event("delete" if e.get("type") == "DELETE" else "put", _text(e["kv"].get("key")),
                            _text(e["kv"].get("value")), int(e["kv"].get("mod_revision", 0)))
                      for e in result.get("events", [])]  # fmt: skip
            if events:
                yield events

    def _open(self, body: bytes) -> http.client.HTTPResponse:
        errors = []
        for index in range(len(self.store.endpoints)):
            connection = self.store._connect(index, None)  # a watch waits as long as nothing happens
            try:
                connection.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                errors.append(str(exc))
                continue
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
                connection.close()
                continue
            self._connection = connection
            return response
        raise StoreUnavailable("no etcd member accepted the watch: " + "; ".join(errors))

    def close(self) -> None:
        """From another thread too: shutting the socket down wakes the reader."""
        self._closed = True
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
            connection.close()
