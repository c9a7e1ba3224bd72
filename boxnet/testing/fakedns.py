"""The simulated outside's DNS server (203.0.113.53 in the sandbox): a small authoritative zone with a few
names that misbehave on purpose. Tests and benchmarks point boxnet's forwarding at it, never at a real one.

  NAME.example.com     A 203.0.113.10 (web.example.com: 203.0.113.80), AAAA 2001:db8:100::10
  big.example.com      60 A records: more than 512 bytes, so TC over UDP without EDNS, whole over TCP
  nx.example.com       NXDOMAIN, and so is every name outside example.com
  slow.example.com     never answered

With --log FILE each question is appended as "protocol name type" (tests read it to prove what leaked).
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
import threading

from boxnet.dns import packet
from boxnet.kernel import mmsg

ZONE = "example.com"


def answer(message: bytes, udp: bool) -> bytes | None:
    try:
        query = packet.parse_query(message)
    except packet.FormatError as exc:
        return packet.error_response(message, packet.FORMERR) if exc.query_id is not None else None
    name = query.name
    if name == f"slow.{ZONE}":
        return None
    if not (name == ZONE or name.endswith("." + ZONE)) or name == f"nx.{ZONE}":
        return packet.response(query, packet.NXDOMAIN, recursion_available=False)
    records: list[bytes] = []
    if query.qtype == packet.TYPE_A:
        if name == f"big.{ZONE}":
            records = [packet.address_record(f"198.18.0.{i}") for i in range(1, 61)]
        else:
            records = [packet.address_record("203.0.113.80" if name == f"web.{ZONE}" else "203.0.113.10")]
    elif query.qtype == packet.TYPE_AAAA:
        records = [packet.address_record("2001:db8:100::10")]
    return packet.response(query, packet.NOERROR, records, recursion_available=False,
                           limit=query.udp_limit if udp else 65535)  # fmt: skip


class FakeDns:
    def __init__(self, address: str, port: int, log_path: str | None) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, port))
        self.tcp.listen(64)
        self.log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 (lives as long as we do)
        self.log_lock = threading.Lock()

    def note(self, protocol: str, message: bytes) -> None:
        if self.log is None:
            return
        try:
            query = packet.parse_query(message)
            line = f"{protocol} {query.name} {packet.TYPE_NAMES.get(query.qtype, query.qtype)}\n"
        except packet.FormatError:
            line = f"{protocol} (malformed)\n"
        with self.log_lock:
            self.log.write(line)

    def serve(self) -> None:
        cache: dict[bytes, bytes | None] = {}
        batch = mmsg.Batch(64)  # batched like boxnet's resolver, so that forwarding benchmarks measure boxnet
        udp_fd = self.udp.fileno()
        while True:
            readable, _, _ = select.select([self.udp, self.tcp], [], [])
            if self.tcp in readable:
                connection, _ = self.tcp.accept()
                threading.Thread(target=self._serve_tcp, args=(connection,), daemon=True).start()
            if self.udp in readable:
                for slot, length in enumerate(batch.receive(udp_fd)):
                    message = batch.datagram(slot, length)
                    self.note("udp", message)
                    key = message[2:]
                    if key not in cache:
                        cache[key] = answer(message, udp=True)
                    reply = cache[key]
                    if reply is not None:
                        batch.answer_keeping_id(slot, reply[2:])
                batch.send(udp_fd)

    def _serve_tcp(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        with connection:
            try:
                while True:
                    (length,) = struct.unpack("!H", _exactly(connection, 2))
                    message = _exactly(connection, length)
                    self.note("tcp", message)
                    reply = answer(message, udp=False)
                    if reply is None:
                        return
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, struct.error):
                return


def _exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakedns")
    parser.add_argument("--address", default="203.0.113.53")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--log", default=None)
    parser.add_argument("--ready", default=None, help="a file made once the sockets are bound")
    args = parser.parse_args(argv)
    server = FakeDns(args.address, args.port, args.log)
    if args.ready:
        open(args.ready, "w").close()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
