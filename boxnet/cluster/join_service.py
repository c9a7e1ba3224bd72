"""The join service: HTTPS on a manager's advertised address, Docker's port 2377.

A joining node first fetches the CA without trusting anyone (`GET /ca`) and checks it against the digest in
its token, as swarmkit does; then it sends its token and a certificate request over TLS verified with that
CA (`POST /join`), and gets back its node ID, its certificate and where the cluster store is. A manager
token also brings the CA's key, the tokens and an etcd member slot.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from boxnet.cluster.tls_server import TlsHttpServer
from boxnet.errors import BoxnetError, Forbidden, InvalidArgument, Unavailable

log = logging.getLogger(__name__)
MAX_BODY = 64 << 10


class JoinServer:
    def __init__(self, address: str, port: int, cert: str, key: str, ca_pem: bytes,
                 admit: Callable[[dict[str, Any], str], dict[str, Any]]) -> None:  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        ca = ca_pem

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/ca":
                    self._answer(200, ca, "application/x-pem-file")
                else:
                    self._answer(404, b'{"message": "not found"}')

            def do_POST(self) -> None:
                if self.path != "/join":
                    self._answer(404, b'{"message": "not found"}')
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if not 0 < length <= MAX_BODY:
                        raise InvalidArgument("join request: bad length")
                    request = json.loads(self.rfile.read(length))
                    if not isinstance(request, dict):
                        raise InvalidArgument("join request: expected an object")
                    answer = admit(request, self.client_address[0])
                    self._answer(200, json.dumps(answer).encode())
                except BoxnetError as exc:
                    log.warning("join from %s refused: %s", self.client_address[0], exc.message)
                    self._answer(exc.http_status, json.dumps({"message": exc.message}).encode())
                except ValueError:
                    self._answer(400, b'{"message": "join request: not JSON"}')

        self.service = TlsHttpServer(address, port, context, Handler, "join service")

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        self.service.stop()


def _split(remote: str) -> tuple[str, int]:
    host, _, port = remote.rpartition(":")
    if not host:
        return remote, 2377
    if not port.isdigit():
        raise InvalidArgument(f"invalid remote address {remote!r}: expected HOST[:PORT]")
    return host.strip("[]"), int(port)


def fetch_ca(remote: str, timeout: float = 10) -> bytes:
    """The CA a manager presents, trusted by nobody yet: the caller checks it against its token."""
    host, port = _split(remote)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return _request(host, port, context, "GET", "/ca", None, timeout)


def request_join(remote: str, ca_file: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    host, port = _split(remote)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.check_hostname = False  # the chain is checked against the swarm's CA; managers go by address
    return json.loads(_request(host, port, context, "POST", "/join", json.dumps(body).encode(), timeout))


def _request(host: str, port: int, context: ssl.SSLContext, method: str, path: str, body: bytes | None,
             timeout: float) -> bytes:  # fmt: skip
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except ssl.SSLCertVerificationError as exc:
        raise Forbidden(f"the manager at {host}:{port} is not of the swarm the token names: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"could not reach the manager at {host}:{port}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        try:
            message = json.loads(data)["message"]
        except (ValueError, KeyError, TypeError):
            message = data.decode(errors="replace")
        error = {400: InvalidArgument, 403: Forbidden}.get(response.status, Unavailable)
        raise error(f"the manager refused: {message}")
    return data
