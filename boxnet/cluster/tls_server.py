"""An HTTPS server on a thread of its own: what the join service and the node port both run."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TlsHttpServer:
    def __init__(self, address: str, port: int, context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler],
                 name: str) -> None:  # fmt: skip
        """Binds at once (so that a port in use is an error here); serves from start()."""
        self.server = ThreadingHTTPServer((address, port), handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
