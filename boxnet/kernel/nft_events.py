"""nftables change events (the NFNLGRP_NFTABLES multicast group, what `nft monitor` reads), grouped by
transaction: which tables and chains each one touched, and which process made it.

The kernel follows each transaction's messages with NFT_MSG_NEWGEN, which carries the committing process's
thread id (NFTA_GEN_PROC_PID), so that a daemon can tell its own changes from someone else's.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from boxnet.kernel.netlink import HEADER, NLMSG_ERROR, parse_attrs
from boxnet.kernel.nfnl import NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES
from boxnet.kernel.readiness import readable

NFNLGRP_NFTABLES = 7
NFT_MSG_NEWGEN = 15
NFTA_GEN_PROC_PID = 2
# Every table, chain, rule, set, element, object and flowtable message names its table in attribute 1.
NFTA_TABLE_OF_OBJECT = 1
# The chain: NFTA_CHAIN_NAME (3) in chain messages, NFTA_RULE_CHAIN (2) in rule messages.
CHAIN_MESSAGES = {3: 3, 4: 3, 5: 3, 6: 2, 7: 2, 8: 2}  # NEW/GET/DELCHAIN, NEW/GET/DELRULE
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
RECEIVE_BUFFER = 8 << 20


@dataclass
class Transaction:
    """One committed change: the process that made it, and (family, table, chain or "") for each object."""

    pid: int = 0  # the committing thread (its id: a process's main thread has the process's)
    touched: set[tuple[str, str, str]] = field(default_factory=set)


class LostEvents(Exception):
    """The socket overflowed: some transactions went unseen."""


class NftEvents:
    """A subscription in the calling thread's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        self._pending = Transaction()

    def close(self) -> None:
        self.sock.close()

    def read(self, stop_fd: int, timeout: float | None = None) -> list[Transaction] | None:
        """The transactions completed in what arrives next (waiting up to timeout; [] when nothing came),
        or None once stop_fd is readable. Raises LostEvents when the kernel dropped messages."""
        ready = readable([self.sock, stop_fd], timeout)
        if stop_fd in ready:
            return None
        if not ready:
            return []
        try:
            data = self.sock.recv(1 << 20)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self._pending = Transaction()
                raise LostEvents(str(exc)) from None
            raise
        done = []
        for kind, family, attrs in _messages(data):
            if kind == NFT_MSG_NEWGEN:
                raw_pid = attrs.get(NFTA_GEN_PROC_PID, b"")
                self._pending.pid = struct.unpack("!I", raw_pid)[0] if len(raw_pid) == 4 else 0
                done.append(self._pending)
                self._pending = Transaction()
            elif NFTA_TABLE_OF_OBJECT in attrs:
                table = attrs[NFTA_TABLE_OF_OBJECT].rstrip(b"\0").decode(errors="replace")
                chain_attr = CHAIN_MESSAGES.get(kind)
                chain = attrs.get(chain_attr, b"").rstrip(b"\0").decode(errors="replace") if chain_attr else ""
                self._pending.touched.add((FAMILIES.get(family, str(family)), table, chain))
        return done


def _messages(data: bytes) -> Iterator[tuple[int, int, dict[int, bytes]]]:
    offset = 0
    while offset + HEADER.size <= len(data):
        length, msg_type, _, _, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        if msg_type != NLMSG_ERROR and msg_type >> 8 == NFNL_SUBSYS_NFTABLES:
            family = data[offset + HEADER.size]
            yield msg_type & 0xFF, family, parse_attrs(data[offset + HEADER.size + 4 : offset + length])
        offset += (length + 3) & ~3
