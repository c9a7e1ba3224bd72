"""Adding and deleting nftables map elements over nfnetlink directly: one batch, one round trip.

libnftables parses text and refreshes its cache of the table on every command, which grows with the map;
publishing the 1000th port must cost what the first did, so the hot path (published ports) sends
NFT_MSG_NEWSETELEM / DELSETELEM itself. Keys and values are laid out as nftables stores concatenations:
each field in its own 32-bit register (padded), in network byte order.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from boxnet.kernel.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    attr,
    message,
    nested,
    note_nft_committer,
    read_answer,
)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFTA_DATA_VALUE = 1
NFPROTO_INET = 1
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}

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
    return message(kind, flags, seq, struct.pack("=BBH", family, 0, socket.htons(res_id)) + body)


def element_batch(verb: str, table: str, set_name: str, elements: list[tuple[bytes, bytes | None]],
                  seq: int) -> bytes:  # fmt: skip
    """One transaction: batch begin, the element message, batch end."""
    listed = b""
    for key, data in elements:
        element = nested(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key))
        if data is not None:
            element += nested(NFTA_SET_ELEM_DATA, attr(NFTA_DATA_VALUE, data))
        listed += nested(NFTA_LIST_ELEM, element)
    body = (attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + nested(NFTA_SET_ELEM_LIST_ELEMENTS, listed))  # fmt: skip
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if verb == "add" else NFT_MSG_DELSETELEM)
    flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if verb == "add" else 0)
    return (_message(NFNL_MSG_BATCH_BEGIN, 0, seq, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES)
            + _message(kind, flags, seq + 1, NFPROTO_INET, body)
            + _message(NFNL_MSG_BATCH_END, 0, seq + 2, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES))  # fmt: skip


def change_elements(verb: str, table: str, set_name: str, elements: list[tuple[bytes, bytes | None]]) -> None:
    """Adds (verb "add") or deletes elements of an inet-family set or map, atomically, in the calling
    thread's network namespace. Raises NetlinkError with the kernel's errno (EEXIST, ENOENT, ...)."""
    if not elements:
        return
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        seq = 1
        note_nft_committer()
        sock.send(element_batch(verb, table, set_name, elements, seq))
        read_answer(sock, seq + 1, f"nftables {verb} element in {set_name}")


def is_missing(error: OSError) -> bool:
    return error.errno == errno.ENOENT
