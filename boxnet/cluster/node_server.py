"""What one node asks of another directly, over TLS on the node's advertised address (Docker's node port,
7946), both sides proving themselves with the certificates the swarm's CA gave them: only a manager may ask,
and what it asks for is read from this node (a task's log, a capture of its tasks' traffic), never written.

The answers are streams: JSON lines, so a followed log flows as it is written, or bytes a route writes itself
(a Reply: a capture's pcapng).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from boxnet.cluster.tls_server import TlsHttpServer
from boxnet.errors import BoxnetError, Forbidden, InvalidArgument, NotFound, Unavailable
from boxnet.store.etcd import Credentials

log = logging.getLogger(__name__)

PORT = 7946


@dataclass
class Reply:
    """An answer a route writes itself, after the status line and these headers; it gets the connection's
    socket too, to see the asker go away (the asker sends nothing once it has asked)."""

    content_type: str
    write_body: Callable[[Callable[[bytes], Any], Any], None]
    headers: dict[str, str] = field(default_factory=dict)
    cleanup: Callable[[], None] = field(default=lambda: None)  # always run, even if nothing could be sent


# (method, path prefix) -> handler(rest of the path, query): JSON-able items, or a Reply
Routes = dict[tuple[str, str], Callable[[str, dict[str, str]], "Iterator[Any] | Reply"]]


def _server_context(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials.cert, credentials.key)
    context.load_verify_locations(credentials.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_context(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(credentials.cert, credentials.key)
    context.load_verify_locations(credentials.ca)
    context.check_hostname = False  # the chain is checked against the swarm's CA; nodes go by address
    return context


def peer_node_id(sock: ssl.SSLSocket) -> str:
    """The node ID in the client's certificate (its subject's common name, which the CA set)."""
    certificate = sock.getpeercert() or {}
    for attribute in certificate.get("subject", ()):
        for key, value in attribute:
            if key == "commonName":
                return value
    return ""


class NodeServer:
    def __init__(self, address: str, credentials: Credentials, may_ask: Callable[[str], bool], routes: Routes,
                 port: int = PORT) -> None:  # fmt: skip
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _refuse(self, error: BoxnetError) -> None:
                body = json.dumps({"message": error.message}).encode()
                self.send_response(error.http_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                asker = peer_node_id(self.connection)  # type: ignore[arg-type]
                if not may_ask(asker):
                    self._refuse(Forbidden(f"node {asker or '?'} is not a manager of this swarm"))
                    return
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                route = next((p for m, p in routes if m == method and url.path.startswith(p)), None)
                if route is None:
                    self._refuse(NotFound(f"no such path {method} {url.path}"))
                    return
                try:
                    answer = routes[(method, route)](url.path[len(route):], query)
                    if isinstance(answer, Reply):
                        self._reply(answer)
                        return
                    first = next(answer, None)
                except BoxnetError as exc:
                    self._refuse(exc)
                    return
                self._stream(url.path, first, answer)

            def _reply(self, reply: Reply) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", reply.content_type)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    reply.write_body(self.wfile.write, self.connection)
                except (OSError, BoxnetError) as exc:
                    log.debug("node reply ended: %s", exc)
                finally:
                    reply.cleanup()

            def _stream(self, path: str, first: Any, items: Iterator[Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    if first is not None:
                        self.wfile.write(json.dumps(first).encode() + b"\n")
                        self.wfile.flush()
                    for item in items:
                        self.wfile.write(json.dumps(item).encode() + b"\n")
                        self.wfile.flush()
                except (OSError, BoxnetError) as exc:  # the asker went away, or the source did
                    log.debug("node request %s ended: %s", path, exc)

        self.service = TlsHttpServer(address, port, _server_context(credentials), Handler, "node server")

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        self.service.stop()


def open_stream(address: str, credentials: Credentials, path: str, query: dict[str, str],
                timeout: float | None = 30, method: str = "GET",
                port: int = PORT) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:  # fmt: skip
    """Asks another node; its answer, once it has said yes (a refusal is raised, with the node's reason)."""
    connection = http.client.HTTPSConnection(address, port, timeout=timeout, context=_client_context(credentials))
    try:
        try:
            connection.request(method, f"{path}?{urllib.parse.urlencode(query)}")
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"could not reach node {address}: {exc}") from None
        if response.status != 200:
            try:
                message = json.loads(response.read())["message"]
            except (ValueError, KeyError, TypeError, OSError):
                message = f"status {response.status}"
            error = {400: InvalidArgument, 403: Forbidden, 404: NotFound}.get(response.status, Unavailable)
            raise error(f"node {address}: {message}")
    except BaseException:
        connection.close()
        raise
    return connection, response


def ask(address: str, credentials: Credentials, path: str, query: dict[str, str], timeout: float | None = 30,
        port: int = PORT) -> Iterator[Any]:  # fmt: skip
    """The items another node streams back for a GET, as they come (timeout None: for as long as it streams).
    Whatever goes wrong on the way is an Unavailable that names the node."""
    connection, response = open_stream(address, credentials, path, query, timeout, port=port)
    try:
        while True:
            try:
                line = response.readline()
                if not line:
                    return
                item = json.loads(line)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise Unavailable(f"node {address} stopped answering: {exc or type(exc).__name__}") from None
            yield item
    finally:
        connection.close()
