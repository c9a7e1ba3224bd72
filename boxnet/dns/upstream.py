"""Forwarding to upstream resolvers: in the resolver's loop for UDP clients, blocking for TCP ones.

Upstreams are tried in order. An attempt ends with an answer, a refusal (ICMP port unreachable on the
connected socket), or ATTEMPT_SECONDS of silence; after TOTAL_SECONDS the client gets SERVFAIL, well inside
the 5 s a stub resolver waits, so a dead upstream is an answer and never a hang. Answers are matched on the
id boxnet chose and the question, and go back with the client's own id.
"""

from __future__ import annotations

import heapq
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from boxnet.dns import packet

ATTEMPT_SECONDS = 0.8
TOTAL_SECONDS = 1.8
# An upstream that refused (ICMP port unreachable) is skipped this long, unless no other is left to try:
# with the host's 127.0.0.53 listed first and nobody there, every question would otherwise cost two sends.
REFUSED_SKIP_SECONDS = 5.0
MAX_UDP_ANSWER = 65535


def parse_upstream(text: str) -> tuple[str, int]:
    """'IP' or 'IP#PORT' (dig's notation; a colon would be ambiguous with IPv6)."""
    host, _, port = text.partition("#")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"{host!r} is not an IP address") from None
    number = int(port) if port.isdigit() else 53 if not port else 0
    if not 0 < number < 65536:
        raise ValueError(f"bad port in upstream {text!r}")
    return host, number


def _question(message: bytes) -> tuple[tuple[bytes, ...], int] | None:
    try:
        labels, offset = packet.read_name(message, packet.HEADER.size)
        (qtype,) = struct.unpack_from("!H", message, offset)
    except (packet.FormatError, struct.error):
        return None
    return tuple(label.lower() for label in labels), qtype


@dataclass(eq=False)
class Pending:
    reply: Callable[[bytes, str], None]  # sends the answer (with the client's id) and logs it
    message: bytes
    query: packet.Query
    upstreams: list[str]
    started: float
    attempt: int = -1
    deadline: float = 0.0
    upstream: Upstream | None = None
    upstream_id: int = 0
    question: tuple[tuple[bytes, ...], int] = field(default=((), 0))


class Upstream:
    def __init__(self, address: str) -> None:
        self.address = address
        host, port = parse_upstream(address)
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect((host, port))
        self.pending: dict[int, Pending] = {}
        self.refused_until = 0.0

    def new_id(self) -> int:
        while True:
            candidate = random.getrandbits(16)
            if candidate not in self.pending:
                return candidate


class Forwarder:
    def __init__(self, watch: Callable[[int], None], unwatch: Callable[[int], None]) -> None:
        self.watch, self.unwatch = watch, unwatch
        self.upstreams: dict[str, Upstream] = {}
        self.by_fd: dict[int, Upstream] = {}
        self.deadlines: list[tuple[float, int, Pending]] = []
        self._order = 0

    def forward(self, reply: Callable[[bytes, str], None], message: bytes, query: packet.Query,
                upstreams: list[str]) -> None:  # fmt: skip
        pending = Pending(reply, message, query, upstreams, time.monotonic())
        pending.question = (tuple(label.lower() for label in query.labels), query.qtype)
        self._next_attempt(pending)

    def _upstream(self, address: str) -> Upstream:
        upstream = self.upstreams.get(address)
        if upstream is None:
            upstream = Upstream(address)
            self.upstreams[address] = upstream
            self.by_fd[upstream.sock.fileno()] = upstream
            self.watch(upstream.sock.fileno())
        return upstream

    def _next_attempt(self, pending: Pending) -> None:
        self._release(pending)
        now = time.monotonic()
        give_up_at = pending.started + TOTAL_SECONDS
        while pending.attempt + 1 < len(pending.upstreams) and now < give_up_at:
            pending.attempt += 1
            address = pending.upstreams[pending.attempt]
            try:
                upstream = self._upstream(address)
                if upstream.refused_until > now and pending.attempt + 1 < len(pending.upstreams):
                    continue
                upstream_id = upstream.new_id()
                upstream.sock.send(packet.with_id(pending.message, upstream_id))
            except (OSError, ValueError):
                continue  # unreachable, or not an address: the next one
            pending.upstream, pending.upstream_id = upstream, upstream_id
            pending.deadline = min(now + ATTEMPT_SECONDS, give_up_at)
            upstream.pending[upstream_id] = pending
            self._order += 1
            heapq.heappush(self.deadlines, (pending.deadline, self._order, pending))
            return
        pending.reply(packet.response(pending.query, packet.SERVFAIL, authoritative=False), "upstream failed")

    def _release(self, pending: Pending) -> None:
        if pending.upstream is not None:
            pending.upstream.pending.pop(pending.upstream_id, None)
            pending.upstream = None

    def readable(self, fd: int) -> None:
        upstream = self.by_fd.get(fd)
        if upstream is None:
            return
        while True:
            try:
                message = upstream.sock.recv(MAX_UDP_ANSWER)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                # ICMP port unreachable: this upstream is not there; everything waiting on it moves on.
                upstream.refused_until = time.monotonic() + REFUSED_SKIP_SECONDS
                for pending in list(upstream.pending.values()):
                    self._next_attempt(pending)
                continue
            except OSError:
                return
            if len(message) < packet.HEADER.size:
                continue
            (upstream_id,) = struct.unpack_from("!H", message)
            pending = upstream.pending.get(upstream_id)
            if pending is None or _question(message) != pending.question:
                continue  # late, or not an answer to what was asked
            self._release(pending)
            pending.reply(packet.with_id(message, pending.query.id), f"upstream {upstream.address}")

    def expire(self) -> float | None:
        """Moves on whatever waited too long; returns seconds until the next deadline (None: nothing waits)."""
        now = time.monotonic()
        while self.deadlines:
            deadline, _, pending = self.deadlines[0]
            if pending.upstream is None or pending.deadline != deadline:
                heapq.heappop(self.deadlines)  # answered, or moved on since
                continue
            if deadline > now:
                return deadline - now
            heapq.heappop(self.deadlines)
            self._next_attempt(pending)
        return None

    def close(self) -> None:
        for upstream in self.upstreams.values():
            self.unwatch(upstream.sock.fileno())
            upstream.sock.close()
        self.upstreams.clear()
        self.by_fd.clear()


def resolve_blocking(message: bytes, query: packet.Query, upstreams: list[str]) -> tuple[bytes, str]:
    """The answer for a TCP client, any size: UDP first, TCP when the answer came back truncated."""
    started = time.monotonic()
    wanted = (tuple(label.lower() for label in query.labels), query.qtype)
    for address in upstreams:
        remaining = TOTAL_SECONDS - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            host, port = parse_upstream(address)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            upstream_id = random.getrandbits(16)
            outgoing = packet.with_id(message, upstream_id)
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.settimeout(min(ATTEMPT_SECONDS, remaining))
                udp.connect((host, port))
                udp.send(outgoing)
                deadline = time.monotonic() + min(ATTEMPT_SECONDS, remaining)
                while True:
                    udp.settimeout(max(deadline - time.monotonic(), 0.001))
                    answer = udp.recv(MAX_UDP_ANSWER)
                    if answer[:2] == outgoing[:2] and _question(answer) == wanted:
                        break
            if answer[2] & (packet.FLAG_TC >> 8):
                with socket.create_connection((host, port), timeout=min(ATTEMPT_SECONDS, remaining)) as tcp:
                    tcp.sendall(struct.pack("!H", len(outgoing)) + outgoing)
                    answer = read_framed(tcp)
            return packet.with_id(answer, query.id), f"upstream {address}"
        except (OSError, ValueError, struct.error):
            continue  # silent, refused or unreachable: the next upstream
    return packet.response(query, packet.SERVFAIL, authoritative=False), "upstream failed"


def read_framed(sock: socket.socket) -> bytes:
    """One length-prefixed DNS message from a TCP stream."""
    (length,) = struct.unpack("!H", _read_exactly(sock, 2))
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionResetError("connection closed mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
