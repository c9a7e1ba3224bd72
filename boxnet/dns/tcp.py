"""DNS over TCP inside the resolver's one loop: no thread per connection, and bounded everywhere, so that one
container holding a thousand connections (or never reading its answers) costs the others nothing.

- at most MAX_CONNECTIONS open at once per container; more are accepted and closed at once;
- a connection idle for IDLE_SECONDS is closed (RFC 7766 asks servers to close idle ones);
- what a client sends is read as it comes, at most one message's worth buffered; what it does not read is
  buffered up to MAX_UNREAD bytes, after which the connection is closed;
- an answer the upstream truncated over UDP is fetched again over TCP on a small pool of threads, whose
  results the loop picks up (at most FETCHERS at once; beyond that the client gets SERVFAIL).
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MAX_CONNECTIONS = 16
IDLE_SECONDS = 10.0
MAX_UNREAD = 256 * 1024
FETCHERS = 4


class Connection:
    def __init__(self, sock: socket.socket, owner: object) -> None:
        self.sock = sock
        self.owner = owner  # the container's client, as the resolver knows it
        self.inbox = b""
        self.outbox = bytearray()
        self.last_active = time.monotonic()
        self.closed = False
        self.writing = False  # registered for EPOLLOUT

    def messages(self) -> list[bytes]:
        """The complete length-prefixed messages received so far."""
        found = []
        while len(self.inbox) >= 2:
            (length,) = struct.unpack_from("!H", self.inbox)
            if len(self.inbox) < 2 + length:
                break
            found.append(self.inbox[2 : 2 + length])
            self.inbox = self.inbox[2 + length :]
        return found


class TruncatedFetches:
    """Answers to fetch again over TCP, on a few threads; the loop collects what they finished."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=FETCHERS, thread_name_prefix="dns-tcp-fetch")
        self._done: collections.deque[tuple[Callable[[bytes, str], None], bytes, str]] = collections.deque()
        self._running = 0
        self.wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def submit(self, fetch: Callable[[], tuple[bytes, str]], deliver: Callable[[bytes, str], None]) -> bool:
        """False when every fetcher is busy (the caller answers SERVFAIL)."""
        if self._running >= FETCHERS:
            return False
        self._running += 1

        def run() -> None:
            answer, source = fetch()
            self._done.append((deliver, answer, source))
            os.write(self._wake_write, b"x")

        self._pool.submit(run)
        return True

    def collect(self) -> None:
        """In the loop, once wake_read is readable: delivers what the fetchers finished."""
        try:
            while os.read(self.wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        while self._done:
            deliver, answer, source = self._done.popleft()
            self._running -= 1
            deliver(answer, source)
