"""127.0.0.11:53 inside a container: the resolver's sockets and the rule that sends port 53 to them.

Docker DNATs port 53 to the resolver's port, which brings connection tracking into every container and
costs each query a conntrack lookup and a NAT step. boxnet rewrites the port in place instead, both ways,
without tracking: the client still sees 127.0.0.11:53 answer it, and a query costs a rule match. Port 53 of
the container stays free for its own use on its other addresses, as with Docker.
"""

from __future__ import annotations

import re
import socket

from boxnet.kernel import nft

ADDRESS = "127.0.0.11"
TABLE = "boxnet"
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 4 << 20  # a burst of queries waits here while the loop serves another container


def render(udp_port: int, tcp_port: int) -> str:
    """One transaction that replaces whatever redirect was there (a restarted daemon's new ports)."""
    for port in (udp_port, tcp_port):
        if not 0 < port < 65536:
            raise ValueError(f"bad resolver port {port}")
    rules = []
    for protocol, port in (("udp", udp_port), ("tcp", tcp_port)):
        rules.append(f"    ip daddr {ADDRESS} {protocol} dport 53 counter {protocol} dport set {port} notrack")
        rules.append(f"    ip saddr {ADDRESS} {protocol} sport {port} {protocol} sport set 53 notrack")
    return "\n".join([
        f"table ip {TABLE} {{", "}", f"flush table ip {TABLE}",
        f"table ip {TABLE} {{", "  chain dns {", "    type filter hook output priority raw; policy accept;",
        *rules, "  }", "}", "",
    ])  # fmt: skip


def _current_ports() -> tuple[int, int] | None:
    """The ports the redirect in this namespace points at now (a restarted daemon's container), if any."""
    listing = nft.list_text(f"table ip {TABLE}")
    udp = re.search(r"udp dport set (\d+)", listing)
    tcp = re.search(r"tcp dport set (\d+)", listing)
    return (int(udp.group(1)), int(tcp.group(1))) if udp and tcp else None


def _bind(sock: socket.socket, wanted: int) -> None:
    """The port the redirect already names if it is free, so that the rule can stay; else any free one."""
    try:
        sock.bind((ADDRESS, wanted))
    except OSError:
        if not wanted:
            raise
        sock.bind((ADDRESS, 0))


def install() -> tuple[socket.socket, socket.socket]:
    """Runs inside the container's network namespace: makes the sockets, then points port 53 at them.

    After a daemon restart the old resolver's ports are free again: the new sockets take them, and the rule
    stays as it is (replacing a hooked chain costs ~10 ms of RCU grace period; the first one ~1 ms)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        current = _current_ports()
        udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        _bind(udp, current[0] if current else 0)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(tcp, current[1] if current else 0)
        tcp.listen(128)
        ports = (udp.getsockname()[1], tcp.getsockname()[1])
        if ports != current:
            nft.run(render(*ports))
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp
