"""Forgetting connection-tracking entries over ctnetlink, in the calling thread's network namespace.

When a container's address is released, every entry that involves it goes (as the source or destination of
the original or the reply direction: its own flows, flows DNATed to it, flows to it), so that a flow meant
for it never reaches the next container given the same address (moby's TestConntrackFlowsLeak). When a UDP
port is published, the entries for that port go, so that a client that kept sending while nothing was
published (an entry without NAT, kept alive by its packets) reaches the new container.

The kernel filters in a flush (IPCTNL_MSG_CT_DELETE with CTA_FILTER): one message per field, ANDed within,
~0.2 ms each. Except one case: its IPv6 address comparison is inverted (ctnetlink_filter_match_tuple
rejects EQUAL addresses, seen on 6.18 and in every version read), so a filtered flush by an IPv6 address
would delete every other entry of the family. For IPv6 addresses the entries are dumped (every dump walks
all the buckets, ~9 ms) and matched here, then deleted one by one by tuple and id; ENOENT is not an error.
Every delete carries a filter or a tuple: one with neither would flush the whole table.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from boxnet.kernel.netlink import (
    NLM_F_ACK,
    NLM_F_DUMP,
    NLMSG_DONE,
    NLMSG_ERROR,
    NetlinkError,
    answers,
    attr,
    error_code,
    message,
    nested,
    parse_attrs,
)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ID, CTA_ZONE, CTA_FILTER = 1, 2, 12, 18, 25
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V6_SRC = 1, 3  # each followed by its _DST
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 1, 2
CTA_FILTER_F_CTA_IP_SRC, CTA_FILTER_F_CTA_IP_DST = 1 << 0, 1 << 1
CTA_FILTER_F_CTA_PROTO_NUM, CTA_FILTER_F_CTA_PROTO_DST_PORT = 1 << 3, 1 << 5
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
DELETES_PER_SEND = 64  # their acknowledgements must fit the socket's receive buffer


def _request(kind: int, flags: int, seq: int, family: int, body: bytes) -> bytes:
    return message((NFNL_SUBSYS_CTNETLINK << 8) | kind, flags, seq, struct.pack("=BBH", family, 0, 0) + body)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    sock.bind((0, 0))
    return sock


def _flush(sock: socket.socket, family: int, filters: list[bytes]) -> None:
    """Filtered flushes, one message each, in one send."""
    if not all(CTA_FILTER in parse_attrs(body) for body in filters):
        raise ValueError("a conntrack delete without a filter would flush the whole table")
    sock.send(b"".join(_request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq, family, body)
                       for seq, body in enumerate(filters, 1)))  # fmt: skip
    for _, payload in answers(sock, set(range(1, len(filters) + 1))):
        code = error_code(payload)
        if code and code != errno.ENOENT:
            raise NetlinkError(code, f"conntrack flush: {os.strerror(code)}")


def _address_filter(packed: bytes, direction: int, field: int) -> bytes:
    ip_type = CTA_IP_V4_SRC if field == CTA_FILTER_F_CTA_IP_SRC else CTA_IP_V4_SRC + 1
    flags_type = CTA_FILTER_ORIG_FLAGS if direction == CTA_TUPLE_ORIG else CTA_FILTER_REPLY_FLAGS
    return (nested(direction, nested(CTA_TUPLE_IP, attr(ip_type, packed)))
            + nested(CTA_FILTER, attr(flags_type, struct.pack("=I", field))))  # fmt: skip


def forget_address(address: str) -> None:
    """Deletes every entry with the address on either side of either direction."""
    ip = ipaddress.ip_address(address)
    with _socket() as sock:
        if ip.version == 4:
            _flush(sock, socket.AF_INET, [_address_filter(ip.packed, direction, field)
                                          for direction in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY)
                                          for field in (CTA_FILTER_F_CTA_IP_SRC, CTA_FILTER_F_CTA_IP_DST)])  # fmt: skip
        else:
            _delete(sock, socket.AF_INET6, _matching_ipv6(sock, ip.packed))


def forget_port(protocol: str, port: int) -> None:
    """Deletes the entries whose original destination is this protocol and port, in both families."""
    proto = nested(CTA_TUPLE_PROTO, attr(CTA_PROTO_NUM, bytes([PROTOCOLS[protocol]]))
                   + attr(CTA_PROTO_DST_PORT, struct.pack("!H", port)))  # fmt: skip
    flags = CTA_FILTER_F_CTA_PROTO_NUM | CTA_FILTER_F_CTA_PROTO_DST_PORT
    body = nested(CTA_TUPLE_ORIG, proto) + nested(CTA_FILTER, attr(CTA_FILTER_ORIG_FLAGS, struct.pack("=I", flags)))
    with _socket() as sock:
        for family in (socket.AF_INET, socket.AF_INET6):
            _flush(sock, family, [body])


def _involves(tuple_payload: bytes, packed: bytes) -> bool:
    ip = parse_attrs(parse_attrs(tuple_payload).get(CTA_TUPLE_IP, b""))
    return packed in (ip.get(CTA_IP_V6_SRC), ip.get(CTA_IP_V6_SRC + 1))


def _matching_ipv6(sock: socket.socket, packed: bytes) -> list[bytes]:
    """Delete-request bodies (original tuple, zone, id) of the IPv6 entries involving packed."""
    found: dict[bytes, bytes] = {}
    seq = 1
    sock.send(_request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, socket.AF_INET6, b""))
    for msg_type, payload in answers(sock, {seq}):
        if msg_type in (NLMSG_ERROR, NLMSG_DONE):
            if code := error_code(payload):
                raise NetlinkError(code, f"conntrack dump: {os.strerror(code)}")
        elif packed in payload:  # most entries stop here, unparsed
            attrs = parse_attrs(payload, 4)  # past the nfgenmsg
            orig, reply = attrs.get(CTA_TUPLE_ORIG, b""), attrs.get(CTA_TUPLE_REPLY, b"")
            if _involves(orig, packed) or _involves(reply, packed):
                request = attr(CTA_TUPLE_ORIG, orig)
                for kind in (CTA_ZONE, CTA_ID):
                    if kind in attrs:
                        request += attr(kind, attrs[kind])
                found[attrs.get(CTA_ID, orig)] = request
    return list(found.values())


def original_addresses(family: int = socket.AF_INET) -> list[tuple[str, str]]:
    """(source, destination) of each entry's original direction, for a family: for tests and diagnosis."""
    found = []
    with _socket() as sock:
        sock.send(_request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, 1, family, b""))
        for msg_type, payload in answers(sock, {1}):
            if msg_type not in (NLMSG_ERROR, NLMSG_DONE):
                tuple_ip = parse_attrs(parse_attrs(parse_attrs(payload, 4).get(CTA_TUPLE_ORIG, b""))
                                       .get(CTA_TUPLE_IP, b""))  # fmt: skip
                source = CTA_IP_V4_SRC if family == socket.AF_INET else CTA_IP_V6_SRC
                if source in tuple_ip and source + 1 in tuple_ip:
                    found.append((str(ipaddress.ip_address(tuple_ip[source])),
                                  str(ipaddress.ip_address(tuple_ip[source + 1]))))  # fmt: skip
    return found


CTA_PROTO_SRC_PORT, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID = 2, 4, 7


def reply_source(source: str, destination: str, marker: int, protocol: str) -> str:
    """For the flow this namespace tracks from source (its source port, or echo id, marker) to destination:
    the address its replies come from, which DNAT made another one (the backend a VIP chose). '' if none."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    want = (ipaddress.ip_address(source).packed, ipaddress.ip_address(destination).packed)
    number = {"tcp": 6, "udp": 17, "icmp": 58 if family == socket.AF_INET6 else 1}[protocol]
    src_attr = CTA_IP_V4_SRC if family == socket.AF_INET else CTA_IP_V6_SRC
    with _socket() as sock:
        sock.send(_request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, 1, family, b""))
        found = ""
        for msg_type, payload in answers(sock, {1}):
            if msg_type in (NLMSG_ERROR, NLMSG_DONE) or found:
                continue
            attrs = parse_attrs(payload, 4)
            original = parse_attrs(attrs.get(CTA_TUPLE_ORIG, b""))
            address = parse_attrs(original.get(CTA_TUPLE_IP, b""))
            proto = parse_attrs(original.get(CTA_TUPLE_PROTO, b""))
            if (address.get(src_attr), address.get(src_attr + 1)) != want:
                continue
            if proto.get(CTA_PROTO_NUM) != bytes([number]):
                continue
            port_attr = CTA_PROTO_SRC_PORT if protocol != "icmp" else \
                (CTA_PROTO_ICMPV6_ID if family == socket.AF_INET6 else CTA_PROTO_ICMP_ID)  # fmt: skip
            if proto.get(port_attr) != struct.pack("!H", marker):
                continue
            reply = parse_attrs(parse_attrs(attrs.get(CTA_TUPLE_REPLY, b"")).get(CTA_TUPLE_IP, b""))
            if src_attr in reply:
                found = str(ipaddress.ip_address(reply[src_attr]))
        return found


def _delete(sock: socket.socket, family: int, requests: list[bytes]) -> None:
    seq = 2
    for start in range(0, len(requests), DELETES_PER_SEND):
        batch, pending = b"", set()
        for body in requests[start : start + DELETES_PER_SEND]:
            batch += _request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq, family, body)
            pending.add(seq)
            seq += 1
        sock.send(batch)
        for _, payload in answers(sock, pending):
            code = error_code(payload)
            if code and code != errno.ENOENT:  # ENOENT: it expired, or was deleted, since the dump
                raise NetlinkError(code, f"conntrack delete: {os.strerror(code)}")
