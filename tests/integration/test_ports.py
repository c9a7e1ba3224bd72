"""Published ports, in the kernel: from outside, from the host, hairpin, 127.0.0.1-only, udp, conflicts."""

from __future__ import annotations

import time

import pytest
from test_connectivity import probe_from_container, probe_from_ns, run_server, wait_listening

from boxnet.testing.sandbox import ATTACKER_ADDR, ATTACKER_ADDR6, HOST_ADDR, HOST_ADDR6, WEB_ADDR, Sandbox


def test_published_port_from_outside_host_and_containers(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "front")
    sandbox.cli("network", "create", "back")
    run_server(sandbox, "web", "--network", "front", "-p", "8080:80")
    # from a neighbour outside: the client's own address is preserved
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == ATTACKER_ADDR
    # from the host itself, on its address and on 127.0.0.1
    assert probe_from_ns(sandbox, sandbox.host, HOST_ADDR, 8080) is not None
    assert probe_from_ns(sandbox, sandbox.host, "127.0.0.1", 8080) is not None
    # hairpin: a container on the same network through the host's address; and one on another network
    sandbox.cli("run", "-d", "--name", "same", "--network", "front", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "other", "--network", "back", "sleep", "300")
    assert probe_from_container(sandbox, "same", HOST_ADDR, 8080) is not None
    assert probe_from_container(sandbox, "other", HOST_ADDR, 8080) is not None
    # the container reaching its own published port
    assert probe_from_container(sandbox, "web", HOST_ADDR, 8080) is not None
    # an unpublished port of the same container stays closed to the neighbour
    assert probe_from_ns(sandbox, sandbox.attacker, sandbox.ip_of("web"), 80) is None
    # removing the container removes the mapping
    sandbox.cli("rm", "-f", "web")
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080, timeout=1) is None


def test_port_published_on_loopback_is_not_reachable_from_a_neighbour(sandbox: Sandbox) -> None:
    run_server(sandbox, "local", "-p", "127.0.0.1:8081:80")
    assert probe_from_ns(sandbox, sandbox.host, "127.0.0.1", 8081) is not None
    assert probe_from_ns(sandbox, sandbox.host, HOST_ADDR, 8081, timeout=1) is None
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8081, timeout=1) is None
    # a neighbour that sends packets for 127.0.0.1 to the host's MAC gets nothing either
    sandbox.in_ns(sandbox.attacker, "ip", "route", "add", "127.0.0.1/32", "via", HOST_ADDR)
    try:
        assert probe_from_ns(sandbox, sandbox.attacker, "127.0.0.1", 8081, timeout=1) is None
    finally:
        sandbox.in_ns(sandbox.attacker, "ip", "route", "del", "127.0.0.1/32", "via", HOST_ADDR)


def test_random_host_port_and_udp(sandbox: Sandbox) -> None:
    run_server(sandbox, "anyport", "-p", "80")
    binding = sandbox.inspect("anyport")["NetworkSettings"]["Ports"]["80/tcp"][0]
    port = int(binding["HostPort"])
    assert 32768 <= port <= 60999
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, port) == ATTACKER_ADDR
    echo = "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353))\n" \
           "while True:\n d, a = s.recvfrom(2048); s.sendto(d.upper() + a[0].encode(), a)"
    sandbox.cli("run", "-d", "--name", "udp", "-p", "5300:5353/udp", "python3", "-c", echo)
    ask = ("python3", "-c", "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
           "s.settimeout(1)\nfor i in range(20):\n try:\n  s.sendto(b'ping', (sys.argv[1], 5300)); "
           "print(s.recv(100).decode()); break\n except OSError: pass")  # fmt: skip
    assert sandbox.in_ns(sandbox.attacker, *ask, HOST_ADDR).stdout.strip() == "PING" + ATTACKER_ADDR


def test_host_port_conflicts_are_clear_errors(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "holder", "-p", "9090:80", "sleep", "300")
    result = sandbox.cli("run", "-d", "--name", "clash", "-p", "9090:81", "sleep", "300", check=False)
    assert result.returncode != 0 and "port is already allocated" in result.stderr
    # another protocol, or another host address with an explicit IP, is no clash... except against 0.0.0.0
    sandbox.cli("run", "-d", "--name", "udp-ok", "-p", "9090:80/udp", "sleep", "300")
    result = sandbox.cli("run", "-d", "--name", "ip-clash", "-p", "127.0.0.1:9090:80", "sleep", "300",
                         check=False)  # fmt: skip
    assert result.returncode != 0 and "already allocated" in result.stderr
    twice = sandbox.cli("run", "-d", "-p", "9191:80", "-p", "9191:81", "sleep", "300", check=False)
    assert twice.returncode != 0 and "published twice" in twice.stderr


SERVER6 = ("python3", "-c", "import http.server,socket,socketserver\n"
           "class H(http.server.BaseHTTPRequestHandler):\n"
           "  def do_GET(self):\n"
           "    b=self.client_address[0].encode(); self.send_response(200)\n"
           "    self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)\n"
           "  def log_message(self,*a): pass\n"
           "class S(socketserver.ThreadingTCPServer):\n"
           "  address_family=socket.AF_INET6; allow_reuse_address=True\n"
           "S(('::',80),H).serve_forever()")  # fmt: skip


def test_ports_published_over_ipv6_too(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--ipv6", "--subnet", "fd00:cafe::/64", "dual")
    sandbox.cli("run", "-d", "--name", "web6", "--network", "dual", "-p", "8080:80", *SERVER6)
    wait_listening(sandbox, "web6", 80)
    # the same published port answers on both families, and keeps the client's own address on each
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == "::ffff:" + ATTACKER_ADDR
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR6, 8080) == ATTACKER_ADDR6
    # hairpin over IPv6 from a neighbour container
    sandbox.cli("run", "-d", "--name", "peer6", "--network", "dual", "sleep", "300")
    assert probe_from_container(sandbox, "peer6", HOST_ADDR6, 8080) is not None
    # the container's own IPv6 address stays closed to the neighbour that routes fd00::/8 through the host
    container6 = sandbox.inspect("web6")["NetworkSettings"]["Networks"]["dual"]["GlobalIPv6Address"]
    assert probe_from_ns(sandbox, sandbox.attacker, container6, 80, timeout=1) is None


# Connects (optionally from a bound address), sends a request, prints "peer-address:port body".
PEER_PROBE = ("python3", "-c", "import socket,sys\n"
              "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
              "sys.argv[4] and s.bind((sys.argv[4], 0))\n"
              "s.connect((sys.argv[1], int(sys.argv[2]))); peer='%s:%d' % s.getpeername()\n"
              "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); data=b''\n"
              "while (chunk := s.recv(4096)): data += chunk\n"
              "print(peer, data.decode().split('\\r\\n\\r\\n',1)[-1])")  # fmt: skip


def host_probe(sandbox: Sandbox, address: str, port: int, bind: str = "", timeout: float = 1.5,
               ) -> tuple[str, str] | None:  # fmt: skip
    """What the host's client saw as its peer, and the client address the container saw."""
    result = sandbox.in_ns(sandbox.host, *PEER_PROBE, address, str(port), str(timeout), bind)
    if result.returncode != 0:
        return None
    peer, seen = result.stdout.split()
    return peer, seen


def test_host_connections_to_published_ports_skip_nat(sandbox: Sandbox) -> None:
    run_server(sandbox, "web", "-p", "8080:80", "-p", "127.0.0.1:8081:80")
    gateway = sandbox.inspect("web")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    assert len(sandbox.daemon_programs()) == 2  # connect4 and getpeername4
    # Redirected at connect(): the container sees the bridge's address (as behind Docker's proxy), the client
    # still sees the address it dialled.
    assert host_probe(sandbox, HOST_ADDR, 8080) == (f"{HOST_ADDR}:8080", gateway)
    assert host_probe(sandbox, "127.0.0.1", 8080) == ("127.0.0.1:8080", gateway)
    assert host_probe(sandbox, "127.0.0.1", 8081) == ("127.0.0.1:8081", gateway)
    assert host_probe(sandbox, HOST_ADDR, 8081, timeout=1) is None  # published on 127.0.0.1 only
    # A port published on an address that is not the host's: the host's connections to it go where they
    # would go anyway (here the outside's web server, with nothing on 8082), as nft's `fib daddr type local`.
    run_server(sandbox, "elsewhere", "-p", f"{WEB_ADDR}:8082:80")
    assert host_probe(sandbox, WEB_ADDR, 8082, timeout=1) is None
    # A socket bound to a loopback address cannot go straight to the container: it goes through NAT.
    assert host_probe(sandbox, "127.0.0.1", 8080, bind="127.0.0.1") == ("127.0.0.1:8080", gateway)
    # An address the host gains later counts as its own for ports published on every address.
    sandbox.in_host("ip", "addr", "add", "198.51.100.9/24", "dev", "uplink0", check=True)
    try:
        deadline = time.monotonic() + 3
        while host_probe(sandbox, "198.51.100.9", 8080) != ("198.51.100.9:8080", gateway):
            assert time.monotonic() < deadline, "a new address of the host was never redirected"
            time.sleep(0.1)
    finally:
        sandbox.in_host("ip", "addr", "del", "198.51.100.9/24", "dev", "uplink0", check=True)
    # A daemon that is down leaves nothing attached, and the host's connections still arrive, through NAT:
    # the container then sees the host's own address.
    sandbox.kill_daemon()
    assert sandbox.leaked_programs() == set()
    assert host_probe(sandbox, HOST_ADDR, 8080) == (f"{HOST_ADDR}:8080", HOST_ADDR)
    sandbox.start_daemon()
    assert host_probe(sandbox, HOST_ADDR, 8080) == (f"{HOST_ADDR}:8080", gateway)
    sandbox.cli("rm", "-f", "web")
    assert host_probe(sandbox, HOST_ADDR, 8080, timeout=1) is None
    assert host_probe(sandbox, "127.0.0.1", 8081, timeout=1) is None


@pytest.mark.parametrize("sandbox", [{"daemon_args": ["--no-connect-redirect"]}], indirect=True)
def test_without_the_connect_redirect_host_connections_go_through_nat(sandbox: Sandbox) -> None:
    run_server(sandbox, "web", "-p", "8080:80")
    assert sandbox.daemon_programs() == set()
    assert host_probe(sandbox, HOST_ADDR, 8080) == (f"{HOST_ADDR}:8080", HOST_ADDR)
    assert host_probe(sandbox, "127.0.0.1", 8080) is not None



HOLD_PORT = ("python3", "-c", "import socket, sys, time\n"
             "s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1)\n"
             "print('listening', flush=True); time.sleep(60)")  # fmt: skip
TRY_BIND = ("python3", "-c", "import socket, sys\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "try: s.bind(('0.0.0.0', int(sys.argv[1]))); print('bound')\n"
            "except OSError as e: print(e.strerror)")  # fmt: skip


def test_a_port_the_host_uses_is_not_published_over_it(sandbox: Sandbox) -> None:
    import subprocess

    holder = subprocess.Popen(["ip", "netns", "exec", sandbox.host, *HOLD_PORT, "9999"], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "listening"
        result = sandbox.cli("run", "-d", "--name", "over", "-p", "9999:80", "sleep", "300", check=False)
        assert result.returncode != 0 and "a process of the host already uses the port" in result.stderr
        assert sandbox.inspect("over")["State"]["Status"] == "created"
        # a port boxnet chooses steers clear of it by itself
        sandbox.cli("run", "-d", "--name", "anyport", "-p", "80", "sleep", "300")
    finally:
        holder.kill()
        holder.wait()
    # the other way round: a published port cannot be taken by a host process afterwards
    sandbox.cli("run", "-d", "--name", "first", "-p", "9998:80", "sleep", "300")
    assert sandbox.in_host(*TRY_BIND, "9998").stdout.strip() == "Address already in use"
    sandbox.cli("rm", "-f", "first")
    assert sandbox.in_host(*TRY_BIND, "9998").stdout.strip() == "bound"
    # a daemon restarted with the container still running takes its port again
    sandbox.cli("run", "-d", "--name", "second", "-p", "9997:80", "sleep", "300")
    sandbox.kill_daemon()
    sandbox.start_daemon()
    assert sandbox.in_host(*TRY_BIND, "9997").stdout.strip() == "Address already in use"
