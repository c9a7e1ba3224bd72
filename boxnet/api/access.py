"""Who may use the API socket: the caller's credentials as the kernel gives them (SO_PEERCRED and
SO_PEERGROUPS, taken when it connected), checked against root or one configured group, as dockerd's -G.

The socket file's owner and mode say the same (root:GROUP 0660, or root 0600), so that a caller that is
refused never even connects; the check here holds if the file's mode is changed behind the daemon's back,
and it names who made each change in the log.
"""

from __future__ import annotations

import grp
import os
import socket
import struct
from dataclasses import dataclass

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
ERANGE = 34


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]

    def describe(self) -> str:
        try:
            with open(f"/proc/{self.pid}/comm") as handle:
                command = handle.read().strip()
        except OSError:
            command = "?"
        return f"uid={self.uid} pid={self.pid} ({command})"


def peer_of(sock: socket.socket) -> Peer:
    pid, uid, gid = struct.unpack("=iII", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    size = 4 * 64
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
            break
        except OSError as exc:
            if exc.errno != ERANGE or size >= 4 * 65536:
                raw = b""
                break
            size *= 4
    groups = struct.unpack(f"={len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    return Peer(pid, uid, gid, groups)


class AccessPolicy:
    """Root, and the members of `group` if one is given."""

    def __init__(self, group: str | None = None) -> None:
        self.group = group
        self.gid: int | None = None
        if group:
            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ValueError(f"no group named {group!r}") from None

    def allows(self, peer: Peer) -> bool:
        return peer.uid == 0 or (self.gid is not None and (peer.gid == self.gid or self.gid in peer.groups))

    def refusal(self, peer: Peer) -> str:
        allowed = f"root or members of group {self.group!r}" if self.group else \
            "root only (boxnetd --group NAME admits a group)"
        return f"permission denied: {peer.describe()} may not use this socket; it admits {allowed}"

    def secure_socket_file(self, path: str) -> None:
        """root:GROUP 0660 with a group, else root 0600."""
        os.chown(path, 0, self.gid if self.gid is not None else 0)
        os.chmod(path, 0o660 if self.gid is not None else 0o600)
