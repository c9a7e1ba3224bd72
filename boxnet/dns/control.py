"""boxnetd's end of the resolver: starting the process and talking to it over a socket pair.

Messages are JSON, one per SOCK_SEQPACKET datagram, each answered before the next is sent; sockets travel
with them as SCM_RIGHTS. The resolver ends when its end of the pair reads EOF, which is when boxnetd closes
it or dies (no PR_SET_PDEATHSIG: that fires when the *thread* that started the child ends, and a resolver
is restarted from a short-lived thread). A restarted daemon starts a new one and hands it everything again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading

from boxnet.errors import Internal

BUFFER = 4 << 20
REPLY_SECONDS = 10
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


class ResolverGone(Internal):
    pass


class ResolverProcess:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else 0

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            for option in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
        ours.settimeout(REPLY_SECONDS)
        command = [sys.executable, "-m", "boxnet.dns.server", "--control-fd", str(theirs.fileno())]
        self._process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._sock = ours
        self.request({"op": "ping"})

    def request(self, message: dict, fds: list[int] | None = None) -> dict:
        with self._lock:
            if self._sock is None:
                raise ResolverGone("the DNS resolver is not running")
            try:
                socket.send_fds(self._sock, [json.dumps(message).encode()], fds or [])
                data = self._sock.recv(BUFFER)
            except OSError as exc:
                raise ResolverGone(f"the DNS resolver did not answer: {exc}") from exc
        if not data:
            raise ResolverGone("the DNS resolver has gone")
        reply = json.loads(data)
        if not reply.get("ok"):
            raise Internal(f"DNS resolver: {reply.get('error')}")
        return reply

    def wait(self) -> int:
        """Blocks until the resolver ends; its exit status."""
        process = self._process
        return process.wait() if process is not None else 0

    def stop(self) -> None:
        """Closing the socket ends the resolver; it is waited for (and killed by pid if it lingers)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
