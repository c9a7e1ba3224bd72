"""DNS messages: parsing queries (hostile input included) and building answers. Pure: no sockets.

Only what a stub resolver's questions need: one question, EDNS(0) for the payload size, A/AAAA/PTR answers.
Every malformed message raises FormatError; nothing else escapes from the parser (a fuzz test holds it to it).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_TXT, TYPE_AAAA, TYPE_OPT = 1, 2, 5, 6, 12, 15, 16, 28, 41
TYPE_NAMES = {
    TYPE_A: "A",
    TYPE_NS: "NS",
    TYPE_CNAME: "CNAME",
    TYPE_SOA: "SOA",
    TYPE_PTR: "PTR",
    TYPE_MX: "MX",
    TYPE_TXT: "TXT",
    TYPE_AAAA: "AAAA",
    TYPE_OPT: "OPT",
    33: "SRV",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
               NOTIMP: "NOTIMP", REFUSED: "REFUSED"}  # fmt: skip

FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800

HEADER = struct.Struct("!HHHHHH")
UDP_PLAIN_LIMIT = 512
EDNS_PAYLOAD = 1232  # what boxnet offers; the client's own size is honoured up to this
TTL = 600  # Docker's embedded DNS answers with 600 s
MAX_NAME = 255
MAX_POINTER_HOPS = 16


class FormatError(ValueError):
    """A message that is not a well-formed query. `query_id` is set when the header was readable, so that
    the sender can be told FORMERR; None means: drop it silently."""

    def __init__(self, reason: str, query_id: int | None = None) -> None:
        super().__init__(reason)
        self.query_id = query_id


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    labels: tuple[bytes, ...]  # as sent, case kept: the answer echoes them (0x20 randomisation survives)
    qtype: int
    qclass: int
    edns_size: int  # 0 without an OPT record

    @property
    def name(self) -> str:
        """The name for lookups: lower case, no trailing dot, '' for the root."""
        return b".".join(self.labels).decode("ascii", "replace").lower()

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def udp_limit(self) -> int:
        return max(UDP_PLAIN_LIMIT, min(self.edns_size, EDNS_PAYLOAD)) if self.edns_size else UDP_PLAIN_LIMIT


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at offset, and the offset just past it in the message (pointers followed,
    with a bound on hops: a pointer loop is a FormatError, not a hang)."""
    labels: list[bytes] = []
    length_so_far = 0
    end = -1
    hops = 0
    size = len(data)
    while True:
        if offset >= size:
            raise FormatError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= size:
                raise FormatError("truncated compression pointer")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise FormatError("compression pointer loop")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise FormatError(f"unsupported label type {length >> 6:#x}")
        if length == 0:
            return tuple(labels), (end if end >= 0 else offset + 1)
        label = data[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise FormatError("label runs past the end of the message")
        length_so_far += length + 1
        if length_so_far > MAX_NAME:
            raise FormatError("name longer than 255 bytes")
        labels.append(label)
        offset += 1 + length


def parse_query(data: bytes) -> Query:
    if len(data) < HEADER.size:
        raise FormatError("shorter than a DNS header")
    query_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & FLAG_QR:
        raise FormatError("a response, not a query")  # never answer answers: that is how loops start
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions (one is supported)", query_id)
    try:
        labels, offset = read_name(data, HEADER.size)
        if offset + 4 > len(data):
            raise FormatError("question runs past the end of the message")
        qtype, qclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        edns_size = 0
        for _ in range(ancount + nscount + arcount):
            _, offset = read_name(data, offset)
            if offset + 10 > len(data):
                raise FormatError("record runs past the end of the message")
            rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
            offset += 10 + rdlength
            if offset > len(data):
                raise FormatError("record data runs past the end of the message")
            if rtype == TYPE_OPT:
                edns_size = max(rclass, UDP_PLAIN_LIMIT)
    except FormatError as exc:
        raise FormatError(str(exc), query_id) from None
    return Query(query_id, flags, labels, qtype, qclass, edns_size)


def encode_name(labels: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def name_labels(name: str) -> tuple[bytes, ...]:
    return tuple(label.encode("ascii") for label in name.strip(".").split(".") if label)


def record(rtype: int, rdata: bytes, ttl: int = TTL) -> bytes:
    """An answer about the question's own name (a pointer to offset 12)."""
    return struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata


def address_record(address: str) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return record(TYPE_A if len(packed) == 4 else TYPE_AAAA, packed)


def ptr_record(target: str) -> bytes:
    return record(TYPE_PTR, encode_name(name_labels(target)))


OPT_RECORD = b"\x00" + struct.pack("!HHIH", TYPE_OPT, EDNS_PAYLOAD, 0, 0)


def response(query: Query, rcode: int, answers: list[bytes] = (), *, authoritative: bool = True,  # type: ignore[assignment]
             recursion_available: bool = True, limit: int = 65535) -> bytes:  # fmt: skip
    """The whole answer; over `limit` bytes it becomes the header and question alone, with TC set."""
    flags = FLAG_QR | (query.flags & (OPCODE_MASK | FLAG_RD)) | rcode
    if authoritative:
        flags |= FLAG_AA
    if recursion_available:
        flags |= FLAG_RA
    question = encode_name(query.labels) + struct.pack("!HH", query.qtype, query.qclass)
    opt = OPT_RECORD if query.edns_size else b""
    body = b"".join(answers)
    message = HEADER.pack(query.id, flags, 1, len(answers), 0, 1 if opt else 0) + question + body + opt
    if len(message) <= limit:
        return message
    return HEADER.pack(query.id, flags | FLAG_TC, 1, 0, 0, 1 if opt else 0) + question + opt


def error_response(data: bytes, rcode: int) -> bytes | None:
    """An error for a message whose header was readable, echoing the id and nothing else; None for one
    that was not (too short, or a response)."""
    if len(data) < HEADER.size:
        return None
    query_id, flags = struct.unpack_from("!HH", data)
    if flags & FLAG_QR:
        return None
    return HEADER.pack(query_id, FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode, 0, 0, 0, 0)


def with_id(message: bytes, query_id: int) -> bytes:
    return struct.pack("!H", query_id) + message[2:]


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


def address_from_reverse(name: str) -> str | None:
    """The address a PTR name stands for (in-addr.arpa or ip6.arpa), or None if it names no whole address."""
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 and str(int(p)) == p for p in parts):
            return None
        return ".".join(reversed(parts))
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        digits = "".join(reversed(nibbles))
        return str(ipaddress.IPv6Address(int(digits, 16)))
    return None


@dataclass(frozen=True, slots=True)
class Summary:
    """What a response said, for the query log."""

    rcode: int
    truncated: bool
    answers: tuple[str, ...]


def summarize(message: bytes) -> Summary:
    """The rcode and the answers (A, AAAA, PTR and CNAME as text, others by type) of a response."""
    if len(message) < HEADER.size:
        return Summary(SERVFAIL, False, ())
    _, flags, qdcount, ancount, _, _ = HEADER.unpack_from(message)
    answers: list[str] = []
    try:
        offset = HEADER.size
        for _ in range(qdcount):
            _, offset = read_name(message, offset)
            offset += 4
        for _ in range(ancount):
            _, offset = read_name(message, offset)
            rtype, _, _, rdlength = struct.unpack_from("!HHIH", message, offset)
            offset += 10
            rdata = message[offset : offset + rdlength]
            if rtype in (TYPE_A, TYPE_AAAA) and len(rdata) in (4, 16):
                answers.append(str(ipaddress.ip_address(rdata)))
            elif rtype in (TYPE_PTR, TYPE_CNAME):
                labels, _ = read_name(message, offset)
                answers.append(b".".join(labels).decode("ascii", "replace") + ".")
            else:
                answers.append(TYPE_NAMES.get(rtype, f"TYPE{rtype}"))
            offset += rdlength
    except (FormatError, struct.error):
        pass
    return Summary(flags & 0xF, bool(flags & FLAG_TC), tuple(answers))
