"""Packets: same network, isolation between networks, icc off, internal networks, outbound NAT, attackers."""

from __future__ import annotations

from boxnet.testing.sandbox import ATTACKER_ADDR, HOST_ADDR, WEB_ADDR, Sandbox

# Prints the body of an HTTP/1.0 answer (read to EOF): the servers here answer with the client's address.
TCP_PROBE = ("python3", "-c", "import socket,sys\n"
             "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
             "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); data=b''\n"
             "while (chunk := s.recv(4096)): data += chunk\n"
             "print(data.decode().split('\\r\\n\\r\\n',1)[-1])")  # fmt: skip
SERVER = ("python3", "-c", "import http.server,socketserver,sys\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "  def do_GET(self):\n"
          "    b=self.client_address[0].encode(); self.send_response(200)\n"
          "    self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)\n"
          "  def log_message(self,*a): pass\n"
          "socketserver.ThreadingTCPServer.allow_reuse_address=True\n"
          "socketserver.ThreadingTCPServer(('0.0.0.0',int(sys.argv[1])),H).serve_forever()")  # fmt: skip


def run_server(sandbox: Sandbox, name: str, *flags: str, port: int = 80) -> str:
    sandbox.cli("run", "-d", "--name", name, *flags, *SERVER, str(port))
    wait_listening(sandbox, name, port)
    return sandbox.ip_of(name)


def wait_listening(sandbox: Sandbox, name: str, port: int) -> None:
    script = f"for i in $(seq 100); do ss -ltn | grep -q ':{port} ' && exit 0; sleep 0.05; done; exit 1"
    assert sandbox.in_container(name, "sh", "-c", script).returncode == 0


def probe_from_container(sandbox: Sandbox, name: str, address: str, port: int = 80, timeout: float = 1.5) -> str | None:
    result = sandbox.in_container(name, *TCP_PROBE, address, str(port), str(timeout))
    return result.stdout.strip() if result.returncode == 0 else None


def probe_from_ns(sandbox: Sandbox, ns: str, address: str, port: int = 80, timeout: float = 1.5) -> str | None:
    result = sandbox.in_ns(ns, *TCP_PROBE, address, str(port), str(timeout))
    return result.stdout.strip() if result.returncode == 0 else None


def ping(sandbox: Sandbox, name: str, address: str) -> bool:
    return sandbox.in_container(name, "ping", "-c", "1", "-W", "1", address).returncode == 0


def test_same_network_talks_and_other_networks_are_isolated(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "red")
    sandbox.cli("network", "create", "blue")
    red_ip = run_server(sandbox, "red-web", "--network", "red")
    sandbox.cli("run", "-d", "--name", "red-client", "--network", "red", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "blue-client", "--network", "blue", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "default-client", "sleep", "300")
    assert probe_from_container(sandbox, "red-client", red_ip) == sandbox.ip_of("red-client")
    assert ping(sandbox, "red-client", red_ip)
    assert probe_from_container(sandbox, "blue-client", red_ip) is None
    assert not ping(sandbox, "blue-client", red_ip)
    assert probe_from_container(sandbox, "default-client", red_ip) is None
    # connecting the client to red makes it reachable, disconnecting cuts it again
    sandbox.cli("network", "connect", "red", "blue-client")
    assert probe_from_container(sandbox, "blue-client", red_ip) == sandbox.ip_of("blue-client", "red")
    sandbox.cli("network", "disconnect", "red", "blue-client")
    assert probe_from_container(sandbox, "blue-client", red_ip) is None


def test_icc_disabled_blocks_traffic_inside_the_network(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "quiet")
    web_ip = run_server(sandbox, "quiet-web", "--network", "quiet")
    sandbox.cli("run", "-d", "--name", "quiet-client", "--network", "quiet", "sleep", "300")
    assert probe_from_container(sandbox, "quiet-client", web_ip) is None
    # but the way out still works
    assert probe_from_container(sandbox, "quiet-client", WEB_ADDR) == HOST_ADDR


def test_outbound_nat_and_internal_networks(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--internal", "vault")
    sandbox.cli("run", "-d", "--name", "out", "sleep", "300")
    # the outside sees the host's uplink address: masquerade
    assert probe_from_container(sandbox, "out", WEB_ADDR) == HOST_ADDR
    vault_ip = run_server(sandbox, "vault-db", "--network", "vault")
    sandbox.cli("run", "-d", "--name", "vault-app", "--network", "vault", "sleep", "300")
    assert probe_from_container(sandbox, "vault-app", vault_ip) == sandbox.ip_of("vault-app")
    assert probe_from_container(sandbox, "vault-app", WEB_ADDR) is None
    assert "default" not in sandbox.in_container("vault-app", "ip", "route").stdout
    assert probe_from_ns(sandbox, sandbox.attacker, vault_ip) is None


def test_attacker_routing_to_container_subnets_reaches_nothing_unpublished(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.60.0.0/24", "lan")
    web_ip = run_server(sandbox, "secret", "--network", "lan")
    default_ip = run_server(sandbox, "secret2")
    assert probe_from_ns(sandbox, sandbox.attacker, web_ip) is None
    assert probe_from_ns(sandbox, sandbox.attacker, default_ip) is None
    assert sandbox.in_ns(sandbox.attacker, "ping", "-c", "1", "-W", "1", web_ip).returncode != 0
    # yet the container can reach the attacker's network (outbound) and gets its replies
    assert sandbox.in_container("secret", "ping", "-c", "1", "-W", "2", ATTACKER_ADDR).returncode == 0


def test_icc_off_holds_without_br_netfilter(sandbox: Sandbox) -> None:
    """Bridged frames skip the inet hooks when br_netfilter is off; the bridge-layer rule still stops them."""
    setting = "net.bridge.bridge-nf-call-iptables"
    if sandbox.in_host("sysctl", "-n", setting).returncode != 0:
        check_without = True  # no br_netfilter at all: the case itself
    else:
        check_without = sandbox.in_host("sysctl", "-w", f"{setting}=0").returncode == 0
    assert check_without
    sandbox.cli("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "quiet")
    sandbox.cli("network", "create", "chatty")
    quiet_ip = run_server(sandbox, "quiet-web", "--network", "quiet")
    chatty_ip = run_server(sandbox, "chatty-web", "--network", "chatty")
    sandbox.cli("run", "-d", "--name", "quiet-client", "--network", "quiet", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "chatty-client", "--network", "chatty", "sleep", "300")
    assert probe_from_container(sandbox, "quiet-client", quiet_ip) is None
    assert probe_from_container(sandbox, "chatty-client", chatty_ip) == sandbox.ip_of("chatty-client")
    assert probe_from_container(sandbox, "chatty-client", quiet_ip) is None


def test_ipv6_network_gives_containers_v6_and_v4_only_networks_none(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--ipv6", "--subnet", "fd00:beef::/64", "dual")
    sandbox.cli("run", "-d", "--name", "six", "--network", "dual", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "six2", "--network", "dual", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "four", "sleep", "300")
    six = sandbox.inspect("six")["NetworkSettings"]["Networks"]["dual"]
    assert six["GlobalIPv6Address"] == "fd00:beef::2" and six["IPv6Gateway"] == "fd00:beef::1"
    assert "fd00:beef::2/64" in sandbox.in_container("six", "ip", "-6", "addr", "show", "eth0").stdout
    assert sandbox.in_container("six2", "ping", "-6", "-c", "1", "-W", "2", "fd00:beef::2").returncode == 0
    assert sandbox.in_container("six", "ping", "-6", "-c", "1", "-W", "2", "fd00:beef::1").returncode == 0
    assert "inet6" not in sandbox.in_container("four", "ip", "-6", "addr", "show", "eth0").stdout
