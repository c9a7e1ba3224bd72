"""Host ports held for published container ports: a socket bound (never listening) to each, in the daemon's
namespace, for as long as the port is published.

Publishing is DNAT, which takes a packet before any socket sees it: without a reservation, a port a host
process already listens on would be published over it silently (its clients would reach the container),
and a host process could later bind a published port and never receive anything. With one, the first is a
clear error at `run`, and the second fails at the process's own bind (EADDRINUSE), as with Docker.
The sockets go with the daemon; a restarted daemon takes them again for the containers it adopts.
"""

from __future__ import annotations

import errno
import socket
import threading

from boxnet.errors import Conflict

# Bind an address the host does not have (yet): a port may be published on any address.
IP_FREEBIND, IPV6_FREEBIND = 15, 78
SOCKET_TYPES = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0),
                "sctp": (socket.SOCK_SEQPACKET, 132)}  # fmt: skip

Key = tuple[str, str, int]  # (protocol, host address or "", port)


class PortInUse(Conflict):
    pass


def _bind(protocol: str, host_ip: str, port: int, family: int) -> socket.socket | None:
    """A socket bound to the port; None when this kernel has no such protocol (sctp, IPv6)."""
    kind, proto = SOCKET_TYPES[protocol]
    try:
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT):
            return None
        raise
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        sock.bind((host_ip or ("0.0.0.0" if family == socket.AF_INET else "::"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            where = host_ip or ("0.0.0.0" if family == socket.AF_INET else "[::]")
            raise PortInUse(f"Bind for {where}:{port}/{protocol} failed: a process of the host already uses the "
                            "port") from None  # fmt: skip
        raise
    return sock


class PortReservations:
    def __init__(self) -> None:
        self._held: dict[str, dict[Key, list[socket.socket]]] = {}  # owner -> port -> sockets
        self._lock = threading.Lock()

    def hold(self, owner: str, protocol: str, host_ip: str, port: int, ipv6: bool = False) -> None:
        """Binds the port on the address given, or on every address (IPv6 ones too with ipv6, as the DNAT
        does on an IPv6 network); PortInUse if taken."""
        families = [socket.AF_INET6 if ":" in host_ip else socket.AF_INET] if host_ip else [socket.AF_INET] + (
            [socket.AF_INET6] if ipv6 else [])
        sockets: list[socket.socket] = []
        try:
            for family in families:
                sock = _bind(protocol, host_ip, port, family)
                if sock is not None:
                    sockets.append(sock)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        with self._lock:
            self._held.setdefault(owner, {})[(protocol, host_ip, port)] = sockets

    def release(self, owner: str) -> None:
        with self._lock:
            held = self._held.pop(owner, {})
        for sockets in held.values():
            for sock in sockets:
                sock.close()

    def held(self, owner: str) -> list[Key]:
        with self._lock:
            return sorted(self._held.get(owner, {}))
