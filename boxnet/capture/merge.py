"""Several pcapng streams merged into one: a capture across a cluster is one stream per node (each already a
merge of that node's capture points, capture/session.py), and the user gets one section with every node's
interfaces, numbered one after another, and all their packets on one timeline.

Each stream arrives on a file descriptor (a pipe that a relay fills from the node's connection) and starts
with a known number of interface blocks; its statistics blocks at the end carry what the node's tcpdumps
counted. A stream is held back MERGE_REORDER_SECONDS, more than a node's own hold-back, so that what a slower
node sends still lands in timestamp order.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from boxnet.capture import pcapng
from boxnet.errors import InvalidArgument
from boxnet.kernel.readiness import readable

MERGE_REORDER_SECONDS = 0.5
START_SECONDS = 10
STOP_GRACE_SECONDS = 5  # how long a stream has, once asked to stop, to send its last packets and counters
READ_CHUNK = 1 << 20


@dataclass
class Input:
    """One node's stream."""

    name: str  # what errors call it: the node
    fd: int
    interfaces: int  # the interface blocks the stream starts with
    stop: Callable[[], None]  # asks the stream to end (its last packets and statistics still come)
    reader: pcapng.Reader = field(default_factory=pcapng.Reader)
    base: int = 0  # its first interface's number in the merged section
    ended: bool = False


class Merge:
    def __init__(self, inputs: list[Input], count: int = 0, duration: float = 0) -> None:
        self.inputs, self.count, self.duration = inputs, count, duration
        self.stopping = threading.Event()
        self.started_ns = time.time_ns()
        # (timestamp, (id of the input, its interface), data, original length): an input's interfaces are
        # numbered in the merged section only once every input's header is in
        self.pending: list[tuple[int, tuple[int, int], bytes, int]] = []
        self.delivered: list[int] = []
        self._stopped = False

    def start(self, seconds: float = START_SECONDS) -> None:
        """Reads every stream's interface blocks: a stream that ends before them is an error here, before any
        byte goes to the client."""
        deadline = time.monotonic() + seconds
        base = 0
        for source in self.inputs:
            while len(source.reader.interfaces) < source.interfaces:
                if not readable([source.fd], deadline - time.monotonic()):
                    raise InvalidArgument(f"the capture on {source.name} did not start within {seconds:g}s")
                chunk = os.read(source.fd, READ_CHUNK)
                if not chunk:
                    raise InvalidArgument(f"the capture on {source.name} ended before it started")
                self._feed(source, chunk)
            source.base = base
            base += source.interfaces
        self.delivered = [0] * base

    def header(self) -> bytes:
        blocks = [pcapng.section_header()]
        for source in self.inputs:
            blocks += [interface.block for interface in source.reader.interfaces[: source.interfaces]]
        return b"".join(blocks)

    def _feed(self, source: Input, chunk: bytes) -> None:
        for packet in source.reader.feed(chunk):
            heapq.heappush(self.pending, (packet.timestamp_ns, (id(source), packet.interface), packet.data,
                                          packet.original_length))  # fmt: skip

    def run(self, write: Callable[[bytes], None]) -> None:
        """Streams the merged pcapng until the count, the duration, the stop event or the end of every stream."""
        write(self.header())
        by_id = {id(source): source for source in self.inputs}
        live = {source.fd: source for source in self.inputs}
        deadline = time.monotonic() + self.duration if self.duration else None
        grace: float | None = None
        out: list[bytes] = []
        try:
            while live:
                now = time.monotonic()
                if grace is None and (self.stopping.is_set() or self._enough() or (deadline and now >= deadline)):
                    self._stop_all()
                    grace = now + STOP_GRACE_SECONDS
                if grace is not None and now >= grace:
                    break
                for fd in readable(live, 0.1):
                    source = live[fd]
                    chunk = os.read(fd, READ_CHUNK)
                    if not chunk:
                        source.ended = True
                        del live[fd]
                        continue
                    self._feed(source, chunk)
                horizon = time.time_ns() - int(MERGE_REORDER_SECONDS * 1e9)
                while self.pending and self.pending[0][0] <= horizon and not self._enough():
                    out.append(self._block(heapq.heappop(self.pending), by_id))
                if out:
                    write(b"".join(out))
                    out.clear()
        finally:
            self._stop_all()
            while self.pending and not self._enough():
                out.append(self._block(heapq.heappop(self.pending), by_id))
            out.append(self.trailer())
            write(b"".join(out))

    def _stop_all(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for source in self.inputs:
            source.stop()

    def _enough(self) -> bool:
        return bool(self.count) and sum(self.delivered) >= self.count

    def _block(self, item: tuple[int, tuple[int, int], bytes, int], by_id: dict[int, Input]) -> bytes:
        timestamp, (source_id, interface), data, original = item
        number = by_id[source_id].base + interface
        self.delivered[number] += 1
        return pcapng.enhanced_packet(number, timestamp, data, original)

    def trailer(self) -> bytes:
        """A statistics block per interface: the node's counters (received by its filter, dropped by its
        kernel) and what this stream delivered."""
        now = time.time_ns()
        blocks = []
        for source in self.inputs:
            for index, interface in enumerate(source.reader.interfaces[: source.interfaces]):
                number = source.base + index
                blocks.append(pcapng.interface_statistics(number, now, interface.received, interface.dropped,
                                                          self.delivered[number], self.started_ns))  # fmt: skip
        return b"".join(blocks)
