"""pcap from other nodes, for a capture across a swarm (diag/cluster_capture.py).

A node streams what its tcpdumps write, untouched, in frames: which tcpdump, how many bytes. It starts with
one INFO frame (each tcpdump's interface name, filter and pcap header fields) and ends with one STATS frame
(each tcpdump's counters). The manager that asked turns every node's tcpdumps into sources of one Capture
(capture/session.py), next to its own: the packets are parsed and turned into pcapng once, on the manager,
not once on each node and again on the manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boxnet.capture.pcap import Record
from boxnet.capture.session import CapturePoint, Source

INFO, DATA, STATS = 1, 2, 3
FRAME = struct.Struct("<BBI")  # kind, the source's index on its node, payload length
FINISH_SECONDS = 5
MAX_FRAME = 1 << 24
MAX_SOURCES = 255  # a frame names its source in one byte
MAX_QUEUED = 32 << 20  # bytes a remote tcpdump may have waiting for the Capture


def frame(kind: int, index: int, payload: bytes) -> bytes:
    return FRAME.pack(kind, index, len(payload)) + payload


def describe(sources: list[Source], bpf: str) -> bytes:
    """The INFO frame: what the manager needs to read each tcpdump's pcap without its header."""
    return frame(INFO, 0, json.dumps([
        {"name": s.point.name, "description": s.point.description, "filter": s.point.filter(bpf),
         "linktype": s.linktype, "snaplen": s.snaplen, "nanoseconds": s.nanoseconds, "endian": s.endian}
        for s in sources]).encode())  # fmt: skip


def counters(sources: list[Source]) -> bytes:
    return frame(STATS, 0, json.dumps([[s.received, s.dropped] for s in sources]).encode())


class FrameReader:
    """Frames out of a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.buffer += data
        found, offset, buffer = [], 0, self.buffer
        with memoryview(buffer) as view:
            while offset + FRAME.size <= len(buffer):
                kind, index, length = FRAME.unpack_from(buffer, offset)
                if kind not in (INFO, DATA, STATS) or length > MAX_FRAME:
                    raise ValueError(f"bad frame (kind {kind}, {length} bytes)")
                if offset + FRAME.size + length > len(buffer):
                    break
                found.append((kind, index, bytes(view[offset + FRAME.size : offset + FRAME.size + length])))
                offset += FRAME.size + length
        del buffer[:offset]
        return found


@dataclass
class RelayedSource(Source):
    """Another node's tcpdump: its pcap arrives as chunks that the node's relay queues here (an eventfd, which
    the Capture polls with its local tcpdumps' pipes, says when), its header fields came in the INFO frame,
    its counters come in the STATS frame. No pipe: a chunk is not copied on its way to the Capture.

    The queue is bounded: a relay that gets ahead of the Capture waits, which stops it reading the node's
    connection, which makes the node's tcpdump drop in its kernel ring, where the drop is counted."""

    stop: Callable[[], None] = field(default=lambda: None)
    event_fd: int = -1
    queue: deque[bytes] = field(default_factory=deque)
    queued: int = 0  # bytes in the queue
    done: threading.Event = field(default_factory=threading.Event)  # the relay has ended: nothing more comes
    room: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    @classmethod
    def from_info(cls, info: dict[str, Any], stop: Callable[[], None]) -> RelayedSource:
        point = CapturePoint(str(info["name"]), str(info["description"]), None, "", str(info["filter"]))
        return cls(0, point, None, linktype=int(info["linktype"]), snaplen=int(info["snaplen"]),
                   nanoseconds=bool(info["nanoseconds"]), endian="<" if info["endian"] == "<" else ">",
                   header_read=True, stop=stop,
                   event_fd=os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))  # fmt: skip

    @property
    def fd(self) -> int:
        return self.event_fd

    def deliver(self, chunk: bytes) -> None:
        """The relay's thread: a chunk of this tcpdump's pcap (waits while the queue is full)."""
        with self.room:
            while self.queued >= MAX_QUEUED and not self.closed:
                self.room.wait(1)
            if self.closed:
                return
            self.queue.append(chunk)
            self.queued += len(chunk)
            os.eventfd_write(self.event_fd, 1)

    def end(self, counters: list | None) -> None:
        """The relay's thread: nothing more comes; the counters, if the node sent them."""
        with self.room:
            if counters is not None:
                self.received, self.dropped = counters
            self.done.set()
            if not self.closed:
                os.eventfd_write(self.event_fd, 1)

    def pull(self) -> list[bytes] | None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.event_fd)
        finished = self.done.is_set()  # before the queue is drained: what was queued before the end is in it
        chunks = self._drain()
        if finished and chunks:
            os.eventfd_write(self.event_fd, 1)  # the end is still to be said, at the next poll
        return None if finished and not chunks else chunks

    def _drain(self) -> list[bytes]:
        with self.room:
            chunks = list(self.queue)
            self.queue.clear()
            self.queued = 0
            self.room.notify_all()
        return chunks

    def interrupt(self) -> None:
        self.stop()

    def finish(self) -> list[Record]:
        """The last records (up to the relay's end, which comes after the node's counters)."""
        self.done.wait(FINISH_SECONDS)
        return [record for chunk in self._drain() for record in self.take(chunk)]

    def close(self) -> None:
        """Idempotent; a relay still running delivers nothing more, and never to a closed descriptor."""
        with self.room:
            if self.closed:
                return
            self.closed = True
            self.room.notify_all()
            os.close(self.event_fd)
            self.event_fd = -1
