"""The embedded DNS at 127.0.0.11, with real clients (dig, and the container's libc through Python), the fake
upstream in the simulated outside, and the daemon killed and restarted under it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from boxnet.testing.sandbox import DNS_ADDR, Sandbox


def dig(sandbox: Sandbox, container: str, *args: str) -> tuple[str, list[str], str]:
    """(status, answer data, header flags) of one dig run inside a container; status TIMEOUT if none came."""
    result = sandbox.in_container(container, "dig", "+tries=1", "+timeout=4", "+noall", "+comments", "+answer",
                                  *args)  # fmt: skip
    status = re.search(r"status: (\w+)", result.stdout)
    flags = re.search(r";; flags: ([a-z ]*);", result.stdout)
    answers = [line.split()[-1] for line in result.stdout.splitlines() if line and not line.startswith(";")]
    return (status.group(1) if status else "TIMEOUT"), answers, (flags.group(1) if flags else "")


def libc_lookup(sandbox: Sandbox, container: str, name: str) -> str:
    """getaddrinfo through the container's own resolv.conf and glibc, as any program resolves."""
    script = (
        "import socket,sys\n"
        "try: print(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET)}))\n"
        "except socket.gaierror as e: print('error', e.errno)\n"
    )
    return sandbox.in_container(container, "python3", "-c", script, name).stdout.strip()


def run(sandbox: Sandbox, name: str, *flags: str) -> None:
    sandbox.cli("run", "-d", "--name", name, *flags, "sleep", "600")


def test_user_network_gets_127_0_0_11_and_every_kind_of_name(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "web", "--network", "appnet", "--hostname", "webhost", "--network-alias", "www")
    run(sandbox, "cli", "--network", "appnet")
    resolv = sandbox.in_container("cli", "cat", "/etc/resolv.conf").stdout
    assert resolv == "nameserver 127.0.0.11\nsearch example.test\noptions ndots:0 edns0\n"
    web = sandbox.ip_of("web")
    short_id = sandbox.inspect("web")["Id"][:12]
    for name in ("web", "webhost", "www", short_id, "web.appnet", "WEB.AppNet"):
        assert dig(sandbox, "cli", name)[:2] == ("NOERROR", [web]), name
    assert dig(sandbox, "cli", "+tcp", "web")[:2] == ("NOERROR", [web])
    assert libc_lookup(sandbox, "cli", "www") == str([web])
    assert dig(sandbox, "cli", "-x", web)[:2] == ("NOERROR", ["web.appnet."])
    # A name connected later, with its own alias, answers as soon as connect returns.
    run(sandbox, "late", "--network", "bridge")
    sandbox.cli("network", "connect", "--alias", "cache", "appnet", "late")
    assert dig(sandbox, "cli", "cache")[:2] == ("NOERROR", [sandbox.ip_of("late", "appnet")])
    sandbox.cli("network", "disconnect", "appnet", "late")
    assert dig(sandbox, "cli", "cache")[0] == "NXDOMAIN"


def test_default_bridge_copies_the_host_nameservers_and_knows_no_names(sandbox: Sandbox) -> None:
    run(sandbox, "one")
    run(sandbox, "two")
    resolv = sandbox.in_container("two", "cat", "/etc/resolv.conf").stdout
    assert resolv == f"nameserver {DNS_ADDR}\nsearch example.test\noptions edns0\n"  # 127.0.0.53 left out
    assert libc_lookup(sandbox, "two", "one").startswith("error")
    assert dig(sandbox, "two", "@127.0.0.11", "one")[0] == "TIMEOUT"  # nothing listens there
    # The host's resolver answers the outside's names directly.
    assert dig(sandbox, "two", "web.example.com")[:2] == ("NOERROR", ["203.0.113.80"])


def test_scope_is_the_networks_a_container_shares(sandbox: Sandbox) -> None:
    for net in ("front", "back"):
        sandbox.cli("network", "create", net)
    run(sandbox, "api", "--network", "front")
    sandbox.cli("network", "connect", "back", "api")
    run(sandbox, "db", "--network", "back")
    run(sandbox, "ui", "--network", "front")
    assert dig(sandbox, "api", "db")[:2] == ("NOERROR", [sandbox.ip_of("db")])
    assert dig(sandbox, "ui", "db")[0] == "NXDOMAIN"
    assert dig(sandbox, "db", "api")[:2] == ("NOERROR", [sandbox.ip_of("api", "back")])
    assert not [q for q in sandbox.upstream_questions() if " db " in q]  # a container name never leaves


def test_one_alias_many_containers_every_address_rotating(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "svcnet")
    for i in range(3):
        run(sandbox, f"replica{i}", "--network", "svcnet", "--network-alias", "svc")
    run(sandbox, "cli", "--network", "svcnet")
    expected = sorted(sandbox.ip_of(f"replica{i}") for i in range(3))
    orders = [dig(sandbox, "cli", "svc")[1] for _ in range(3)]
    assert all(sorted(order) == expected for order in orders)
    assert len({tuple(order) for order in orders}) == 3  # each answer starts with another replica


def test_ipv6_aaaa_ptr_and_truncation_to_tcp(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--ipv6", "--subnet", "fd00:53::/64", "--subnet", "10.53.0.0/24", "six")
    for i in range(20):  # 20 AAAA records do not fit in 512 bytes
        run(sandbox, f"node{i}", "--network", "six", "--network-alias", "many")
    run(sandbox, "cli", "--network", "six")
    node0 = sandbox.inspect("node0")["NetworkSettings"]["Networks"]["six"]["GlobalIPv6Address"]
    assert dig(sandbox, "cli", "AAAA", "node0")[:2] == ("NOERROR", [node0])
    assert dig(sandbox, "cli", "-x", node0)[:2] == ("NOERROR", ["node0.six."])
    status, answers, flags = dig(sandbox, "cli", "+noedns", "+ignore", "AAAA", "many")
    assert status == "NOERROR" and "tc" in flags.split() and answers == []
    status, answers, _ = dig(sandbox, "cli", "+noedns", "AAAA", "many")  # dig retries over TCP
    assert status == "NOERROR" and len(answers) == 20


def test_forwarding_the_containers_domain_and_failures(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "cli", "--network", "appnet")
    assert dig(sandbox, "cli", "web.example.com")[:2] == ("NOERROR", ["203.0.113.80"])
    assert libc_lookup(sandbox, "cli", "web.example.com") == "['203.0.113.80']"
    assert dig(sandbox, "cli", "nx.example.com")[0] == "NXDOMAIN"
    # Big answers: truncated over UDP by the upstream, fetched over TCP by both the client and boxnet.
    status, answers, _ = dig(sandbox, "cli", "+noedns", "big.example.com")
    assert status == "NOERROR" and len(answers) == 60
    # The containers' own domain never leaves: single labels and NAME.NETWORK are answered here.
    for name in ("nothere", "nothere.appnet"):
        assert dig(sandbox, "cli", name)[0] == "NXDOMAIN"
    asked = sandbox.upstream_questions()
    assert "udp web.example.com A" in asked and "tcp big.example.com A" in asked
    assert not [q for q in asked if "nothere" in q]
    # A dead upstream is a quick SERVFAIL, not a client timeout.
    started = time.monotonic()
    assert dig(sandbox, "cli", "slow.example.com")[0] == "SERVFAIL"
    assert time.monotonic() - started < 3.0


def test_container_dns_option_picks_the_upstream(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "own", "--network", "appnet", "--dns", "203.0.113.99", "--dns-search", "corp.test")
    assert "search corp.test" in sandbox.in_container("own", "cat", "/etc/resolv.conf").stdout
    started = time.monotonic()
    assert dig(sandbox, "own", "web.example.com")[0] == "SERVFAIL"  # nobody at 203.0.113.99
    assert time.monotonic() - started < 3.0
    assert sandbox.inspect("own")["HostConfig"]["Dns"] == ["203.0.113.99"]
    bad = sandbox.cli("run", "-d", "--network", "appnet", "--dns", "dns.example", "sleep", "1", check=False)
    assert bad.returncode != 0 and "'dns.example' is not an IP address" in bad.stderr


def test_internal_only_containers_get_no_forwarding(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--internal", "vault")
    run(sandbox, "secret", "--network", "vault")
    run(sandbox, "peer", "--network", "vault")
    assert dig(sandbox, "secret", "peer")[:2] == ("NOERROR", [sandbox.ip_of("peer")])
    assert dig(sandbox, "secret", "exfil.example.com")[0] == "REFUSED"
    assert not [q for q in sandbox.upstream_questions() if "exfil" in q]


def test_removal_is_immediate_and_a_restarted_daemon_answers_again(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "web", "--network", "appnet")
    run(sandbox, "cli", "--network", "appnet")
    run(sandbox, "gone", "--network", "appnet")
    sandbox.cli("rm", "-f", "gone")
    assert dig(sandbox, "cli", "gone")[0] == "NXDOMAIN"
    pid = sandbox.inspect("cli")["State"]["Pid"]
    sandbox.kill_daemon(signal.SIGKILL)
    sandbox.start_daemon()
    assert sandbox.inspect("cli")["State"]["Pid"] == pid  # not restarted
    assert dig(sandbox, "cli", "web")[:2] == ("NOERROR", [sandbox.ip_of("web")])
    assert dig(sandbox, "cli", "web.example.com")[:2] == ("NOERROR", ["203.0.113.80"])


HOSTILE = r"""
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
header = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
for junk in (b"", b"\x01", header, header + b"\xc0\x0c\x00\x01\x00\x01", header + b"\x3fabc",
             header[:2] + b"\x81\x00" + header[4:] + b"\x01a\x00\x00\x01\x00\x01", os.urandom(3000)):
    s.sendto(junk, ("127.0.0.11", 53))
for _ in range(200):
    s.sendto(os.urandom(40), ("127.0.0.11", 53))
formerr = 0
s.settimeout(0.5)
try:
    while True:
        reply = s.recv(4096)
        formerr += reply[:2] == b"\x42\x42" and reply[3] & 0xF == 1
except socket.timeout:
    pass
print(formerr)
"""


def test_hostile_packets_get_formerr_or_nothing_and_answers_go_on(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "cli", "--network", "appnet")
    result = sandbox.in_container("cli", "python3", "-c", HOSTILE)
    assert int(result.stdout.strip()) >= 2, result.stderr  # the header-only and the pointer-loop queries
    assert dig(sandbox, "cli", "cli")[:2] == ("NOERROR", [sandbox.ip_of("cli")])


def test_dns_log_shows_each_query_with_its_answer_and_source(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "web", "--network", "appnet")
    run(sandbox, "cli", "--network", "appnet")
    dig(sandbox, "cli", "web")
    dig(sandbox, "cli", "web.example.com")
    dig(sandbox, "cli", "+tcp", "nothere")
    text = sandbox.cli("dns", "log", "cli").stdout.splitlines()
    assert text[0].split()[:3] == ["TIME", "PROTO", "QUESTION"]
    lines = [line.split() for line in text[1:]]
    assert lines[0][1:5] == ["udp", "web.", "A", "NOERROR"] and lines[0][6] == "local"
    assert lines[0][-1] == sandbox.ip_of("web")
    assert lines[1][2] == "web.example.com." and lines[1][7] == f"{DNS_ADDR}"
    assert lines[2][1:5] == ["tcp", "nothere.", "A", "NXDOMAIN"]
    entries = sandbox.client.get("/boxnet/containers/cli/dns-log", tail=1)
    assert len(entries) == 1 and entries[0]["name"] == "nothere."
    refused = sandbox.cli("run", "-d", "--name", "plain", "sleep", "60")
    assert refused.returncode == 0
    result = sandbox.cli("dns", "log", "plain", check=False)
    assert result.returncode != 0 and "does not use the embedded DNS" in result.stderr


@pytest.mark.parametrize("sandbox", [{"BOXNET_FAULTS": "start:after-dns"}], indirect=True)
def test_a_start_failing_after_dns_leaves_no_name_behind(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    before = sandbox.kernel_state()
    result = sandbox.cli("run", "-d", "--name", "doomed", "--network", "appnet", "sleep", "60", check=False)
    assert result.returncode != 0 and "after-dns" in result.stderr
    assert sandbox.kernel_state() == before
    sandbox.cli("rm", "doomed")


def test_a_resolver_that_dies_is_replaced_with_every_name(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "web", "--network", "appnet", "--network-alias", "www")
    run(sandbox, "cli", "--network", "appnet")
    first = sandbox.client.get("/boxnet/dns")["Pid"]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sandbox.client.get("/boxnet/dns")["Pid"] in (first, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.client.get("/boxnet/dns")["Pid"] not in (first, 0)
    assert dig(sandbox, "cli", "www")[:2] == ("NOERROR", [sandbox.ip_of("web")])


LOAD = r"""
import subprocess, sys
open("/tmp/q.txt", "w").write("".join(f"{n} A\n" for n in sys.argv[1:]))
out = subprocess.run(["dnsperf", "-s", "127.0.0.11", "-d", "/tmp/q.txt", "-l", "4", "-c", "2", "-Q", "3000"],
                     capture_output=True, text=True).stdout
print(next(line.split()[2] for line in out.splitlines() if "Queries lost" in line))
"""


def test_changes_under_load_lose_no_query(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "appnet")
    run(sandbox, "web", "--network", "appnet")
    run(sandbox, "cli", "--network", "appnet")
    argv = [sys.executable, "-m", "boxnet.cli.main", "exec", "cli", "python3", "-c", LOAD, "web", "web.example.com"]
    load = subprocess.Popen(argv, env=sandbox.env(), stdout=subprocess.PIPE, text=True)
    for i in range(6):  # names come and go while the queries flow
        run(sandbox, f"churn{i}", "--network", "appnet")
        sandbox.cli("rm", "-f", f"churn{i}")
    out, _ = load.communicate(timeout=60)
    assert out.strip() == "0"
