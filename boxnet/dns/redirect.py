"""127.0.0.11:53 inside a container: the resolver's sockets and the rule that sends port 53 to them.

Docker DNATs port 53 to the resolver's port, which brings connection tracking into every container and
costs each query a conntrack lookup and a NAT step. boxnet rewrites the port in place instead, both ways,
without tracking: the client still sees 127.0.0.11:53 answer it, and a query costs a rule match. Port 53 of
the container stays free for its own use on its other addresses, as with Docker.
"""

from __future__ import annotations

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


def install() -> tuple[socket.socket, socket.socket]:
    """Runs inside the container's network namespace: makes the sockets, then points port 53 at them."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        udp.bind((ADDRESS, 0))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, 0))
        tcp.listen(128)
        nft.run(render(udp.getsockname()[1], tcp.getsockname()[1]))
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp
