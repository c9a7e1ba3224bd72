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
    NetlinkError,
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
NFPROTO_BRIDGE = 7
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}

def register_protocol(protocol: str) -> bytes:
    return struct.pack("=B3x", PROTOCOL_NUMBERS[protocol])


def register_port(port: int) -> bytes:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return struct.pack("!H2x", port)


def register_ifname(name: str) -> bytes:
    """An interface name as nftables keys hold it: IFNAMSIZ bytes, NUL-padded."""
    raw = name.encode()
    if len(raw) > 15:
        raise ValueError(f"interface name {name!r} is too long")
    return raw + bytes(16 - len(raw))


def pad(raw: bytes) -> bytes:
    """A field padded to whole 32-bit registers."""
    return raw + bytes(-len(raw) % 4)


def register_address(address: str) -> bytes:
    """4 bytes for IPv4, 16 for IPv6: whole registers either way."""
    return ipaddress.ip_address(address).packed


def _message(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    return message(kind, flags, seq, struct.pack("=BBH", family, 0, socket.htons(res_id)) + body)


Elements = list[tuple[bytes, bytes | None]]  # (key, data or None) in register layout


def _element_list(table: str, set_name: str, elements: Elements) -> bytes:
    listed = b""
    for key, data in elements:
        element = nested(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, key))
        if data is not None:
            element += nested(NFTA_SET_ELEM_DATA, attr(NFTA_DATA_VALUE, data))
        listed += nested(NFTA_LIST_ELEM, element)
    return (attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + nested(NFTA_SET_ELEM_LIST_ELEMENTS, listed))  # fmt: skip


def element_batch(verb: str, table: str, groups: list[tuple[str, Elements]], seq: int,
                  family: int = NFPROTO_INET) -> bytes:  # fmt: skip
    """One transaction: batch begin, an element message per set, batch end. Each message asks for an
    acknowledgement; the last one's sequence number is seq + len(groups)."""
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if verb == "add" else NFT_MSG_DELSETELEM)
    flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if verb == "add" else 0)
    messages = b"".join(_message(kind, flags, seq + 1 + index, family, _element_list(table, name, elements))
                        for index, (name, elements) in enumerate(groups))  # fmt: skip
    end = seq + 1 + len(groups)
    return (_message(NFNL_MSG_BATCH_BEGIN, 0, seq, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES) + messages
            + _message(NFNL_MSG_BATCH_END, 0, end, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES))  # fmt: skip


def change_elements(verb: str, table: str, set_name: str, elements: Elements) -> None:
    """Adds (verb "add") or deletes elements of an inet-family set or map, atomically, in the calling
    thread's network namespace. Raises NetlinkError with the kernel's errno (EEXIST, ENOENT, ...)."""
    change_sets(verb, table, [(set_name, elements)])


def change_sets(verb: str, table: str, groups: list[tuple[str, Elements]], family: int = NFPROTO_INET) -> None:
    """Several sets' elements in one transaction: all of them change, or none."""
    groups = [(name, elements) for name, elements in groups if elements]
    if not groups:
        return
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        seq = 1
        note_nft_committer()
        sock.send(element_batch(verb, table, groups, seq, family))
        # A failed transaction is aborted whole; the first error is the cause, the rest are its echo.
        for index in range(len(groups)):
            read_answer(sock, seq + 1 + index, f"nftables {verb} element in {groups[index][0]}")


def delete_present(table: str, groups: list[tuple[str, Elements]], family: int = NFPROTO_INET) -> None:
    """Deletes the elements in one transaction; when some are gone already (a flushed ruleset: the kernel
    then refuses the whole batch), one by one, the missing skipped. Idempotent."""
    try:
        change_sets("delete", table, groups, family)
    except NetlinkError as exc:
        if not is_missing(exc):
            raise
        for name, elements in groups:
            for element in elements:
                try:
                    change_sets("delete", table, [(name, [element])], family)
                except NetlinkError as missing:
                    if not is_missing(missing):
                        raise


def is_missing(error: OSError) -> bool:
    return error.errno == errno.ENOENT
