"""A capture: dumpcap for one target (DirectCapture), or a tcpdump in each target's network namespace
merged into one pcapng stream (Capture).

The capture tools do the capturing (libpcap's TPACKET_V3 ring and the kernel's BPF); they run in the
target's *network* namespace only, from the host's filesystem, and nothing runs in the container. Each
tcpdump writes pcap to a pipe; boxnet turns the records into pcapng packet blocks for the interface named
after its target and emits them in timestamp order (held back at most REORDER_SECONDS). At the end each
interface gets a statistics block with what tcpdump counted: received by the filter, dropped by the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import itertools
import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from boxnet.capture import pcap, pcapng
from boxnet.errors import InvalidArgument
from boxnet.kernel.readiness import readable
from boxnet.runtime.procs import dies_with_its_thread

SNAPLEN = 262144
REORDER_SECONDS = 0.2
START_SECONDS = 5
READ_CHUNK = 1 << 20
RING_MIB = 64
F_SETPIPE_SZ = 1031
PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO = 0xA1B2C3D4, 0xA1B23C4D


@dataclass(frozen=True)
class CapturePoint:
    name: str  # the interface's name in the pcapng: the container's (or the bridge's)
    description: str
    netns: str | None  # a namespace path; None for the daemon's own
    interface: str  # what tcpdump -i gets
    bpf: str | None = None  # a filter of its own (a node's underlay: its VXLAN), instead of the capture's

    def filter(self, bpf: str) -> str:
        return bpf if self.bpf is None else self.bpf


@dataclass
class Source:
    """One tcpdump and the pcap it writes (a subclass: pcap that comes from another node's tcpdump)."""

    index: int
    point: CapturePoint
    process: subprocess.Popen | None
    linktype: int = 0
    snaplen: int = 0
    nanoseconds: bool = True
    endian: str = "<"
    buffer: bytearray = field(default_factory=bytearray)
    delivered: int = 0
    received: int | None = None
    dropped: int | None = None
    ended: bool = False
    header_read: bool = False

    @property
    def fd(self) -> int:
        return self.process.stdout.fileno()  # type: ignore[union-attr]


    def read_header(self, deadline: float) -> None:
        while len(self.buffer) < 24:
            remaining = deadline - time.monotonic()
            ready = readable([self.fd], remaining)
            if not ready:
                raise InvalidArgument(f"tcpdump for {self.point.name} did not start within {START_SECONDS}s")
            chunk = os.read(self.fd, READ_CHUNK)
            if not chunk:
                assert self.process is not None
                self.process.wait()
                error = self.process.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
                raise InvalidArgument(f"capture on {self.point.name}: {_tcpdump_error(error)}")
            self.buffer += chunk
        (magic,) = struct.unpack_from("<I", self.buffer)
        if magic in (PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO):
            self.endian = "<"
        else:
            self.endian = ">"
            (magic,) = struct.unpack_from(">I", self.buffer)
        self.nanoseconds = magic == PCAP_MAGIC_NANO
        _, _, _, _, self.snaplen, network = struct.unpack_from(self.endian + "HHiIII", self.buffer, 4)
        self.linktype = network & 0x0FFFFFFF
        del self.buffer[:24]
        self.header_read = True

    def pull(self) -> list[bytes] | None:
        """What tcpdump wrote since the last pull (None at its end)."""
        chunk = os.read(self.fd, READ_CHUNK)
        return [chunk] if chunk else None

    def take(self, chunk: bytes) -> list[pcap.Record]:
        """The whole records read so far, as views of what was read (capture/pcap.py)."""
        return pcap.take(self.buffer, chunk, self.endian, self.nanoseconds)

    def interrupt(self) -> None:
        """SIGINT makes tcpdump flush what it holds, print its counters and exit."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)

    def finish(self) -> list[pcap.Record]:
        """Reads tcpdump's last packets and its counters (both pipes at once: a full one would stall it)."""
        assert self.process is not None
        try:
            rest, report = self.process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, report = self.process.communicate()
        except ValueError:  # already read to the end
            rest, report = b"", b""
        text = (report or b"").decode(errors="replace")
        received = re.search(r"(\d+) packets? received by filter", text)
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        self.received = int(received.group(1)) if received else None
        self.dropped = int(dropped.group(1)) if dropped else None
        return self.take(rest or b"") if self.header_read else []


def _tcpdump_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line and not line.startswith(("tcpdump: listening", "Warning"))]
    return lines[-1] if lines else stderr or "tcpdump failed"


def tcpdump_argv(point: CapturePoint, bpf: str, snaplen: int) -> list[str]:
    # -Z root: Debian's tcpdump otherwise changes to its own user once capturing, which clears the parent-death
    # signal (dies_with_its_thread): a daemon killed mid-capture would leave it behind. It only writes the
    # packets (-w), it does not dissect them, so staying root exposes no parser.
    argv = ["tcpdump", "-i", point.interface, "-U", "-w", "-", "-s", str(snaplen), "--immediate-mode",
            "--time-stamp-precision=nano", "-n", "-Z", "root"]  # fmt: skip
    if point.filter(bpf):
        argv += ["--", point.filter(bpf)]  # after --: a filter is never taken for an option
    return dies_with_its_thread((["nsenter", f"--net={point.netns}"] if point.netns else []) + argv)


class Capture:
    def __init__(self, points: list[CapturePoint], bpf: str = "", count: int = 0, duration: float = 0,
                 snaplen: int = SNAPLEN, relayed: list[Source] | None = None,
                 reorder_seconds: float = REORDER_SECONDS) -> None:  # fmt: skip
        """relayed: sources that are already started elsewhere (other nodes' tcpdumps), merged with these
        points' own; reorder_seconds: how long a packet is held back for an earlier one that may come."""
        if not points and not relayed:
            raise InvalidArgument("nothing to capture: no running container matched the targets")
        self.points, self.bpf, self.count, self.duration = points, bpf, count, duration
        self.snaplen = snaplen
        self.relayed = list(relayed or [])
        self.reorder_seconds = reorder_seconds
        self.sources: list[Source] = []
        self.started_ns = time.time_ns()
        self.stopping = threading.Event()

    def start(self) -> None:
        """Starts every tcpdump and waits for its header: a bad filter or interface is an error here,
        before any byte of the stream is sent."""
        try:
            for index, point in enumerate(self.points):
                process = subprocess.Popen(tcpdump_argv(point, self.bpf, self.snaplen), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip
                with contextlib.suppress(OSError):  # fewer, larger reads of a busy tcpdump
                    fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, READ_CHUNK)  # type: ignore[union-attr]
                self.sources.append(Source(index, point, process))
            for source in self.relayed:
                source.index = len(self.sources)
                self.sources.append(source)
            deadline = time.monotonic() + START_SECONDS
            for source in self.sources:
                if not source.header_read:
                    source.read_header(deadline)
        except BaseException:
            self.abort()
            raise

    def header(self) -> bytes:
        blocks = [pcapng.section_header()]
        for source in self.sources:
            blocks.append(pcapng.interface_description(source.linktype, source.snaplen, source.point.name,
                                                       source.point.description,
                                                       source.point.filter(self.bpf)))  # fmt: skip
        return b"".join(blocks)

    def run(self, write: Callable[[bytes], None]) -> None:
        """Streams the pcapng until the count, the duration, the stop event or the end of every source.

        Whatever one read brought is written in one piece: a write per packet would cost a system call each.
        """
        write(self.header())
        deadline = time.monotonic() + self.duration if self.duration else None
        by_fd = {source.fd: source for source in self.sources}
        # (timestamp, source index, arrival, record): arrival keeps equal timestamps in order, never compared
        # further (records are views, which do not order)
        pending: list[tuple[int, int, int, pcap.Record]] = []
        arrival = itertools.count()
        out: list[bytes | memoryview] = []
        try:
            while by_fd and not self.stopping.is_set() and not self._enough():
                timeout = 0.1 if deadline is None else max(min(0.1, deadline - time.monotonic()), 0)
                ready = readable(by_fd, timeout)
                for fd in ready:
                    source = by_fd[fd]
                    chunks = source.pull()
                    if chunks is None:
                        source.ended = True
                        del by_fd[fd]
                        continue
                    for chunk in chunks:
                        for record in source.take(chunk):
                            heapq.heappush(pending, (record.timestamp_ns, source.index, next(arrival), record))
                horizon = time.time_ns() - int(self.reorder_seconds * 1e9)
                while pending and pending[0][0] <= horizon and not self._enough():
                    self._block(heapq.heappop(pending), out)
                if out:
                    write(b"".join(out))
                    out.clear()
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            for source in self.sources:
                source.interrupt()
            for source in self.sources:
                for record in source.finish():
                    heapq.heappush(pending, (record.timestamp_ns, source.index, next(arrival), record))
            while pending and not self._enough():
                self._block(heapq.heappop(pending), out)
            out.append(self.trailer())
            with contextlib.suppress(OSError):
                write(b"".join(out))

    def _enough(self) -> bool:
        return bool(self.count) and sum(s.delivered for s in self.sources) >= self.count

    def _block(self, item: tuple[int, int, int, pcap.Record], out: list[bytes | memoryview]) -> None:
        _, index, _, record = item
        self.sources[index].delivered += 1
        out.extend(pcapng.enhanced_packet_parts(index, record.timestamp_ns, record.data, record.original_length))

    def trailer(self) -> bytes:
        now = time.time_ns()
        return b"".join(pcapng.interface_statistics(s.index, now, s.received, s.dropped, s.delivered,
                                                    self.started_ns) for s in self.sources)  # fmt: skip

    def abort(self) -> None:
        for source in self.sources:
            source.interrupt()
        for source in self.sources:
            source.finish()


class DirectCapture:
    """One capture point at full speed: dumpcap (Wireshark's capture engine) writes pcapng itself, and boxnet
    only renames its interface (to the container's name) in the header, then moves the rest of the stream
    from dumpcap's pipe to the client with splice(2), without reading a byte of it. dumpcap's own
    statistics block ends the stream."""

    def __init__(self, point: CapturePoint, bpf: str = "", count: int = 0, duration: float = 0,
                 snaplen: int = SNAPLEN) -> None:  # fmt: skip
        self.point, self.bpf, self.count, self.duration, self.snaplen = point, bpf, count, duration, snaplen
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self.head = b""
        self.rest = bytearray()

    def argv(self) -> list[str]:
        # A 64 MiB kernel ring (libpcap's default is 2): the packets go through more hands on their way to
        # the file than with a plain tcpdump, and a burst must wait in the ring, not be dropped there.
        argv = ["dumpcap", "-q", "-i", self.point.interface, "-w", "-", "-s", str(self.snaplen),
                "-B", str(RING_MIB)]  # fmt: skip
        if self.point.filter(self.bpf):
            argv += ["-f", self.point.filter(self.bpf)]
        if self.count:
            argv += ["-c", str(self.count)]
        return dies_with_its_thread((["nsenter", f"--net={self.point.netns}"] if self.point.netns else []) + argv)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL)  # fmt: skip
        fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, READ_CHUNK)  # fewer, larger moves from dumpcap to the client
        deadline = time.monotonic() + START_SECONDS
        buffer = bytearray()
        blocks: list[tuple[int, bytes]] = []
        try:
            while len(blocks) < 2:
                if len(buffer) >= 8:
                    kind, length = struct.unpack_from("<II", buffer)
                    if kind == pcapng.SHB and struct.unpack_from("<I", buffer, 8)[0] != pcapng.BYTE_ORDER_MAGIC:
                        raise InvalidArgument("dumpcap wrote a big-endian section; not supported")
                    if len(buffer) >= length:
                        blocks.append((kind, bytes(buffer[:length])))
                        del buffer[:length]
                        continue
                ready = readable([fd], deadline - time.monotonic())
                if not ready:
                    raise InvalidArgument(f"dumpcap for {self.point.name} did not start within {START_SECONDS}s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.process.wait()
                    error = self.process.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                    raise InvalidArgument(f"capture on {self.point.name}: {_dumpcap_error(error)}")
                buffer += chunk
            if blocks[1][0] != pcapng.IDB:
                raise InvalidArgument(f"dumpcap for {self.point.name} wrote no interface block")
        except BaseException:
            self.abort()
            raise
        self.head = pcapng.section_header() + pcapng.rename_interface(blocks[1][1], self.point.name,
                                                                      self.point.description)  # fmt: skip
        self.rest = buffer

    def run(self, write: Callable[[bytes], None], out_fd: int) -> None:
        assert self.process is not None and self.process.stdout is not None
        write(self.head + bytes(self.rest))
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + self.duration if self.duration else None
        interrupted, splicing = False, True
        try:
            while True:
                if not interrupted and (self.stopping.is_set() or (deadline and time.monotonic() >= deadline)):
                    self._interrupt()
                    interrupted = True
                ready = readable([fd], 0.1)
                if not ready:
                    continue
                if splicing:
                    try:
                        moved = os.splice(fd, out_fd, READ_CHUNK)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            return  # the client has gone
                        splicing = False  # no splice between these two: copy instead
                        continue
                    if moved == 0:
                        return
                    continue
                data = os.read(fd, READ_CHUNK)
                if not data:
                    return
                write(data)
        finally:
            self.abort()

    def _interrupt(self) -> None:
        """SIGINT: dumpcap writes its statistics block and exits, which ends the stream."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)

    def abort(self) -> None:
        if self.process is None:
            return
        self._interrupt()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _dumpcap_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("Capturing on", "File:"))]
    return " ".join(lines) or "dumpcap failed"
