"""The embedded resolver: one process, one loop, and a socket pair inside every container's namespace.

boxnetd makes the sockets inside each container's namespace (bound to 127.0.0.11 on a free port, with a
rule there that redirects port 53 to them) and hands them over on the control socket along with every
change of names. So each query arrives on a socket that says which container asked, and the answer is what
that container may see.

Hot path: UDP queries are read and answered in batches (recvmmsg/sendmmsg), each container's answers cached
by the question's bytes. Any change of names empties every cache: changes are rare, questions are not.
TCP is served in the same loop (dns/tcp.py). No container can starve the others: the control socket is
served first, a container's UDP socket gets a few batches a turn, its forwarded questions in flight and
its TCP connections are bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from boxnet.dns import packet, tcp
from boxnet.dns.directory import Action, Directory, Registration
from boxnet.dns.querylog import QueryLog
from boxnet.dns.upstream import Forwarder, resolve_blocking
from boxnet.kernel import mmsg

log = logging.getLogger("boxnet-dns")

CACHE_LIMIT = 4096
CONTROL_BUFFER = 4 << 20
# A turn of the loop serves at most this many batches (of 64) from one container's UDP socket; the rest wait
# for the next turn, after everyone else's.
BATCHES_PER_TURN = 4
# Forwarded questions one container may have waiting upstream; more get SERVFAIL at once.
MAX_IN_FLIGHT = 256


class Client:
    """One container's pair of sockets, its settings and its answer cache."""

    def __init__(self, container_id: str, udp: socket.socket, tcp: socket.socket, upstreams: list[str],
                 querylog: QueryLog) -> None:  # fmt: skip
        self.container_id = container_id
        self.udp, self.tcp = udp, tcp
        self.upstreams = upstreams
        self.cache: dict[bytes, bytes] = {}
        self.log = querylog
        self.closed = False
        self.connections: dict[int, tcp.Connection] = {}
        self.in_flight = 0  # forwarded questions waiting upstream

    def close(self) -> None:
        self.closed = True
        self.udp.close()
        self.tcp.close()


class Resolver:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.directory = Directory()
        self.clients: dict[str, Client] = {}
        self.logs: dict[str, QueryLog] = {}
        self.by_udp_fd: dict[int, Client] = {}
        self.by_tcp_fd: dict[int, Client] = {}
        self.connections: dict[int, tcp.Connection] = {}
        self.epoll = select.epoll()
        self.batch = mmsg.Batch(64)
        self.forwarder = Forwarder(self._watch, self._unwatch)
        self.fetches = tcp.TruncatedFetches()
        self._next_sweep = time.monotonic() + tcp.IDLE_SECONDS
        control.setblocking(False)
        self._watch(control.fileno())
        self._watch(self.fetches.wake_read)

    def _watch(self, fd: int) -> None:
        self.epoll.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        control_fd = self.control.fileno()
        while True:
            timeout = self.forwarder.expire()
            timeout = min(timeout, self._sweep()) if timeout is not None else self._sweep()
            try:
                events = self.epoll.poll(timeout)
            except InterruptedError:
                continue
            # Changes first (a container that is starting waits on them), then everyone else.
            events.sort(key=lambda event: event[0] != control_fd)
            for fd, mask in events:
                client = self.by_udp_fd.get(fd)
                if client is not None:
                    self._serve_udp(client)
                elif fd == control_fd:
                    if not self._control():
                        return
                elif fd in self.connections:
                    self._tcp_event(self.connections[fd], mask)
                elif fd in self.by_tcp_fd:
                    self._accept(self.by_tcp_fd[fd])
                elif fd == self.fetches.wake_read:
                    self.fetches.collect()
                else:
                    self.forwarder.readable(fd)

    def _serve_udp(self, client: Client) -> None:
        """A few batches, not everything waiting: a container that floods its socket only delays itself."""
        batch, view, slot_size = self.batch, self.batch.view, mmsg.SLOT
        fd, cache, append = client.udp.fileno(), client.cache, client.log.append
        for _ in range(BATCHES_PER_TURN):
            lengths = batch.receive(fd)
            if not lengths:
                return
            now, started = time.time(), time.perf_counter()
            answered = []
            for slot, length in enumerate(lengths):
                start = slot * slot_size
                key = bytes(view[start + 2 : start + length])
                tail = cache.get(key)
                source = "local"
                if tail is None:
                    tail, source = self._answer_udp(client, slot, key)
                    if tail is None:
                        continue  # forwarded (answered later) or dropped
                batch.answer_keeping_id(slot, tail)
                answered.append((key, tail, source))
            batch.send(fd)
            seconds = time.perf_counter() - started
            for key, tail, source in answered:
                append((now, "udp", key, tail, source, seconds))

    def _local(self, client: Client, message: bytes, udp: bool) -> tuple[str, bytes | None, Any, bool]:
        """What this resolver says to a message, UDP or TCP alike: (source, answer, query, cacheable).
        Source is "local", "refused" or "malformed" with an answer, "forward" (for the caller to forward),
        or "drop" for what deserves no answer. Over UDP the answer fits the client's size, or is cut (TC)."""
        try:
            query = packet.parse_query(message)
        except packet.FormatError as exc:
            error = packet.error_response(message, packet.FORMERR) if exc.query_id is not None else None
            return ("malformed", error, None, False) if error else ("drop", None, None, False)
        if query.opcode != 0:
            return "local", packet.response(query, packet.NOTIMP, authoritative=False), query, False
        resolution = self.directory.resolve(client.container_id, query)
        if resolution.action is Action.FORWARD:
            return "forward", None, query, False
        answer = packet.response(query, resolution.rcode, list(resolution.records),
                                 authoritative=resolution.action is Action.ANSWER,
                                 limit=query.udp_limit if udp else 65535)  # fmt: skip
        return resolution.action.value, answer, query, resolution.cacheable

    def _answer_udp(self, client: Client, slot: int, key: bytes) -> tuple[bytes | None, str]:
        message = self.batch.datagram(slot, 2) + key
        source, answer, query, cacheable = self._local(client, message, True)
        if source == "forward":
            assert query is not None
            self._forward_udp(client, self.batch.sender(slot), message, query, key)
            return None, ""
        if answer is None:
            return None, source
        if cacheable:
            if len(client.cache) >= CACHE_LIMIT:
                client.cache.clear()
            client.cache[key] = answer[2:]
        return answer[2:], source

    def _forward_udp(self, client: Client, sender: tuple[str, int], message: bytes, query: packet.Query,
                     key: bytes) -> None:  # fmt: skip
        started = time.perf_counter()

        def reply(answer: bytes, source: str) -> None:
            if client.closed:
                return
            with contextlib.suppress(OSError):
                client.udp.sendto(answer, sender)
            client.log.record("udp", key, answer[2:], source, time.perf_counter() - started)

        self._forward(client, message, query, reply)

    def _forward(self, client: Client, message: bytes, query: packet.Query,
                 reply: Callable[[bytes, str], None]) -> None:  # fmt: skip
        """Upstream, unless this container already has too many questions waiting there."""
        if client.in_flight >= MAX_IN_FLIGHT:
            reply(packet.response(query, packet.SERVFAIL, authoritative=False), "too many questions in flight")
            return
        client.in_flight += 1

        def done(answer: bytes, source: str) -> None:
            client.in_flight -= 1
            reply(answer, source)

        self.forwarder.forward(done, message, query, client.upstreams)

    # ---- TCP -----------------------------------------------------------------------------------------
    def _accept(self, client: Client) -> None:
        while True:
            try:
                sock, _ = client.tcp.accept()
            except OSError:
                return
            if len(client.connections) >= tcp.MAX_CONNECTIONS:
                sock.close()  # at its limit: the container's own connections wait for each other, not others
                continue
            sock.setblocking(False)
            connection = tcp.Connection(sock, client)
            client.connections[sock.fileno()] = connection
            self.connections[sock.fileno()] = connection
            self._watch(sock.fileno())

    def _tcp_event(self, connection: tcp.Connection, mask: int) -> None:
        if mask & select.EPOLLOUT:
            self._flush(connection)
        if connection.closed or not mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            return
        try:
            data = connection.sock.recv(65537)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        connection.last_active = time.monotonic()
        connection.inbox += data
        client = connection.owner
        assert isinstance(client, Client)
        for message in connection.messages():
            self._answer_tcp(client, connection, message)
        if len(connection.inbox) > 65537:  # no message is that long: not DNS
            self._close(connection)

    def _answer_tcp(self, client: Client, connection: tcp.Connection, message: bytes) -> None:
        started = time.perf_counter()

        def reply(answer: bytes, source: str) -> None:
            if answer[2] & (packet.FLAG_TC >> 8) and source.startswith("upstream "):
                # Cut to fit UDP upstream: fetched again over TCP, off the loop.
                if self.fetches.submit(lambda: resolve_blocking(message, query, client.upstreams), deliver):
                    return
                answer = packet.response(query, packet.SERVFAIL, authoritative=False)
            deliver(answer, source)

        def deliver(answer: bytes, source: str) -> None:
            client.log.record("tcp", message[2:], answer[2:], source, time.perf_counter() - started)
            self._send(connection, answer)

        source, answer, query, _ = self._local(client, message, False)
        if source == "forward":
            assert query is not None
            self._forward(client, message, query, reply)
        elif answer is None:
            self._close(connection)
        else:
            deliver(answer, source)

    def _send(self, connection: tcp.Connection, answer: bytes) -> None:
        if connection.closed:
            return
        connection.outbox += len(answer).to_bytes(2, "big") + answer
        self._flush(connection)

    def _flush(self, connection: tcp.Connection) -> None:
        try:
            sent = connection.sock.send(connection.outbox)
            del connection.outbox[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._close(connection)
            return
        if len(connection.outbox) > tcp.MAX_UNREAD:
            self._close(connection)  # it does not read its answers
            return
        wanted = bool(connection.outbox)
        if wanted != connection.writing:
            connection.writing = wanted
            events = select.EPOLLIN | (select.EPOLLOUT if wanted else 0)
            with contextlib.suppress(OSError):
                self.epoll.modify(connection.sock.fileno(), events)

    def _close(self, connection: tcp.Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        fd = connection.sock.fileno()
        self._unwatch(fd)
        self.connections.pop(fd, None)
        client = connection.owner
        assert isinstance(client, Client)
        client.connections.pop(fd, None)
        connection.sock.close()

    def _sweep(self) -> float:
        """Closes connections idle too long; returns the seconds until the next look."""
        now = time.monotonic()
        if now >= self._next_sweep:
            for connection in [c for c in self.connections.values() if now - c.last_active > tcp.IDLE_SECONDS]:
                self._close(connection)
            self._next_sweep = now + 1.0
        return max(self._next_sweep - now, 0.0)

    # ---- control -------------------------------------------------------------------------------------
    def _control(self) -> bool:
        """Handles what boxnetd sent; False once it has gone (the resolver goes with it)."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, CONTROL_BUFFER, 4)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            try:
                reply = self._apply(json.loads(data), fds)
            except Exception as exc:  # answered to boxnetd, which reports it; the loop must go on
                log.exception("control message failed")
                for fd in fds:
                    os.close(fd)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.control.setblocking(True)
            try:
                self.control.send(json.dumps(reply).encode())
            finally:
                self.control.setblocking(False)

    def _apply(self, request: dict, fds: list[int]) -> dict:
        op = request["op"]
        if op == "log":
            querylog = self.logs.get(request["container"])
            return {"ok": True, "entries": querylog.decoded(int(request.get("tail", 100))) if querylog else []}
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "network":
            self.directory.set_network(request["id"], request["name"], request["subnets"],
                                       request["internal"], request["discoverable"])  # fmt: skip
        elif op == "drop-network":
            self.directory.drop_network(request["id"])
        elif op == "register":
            self.directory.add(Registration.make(
                request["container"], request["network"], request["network_name"], request["name"],
                request["hostname"], request["aliases"], request.get("ipv4", ""), request.get("ipv6", ""),
            ))  # fmt: skip
        elif op == "unregister":
            self.directory.remove(request["container"], request["network"])
        elif op == "serve":
            self._serve(request["container"], request["upstreams"], fds)
        elif op == "unserve":
            self._retire(request["container"])
        elif op == "forget":
            self._retire(request["container"])
            self.logs.pop(request["container"], None)
        else:
            raise ValueError(f"unknown operation {op!r}")
        for client in self.clients.values():
            client.cache.clear()
        return {"ok": True}

    def _serve(self, container_id: str, upstreams: list[str], fds: list[int]) -> None:
        if len(fds) != 2:
            raise ValueError(f"serve needs a UDP and a TCP socket, got {len(fds)} fds")
        udp, tcp = socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1])
        udp.setblocking(False)
        tcp.setblocking(False)
        self._retire(container_id)
        querylog = self.logs.setdefault(container_id, QueryLog())
        client = Client(container_id, udp, tcp, list(upstreams), querylog)
        self.clients[container_id] = client
        self.by_udp_fd[udp.fileno()] = client
        self.by_tcp_fd[tcp.fileno()] = client
        self._watch(udp.fileno())
        self._watch(tcp.fileno())

    def _retire(self, container_id: str) -> None:
        client = self.clients.pop(container_id, None)
        if client is None:
            return
        for connection in list(client.connections.values()):
            self._close(connection)
        for fd, table in ((client.udp.fileno(), self.by_udp_fd), (client.tcp.fileno(), self.by_tcp_fd)):
            table.pop(fd, None)
            self._unwatch(fd)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boxnet-dns", description="boxnet's embedded DNS resolver")
    parser.add_argument("--control-fd", type=int, required=True,
                        help="boxnetd's end of the control socket: the resolver ends when it closes")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("BOXNET_LOG", "info").upper(),
                        format="%(asctime)s boxnet-dns %(levelname)s %(message)s")  # fmt: skip
    control = socket.socket(fileno=args.control_fd)
    Resolver(control).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
