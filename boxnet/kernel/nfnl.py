"""Adding and deleting nftables map elements over nfnetlink directly: one batch, one round trip.

libnftables parses text and refreshes its cache of the table on every command, which grows with the map;
publishing the 1000th port must cost what the first did, so the hot path (published ports) sends
NFT_MSG_NEWSETELEM / DELSETELEM itself. Keys and values are laid out as nftables stores concatenations:
each field in its own 32-bit register (padded), in network byte order.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFTA_DATA_VALUE = 1
NFPROTO_INET = 1
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLA_F_NESTED = 0x8000
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}

_HEADER = struct.Struct("=IHHII")


class NfnlError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _nested(kind: int, payload: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, payload)


def register_protocol(protocol: str) -> bytes:
    return struct.pack("=B3x", PROTOCOL_NUMBERS[protocol])


def register_port(port: int) -> bytes:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return struct.pack("!H2x", port)


def register_address(address: str) -> bytes:
    """4 bytes for IPv4, 16 for IPv6: whole registers either way."""
    return ipaddress.ip_address(address).packed


def _message(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return _HEADER.pack(_HEADER.size + len(payload), kind, flags | NLM_F_REQUEST, seq, 0) + payload


def element_batch(verb: str, table: str, set_name: str, elements: list[tuple[bytes, bytes | None]],
                  seq: int) -> bytes:  # fmt: skip
    """One transaction: batch begin, the element message, batch end."""
    listed = b""
    for key, data in elements:
        element = _nested(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key))
        if data is not None:
            element += _nested(NFTA_SET_ELEM_DATA, _attr(NFTA_DATA_VALUE, data))
        listed += _nested(NFTA_LIST_ELEM, element)
    body = (_attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + _nested(NFTA_SET_ELEM_LIST_ELEMENTS, listed))  # fmt: skip
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if verb == "add" else NFT_MSG_DELSETELEM)
    flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if verb == "add" else 0)
    return (_message(NFNL_MSG_BATCH_BEGIN, 0, seq, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES)
            + _message(kind, flags, seq + 1, NFPROTO_INET, body)
            + _message(NFNL_MSG_BATCH_END, 0, seq + 2, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES))  # fmt: skip


def change_elements(verb: str, table: str, set_name: str, elements: list[tuple[bytes, bytes | None]]) -> None:
    """Adds (verb "add") or deletes elements of an inet-family set or map, atomically, in the calling
    thread's network namespace. Raises NfnlError with the kernel's errno (EEXIST, ENOENT, ...)."""
    if not elements:
        return
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        seq = 1
        sock.send(element_batch(verb, table, set_name, elements, seq))
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, msg_type, _, msg_seq, _ = _HEADER.unpack_from(data, offset)
                if msg_type == NLMSG_ERROR and msg_seq == seq + 1:
                    code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    if code:
                        raise NfnlError(code, f"nftables {verb} element in {set_name}: {os.strerror(code)}")
                    return
                offset += (length + 3) & ~3


def is_missing(error: OSError) -> bool:
    return error.errno == errno.ENOENT
