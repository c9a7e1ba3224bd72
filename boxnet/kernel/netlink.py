"""What rtnl.py and nfnl.py share: netlink message headers, attributes, and reading the kernel's answer."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000

HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port


class NetlinkError(OSError):
    pass


# The threads of this process that committed nftables changes, newest last. The kernel names a transaction's
# committer by thread id (NFTA_GEN_PROC_PID is task_pid_nr), and the thread may be gone by the time the event
# is read; ids are reused only after the pid space wraps, and the oldest are forgotten past a bound.
_NFT_COMMITTERS: dict[int, None] = {}
_NFT_COMMITTERS_MAX = 65536


def note_nft_committer() -> None:
    tid = threading.get_native_id()
    if tid not in _NFT_COMMITTERS:
        _NFT_COMMITTERS[tid] = None
        if len(_NFT_COMMITTERS) > _NFT_COMMITTERS_MAX:
            del _NFT_COMMITTERS[next(iter(_NFT_COMMITTERS))]


def committed_by_this_process(tid: int) -> bool:
    return tid == os.getpid() or tid in _NFT_COMMITTERS or os.path.exists(f"/proc/self/task/{tid}")


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def nested(kind: int, payload: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, payload)


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from offset on, by type (nested ones stay packed; the last of a repeated type wins)."""
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & ~NLA_F_NESTED] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body


def answers(sock: socket.socket, pending: set[int]) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of the messages answering the requests whose sequence numbers are in pending, up to
    each one's acknowledgement or end of dump (yielded too); pending empties as they end."""
    while pending:
        data = sock.recv(65536)
        offset = 0
        while offset < len(data):
            length, msg_type, _, msg_seq, _ = HEADER.unpack_from(data, offset)
            payload = data[offset + HEADER.size : offset + length]
            offset += (length + 3) & ~3
            if msg_seq in pending:
                if msg_type in (NLMSG_ERROR, NLMSG_DONE):
                    pending.discard(msg_seq)
                yield msg_type, payload


def error_code(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR payload (0: an acknowledgement)."""
    return -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0


def read_answer(sock: socket.socket, seq: int, what: str = "") -> list[tuple[int, bytes]]:
    """The replies to request seq, up to its acknowledgement; an error code from the kernel is raised."""
    replies: list[tuple[int, bytes]] = []
    for msg_type, payload in answers(sock, {seq}):
        if msg_type == NLMSG_ERROR:
            code = error_code(payload)
            if code:
                raise NetlinkError(code, f"{what}: {os.strerror(code)}" if what else os.strerror(code))
        elif msg_type != NLMSG_DONE:
            replies.append((msg_type, payload))
    return replies
