"""`boxnet capture` (tcpdump for containers, by name) and `boxnet sniff` (ngrep for containers)."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import sys

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace, Parser

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any

TARGETS_HELP = "a container name, network:NAME (its containers and bridge), label:K=V, service:NAME (every task " \
    "on every node of the swarm), or host:IFACE (an interface of the daemon's own namespace, as eth0)"


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted in (None, "capture"):
        capture = commands.add_parser("capture", help="capture containers' traffic (pcapng, or one line a packet)")
        _common(capture)
        capture.add_argument("-w", "--write", default="", metavar="FILE", help="write pcapng to FILE (- for stdout)")
        capture.add_argument("-c", "--count", type=int, default=0, help="stop after this many packets")
        capture.set_defaults(func=capture_command)
    if wanted in (None, "sniff"):
        sniff = commands.add_parser("sniff", help="print packets whose payload matches a regex (like ngrep)")
        _common(sniff)
        sniff.add_argument("-m", "--match", required=True, metavar="REGEX", help="a regular expression")
        sniff.add_argument("--ignore-case", action="store_true")
        sniff.add_argument("-c", "--count", type=int, default=0, help="stop after this many matches")
        sniff.add_argument("--hash", action="store_true", help="print # for each packet that does not match, as "
                           "ngrep does (encrypted traffic shows as a row of #)")  # fmt: skip
        sniff.set_defaults(func=sniff_command)


def _common(parser: Parser) -> None:
    parser.add_argument("targets", nargs="+", metavar="TARGET", help=TARGETS_HELP)
    parser.add_argument("-f", "--filter", default="", help="tcpdump filter; container names stand for hosts")
    parser.add_argument("--duration", type=float, default=0, metavar="SECONDS")
    parser.add_argument("-i", "--interface", default="", help="interface inside each target (default: its one "
                        "network interface, or all of them)")  # fmt: skip
    parser.add_argument("-s", "--snaplen", type=int, default=0, help="bytes kept of each packet")
    parser.add_argument("--underlay", action="store_true", help="also each node's underlay interface (its VXLAN "
                        "and WireGuard packets, the VXLAN decoded)")  # fmt: skip


def _open(client: Client, args: Namespace, count: int, pass_fd: bool = False) -> tuple[Any, Any]:
    body = {"Targets": args.targets, "Filter": args.filter, "Count": count, "Duration": args.duration,
            "Interface": args.interface, "Snaplen": args.snaplen, "PassFd": pass_fd,
            "Underlay": args.underlay}  # fmt: skip
    return client.stream("POST", "/boxnet/capture", body=body, upgrade=True)


def _chunks(response: Any, sock: Any) -> Any:
    """The stream's bytes, until its end (which a Ctrl-C brings about, see _stops)."""
    for _ in _stops(sock):
        chunk = response.read1(1 << 20)
        if not chunk:
            return
        yield chunk


def capture_command(client: Client, args: Namespace) -> int:
    from boxnet.capture import decode, pcapng

    if args.write and args.write != "-":
        return _to_file(client, args)
    response, sock = _open(client, args, args.count)
    reader = pcapng.Reader()
    output = None
    if args.write == "-":
        output = sys.stdout.buffer
    elif args.write:
        output = open(args.write, "wb")  # noqa: SIM115  (closed below, after the last chunk)
    number, first = 0, None
    try:
        for chunk in _chunks(response, sock):
            if output is not None:
                output.write(chunk)
                if args.write == "-":
                    output.flush()
            # Written to a file, packets are only counted; on the terminal, each is one line.
            for packet in reader.feed(chunk, keep_packets=output is None):
                number += 1
                first = first if first is not None else packet.timestamp_ns
                interface = reader.interfaces[packet.interface]
                decoded = decode.decode(interface.linktype, packet.data)
                print(decode.line(number, (packet.timestamp_ns - first) / 1e9, interface.name, decoded,
                                  packet.original_length), flush=True)  # fmt: skip
    finally:
        if output is not None and output is not sys.stdout.buffer:
            output.close()
        sock.close()
    _summary(reader)
    return 0


def _to_file(client: Client, args: Namespace) -> int:
    """The daemon writes into the file itself: the client opens it and hands it over (SCM_RIGHTS), so that
    not a byte of a capture at full speed passes through the client. It then waits for the end and reads the
    counts from the file's blocks."""
    import os

    from boxnet.capture import pcapng

    response, sock = _open(client, args, args.count, pass_fd=True)
    with open(args.write, "wb") as output:
        socket.send_fds(sock, [b"F"], [output.fileno()])
    try:
        for _ in _stops(sock):
            if not response.read1(4096):  # nothing comes but the end
                break
    finally:
        sock.close()
    if not os.path.exists(args.write):
        return 1
    _summary(pcapng.scan_file(args.write))
    return 0


def _stops(sock: Any) -> Any:
    """Yields until the stream ends; Ctrl-C (or SIGTERM) on the way asks the daemon to stop, and the rest
    (the last packets, the counters) still arrives."""
    asked = []

    def stop(signum: int, frame: object) -> None:
        if not asked:
            asked.append(signum)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while True:
        yield


def _summary(reader: Any) -> None:
    print(f"{reader.packets} packets captured", file=sys.stderr)
    for interface in reader.interfaces:
        received = "?" if interface.received is None else interface.received
        dropped = "?" if interface.dropped is None else interface.dropped
        captured = "" if interface.delivered is None else f"{interface.delivered} captured, "
        print(f"  {interface.name}: {captured}{received} received by filter, {dropped} dropped by kernel",
              file=sys.stderr)  # fmt: skip


def sniff_command(client: Client, args: Namespace) -> int:
    from boxnet.capture import decode, pcapng

    try:
        pattern = re.compile(args.match.encode(), re.IGNORECASE if args.ignore_case else 0)
    except re.error as exc:
        print(f"boxnet: bad --match expression: {exc}", file=sys.stderr)
        return 2
    response, sock = _open(client, args, 0)
    reader = pcapng.Reader()
    matched = 0
    try:
        for chunk in _chunks(response, sock):
            for packet in reader.feed(chunk):
                interface = reader.interfaces[packet.interface]
                decoded = decode.decode(interface.linktype, packet.data)
                if decoded is None or not decoded.payload or not pattern.search(decoded.payload):
                    if args.hash and decoded is not None and decoded.payload:
                        print("#", end="", flush=True)
                    continue
                if args.hash:
                    print()
                matched += 1
                ports = f":{decoded.source_port}" if decoded.source_port else ""
                to_port = f":{decoded.destination_port}" if decoded.destination_port else ""
                print(f"{decoded.protocol} {decoded.source}{ports} -> {decoded.destination}{to_port} "
                      f"[{interface.name}]")  # fmt: skip
                print("  " + _printable(decoded.payload), flush=True)
                if args.count and matched >= args.count:
                    sock.shutdown(socket.SHUT_WR)
                    args.count = 0
    finally:
        sock.close()
    print(f"{matched} matching packets", file=sys.stderr)
    return 0


def _printable(payload: bytes) -> str:
    """ngrep's way: printable ASCII as is, everything else as a dot."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in payload[:1500])
