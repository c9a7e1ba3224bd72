"""A service VIP balanced by nftables in the client's own namespace (services/vip.py), on real namespaces:
the split over backends, a removed backend getting no new connection while an open one stays on it, ICMP."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections import Counter

import pytest

from boxnet.kernel import netns, nft
from boxnet.services import vip

SERVER = r"""
import socket, sys, threading
def serve(address):
    listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 80)); listener.listen(512)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn, address), daemon=True).start()
def answer(conn, address):
    while conn.recv(64):
        conn.sendall(address.encode())
for address in sys.argv[1:]:
    threading.Thread(target=serve, args=(address,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENTS = r"""
import socket, sys
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 80), 2); s.sendall(b"?"); print(s.recv(64).decode()); s.close()
"""

BACKENDS = ("10.77.0.5", "10.77.0.6", "10.77.0.7")
VIP = "10.77.0.100"


@pytest.fixture
def pair():
    tag = secrets.token_hex(3)
    client, server = f"vipc-{tag}", f"vips-{tag}"
    for ns in (client, server):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    process = None
    try:
        subprocess.run(["ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
                        server], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", client, "addr", "add", "10.77.0.2/24", "dev", "eth0"], check=True)
        for address in BACKENDS:
            subprocess.run(["ip", "-n", server, "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
        for ns in (client, server):
            subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        process = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", SERVER, *BACKENDS],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert process.stdout and process.stdout.readline().strip() == "ready"
        yield client
    finally:
        if process is not None:
            process.kill()
            process.wait()
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def connections(client: str, count: int) -> Counter:
    result = subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", CLIENTS, VIP, str(count)],
                            capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return Counter(result.stdout.split())


def test_the_vip_spreads_new_connections_and_keeps_open_ones(pair: str) -> None:
    path = f"/run/netns/{pair}"
    service = vip.VipService("s" * 25, VIP, BACKENDS)
    netns.run_in(path, nft.run, vip.full([service]))
    assert connections(pair, 300) == {address: 100 for address in BACKENDS}
    # One connection stays open across the change; the backend it landed on leaves.
    kept = subprocess.Popen(["ip", "netns", "exec", pair, sys.executable, "-u", "-c",
                             "import socket,sys\ns=socket.create_connection((sys.argv[1],80),2)\n"
                             "for line in sys.stdin:\n s.sendall(b'?'); print(s.recv(64).decode(), flush=True)",
                             VIP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert kept.stdin and kept.stdout
    kept.stdin.write("go\n")
    kept.stdin.flush()
    first = kept.stdout.readline().strip()
    assert first in BACKENDS
    started = time.monotonic()
    netns.run_in(path, nft.run, vip.set_backends(vip.VipService("s" * 25, VIP, tuple(b for b in BACKENDS
                                                                                     if b != first))))  # fmt: skip
    print(f"backends replaced in one transaction in {(time.monotonic() - started) * 1000:.1f} ms")
    after = connections(pair, 30)
    assert first not in after and sum(after.values()) == 30
    kept.stdin.write("again\n")
    kept.stdin.flush()
    assert kept.stdout.readline().strip() == first  # the open connection stays where it was
    kept.stdin.close()
    kept.wait(5)
    # ICMP: the VIP answers while a backend does, and not once none is left.
    ping = ["ip", "netns", "exec", pair, "ping", "-c1", "-W1", VIP]
    assert subprocess.run(ping, capture_output=True).returncode == 0
    netns.run_in(path, nft.run, vip.set_backends(vip.VipService("s" * 25, VIP, ())))
    assert subprocess.run(ping, capture_output=True).returncode != 0
    netns.run_in(path, nft.run, vip.remove(service))
    assert "svc-" not in netns.run_in(path, nft.list_text, f"table {vip.T}")
