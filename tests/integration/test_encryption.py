"""Encrypted overlays on a lab: seed 002's demonstration with a sniffer on the underlay (the insecure network's
HTTP in clear, the secure one's nowhere), a plaintext VXLAN frame for the secure VNI dropped even from a node,
the typo Docker ignores refused, and wireguard-go killed mid-transfer: nothing in clear, and traffic back."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time

from test_swarm import lab_factory, wait_for  # noqa: F401 - the fixture

from boxnet.lab import LabHost
from boxnet.testing import frames
from boxnet.testing.sandbox import pids_of

SERVE = ["python3", "-m", "http.server", "80"]
SEND_UDP = "import socket,sys; s=socket.socket(2,2); s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 4789))"


def address(host: LabHost, container: str, network: str) -> str:
    client = host.client
    try:
        return client.get(f"/containers/{container}/json")["NetworkSettings"]["Networks"][network]["IPAddress"]
    finally:
        client.close()


def sniff(underlay: str, seconds: float) -> subprocess.Popen:
    """tcpdump on the underlay bridge, every packet's payload in ASCII, for `seconds`."""
    return subprocess.Popen(["ip", "netns", "exec", underlay, "timeout", str(seconds), "tcpdump", "-i", "ul0", "-nn",
                             "-A", "-l", "udp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            errors="replace")  # fmt: skip


def wireguard_go_pid(host: LabHost) -> int:
    """The wireguard-go process in this lab host's namespace (found by namespace and executable, ended by PID)."""
    found = pids_of("wireguard-go", {os.stat(f"/run/netns/{host.name}").st_ino})
    if found:
        return found[0]
    raise AssertionError(f"no wireguard-go in {host.name}")


def test_seed_002_secure_network_hides_what_the_insecure_one_shows(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("en", hosts=2)
    h1, h2 = lab.hosts
    typo = h1.cli("network", "create", "-d", "overlay", "--opt", "encrypt", "oops", check=False)
    assert typo.returncode != 0 and "unknown option 'encrypt'" in typo.stderr  # Docker ignores it silently
    half = h1.cli("network", "create", "-d", "overlay", "--opt", "encrypted=false", "oops", check=False)
    assert half.returncode != 0 and "encrypted" in half.stderr
    h1.cli("network", "create", "-d", "overlay", "--attachable", "insecure")
    # The seed's own command, through the docker CLI where there is one.
    seed = ["network", "create", "secure", "--opt", "encrypted", "--driver", "overlay", "--attachable"]
    if shutil.which("docker"):
        made = subprocess.run(["docker", *seed], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "DOCKER_HOST": f"unix://{h1.socket}"})  # fmt: skip
        assert made.returncode == 0, made.stderr
    else:
        h1.cli(*seed)
    h1.cli("run", "-d", "--name", "web", "--network", "insecure", *SERVE)
    h1.cli("network", "connect", "secure", "web")
    h2.cli("run", "-d", "--name", "c", "--network", "insecure", "sleep", "600")
    h2.cli("network", "connect", "secure", "c")
    plain, sealed = address(h1, "web", "insecure"), address(h1, "web", "secure")
    wait_for(lambda: h2.cli("exec", "c", "curl", "-s", "-m", "2", f"http://{sealed}/", check=False).returncode == 0,
             15)  # fmt: skip
    sniffer = sniff(lab.underlay, 4)
    # The seed's `ngrep -tpd eth0 HTTP` on the node that runs web, as one boxnet command.
    ngrep = subprocess.Popen(["ip", "netns", "exec", h1.name, sys.executable, "-m", "boxnet.cli.main", "sniff",
                              "host:eth0", "--match", "seen=", "--hash", "--duration", "4"], env={**os.environ,
                              **h1.env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    time.sleep(1)
    for network, target in (("PLAINTEXT", plain), ("SECRET", sealed)):
        h2.cli("exec", "c", "curl", "-s", "-m", "2", "-o", "/dev/null", f"http://{target}/?seen={network}-7c1e")
    seen, _ = sniffer.communicate(timeout=10)
    assert "PLAINTEXT-7c1e" in seen, "the sniffer saw nothing: the test would prove nothing"
    assert "SECRET-7c1e" not in seen
    assert ".51820" in seen  # the secure network's packets went as WireGuard
    shown, _ = ngrep.communicate(timeout=15)
    assert "PLAINTEXT-7c1e" in shown and "SECRET-7c1e" not in shown and "#" in shown, shown

    # A well-formed plaintext VXLAN frame for the secure VNI is dropped even from a node of the swarm (written
    # on its wire below its own firewall, which would not let it out: see the end); the same frame for the
    # insecure VNI arrives (the control).
    vnis = {n: int(h1.client.get(f"/networks/{n}")["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
            for n in ("insecure", "secure")}  # fmt: skip
    web = h1.client.get("/containers/web/json")
    macs = {n: web["NetworkSettings"]["Networks"][n]["MacAddress"] for n in vnis}
    listener = subprocess.Popen(["nsenter", f"--net=/proc/{web['State']['Pid']}/ns/net", sys.executable, "-m",
                                 "boxnet.testing.frames", "listen", b"SEALED-PROBE".hex(), "3", "--interface", ""],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert listener.stdout and listener.stdout.readline().strip() == "listening"
    wire = {h.name: h.run("cat", "/sys/class/net/eth0/address", check=True).stdout.strip() for h in (h1, h2)}
    packets = {}
    for network, target in (("secure", sealed), ("insecure", plain)):
        inner = frames.ethernet(macs[network], "02:42:0a:00:09:c8", 0x0800,
                                frames.udp4("10.0.9.200", target, 40000, 9, b"SEALED-PROBE"))  # fmt: skip
        packets[network] = struct.pack("!B3xI", 0x08, vnis[network] << 8) + inner
    for network in ("secure", "secure", "insecure"):
        outer = frames.ethernet(wire[h1.name], wire[h2.name], 0x0800,
                                frames.udp4(h2.address, h1.address, 40001, 4789, packets[network]))  # fmt: skip
        h2.run(sys.executable, "-m", "boxnet.testing.frames", "send", outer.hex(), check=True)
        time.sleep(0.2)
    assert int(listener.stdout.readline()) == 1  # the insecure one only
    listener.wait(5)
    counters = h1.run("nft", "list", "chain", "inet", "boxnet", "vxlan_sealed_in", check=True).stdout
    assert "packets 2" in counters, counters
    # Nor can a node send one the ordinary way: its own firewall refuses it (the send fails, EPERM).
    sent = h2.run("python3", "-c", SEND_UDP, packets["secure"].hex(), h1.address)
    assert sent.returncode != 0 and "Operation not permitted" in sent.stderr


def test_wireguard_go_killed_mid_transfer_leaks_nothing_and_comes_back(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("ek", hosts=2)
    h1, h2 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "--opt", "encrypted", "secure")
    h1.cli("run", "-d", "--name", "sink", "--network", "secure", "sh", "-c", "while true; do nc -l -p 9000 "
           ">/dev/null; done")  # fmt: skip
    h2.cli("run", "-d", "--name", "src", "--network", "secure", "sleep", "600")
    target = address(h1, "sink", "secure")
    wait_for(lambda: h2.cli("exec", "src", "sh", "-c", f"echo hi | nc -w 2 {target} 9000", check=False).returncode
             == 0, 15)  # fmt: skip
    sniffer = sniff(lab.underlay, 8)
    time.sleep(0.5)
    # A stream of marked lines, and wireguard-go killed on the receiving node in the middle of it.
    stream = subprocess.Popen(["ip", "netns", "exec", h2.name, ".venv/bin/python", "-m", "boxnet.cli.main", "exec",
                               "src", "sh", "-c", f"for i in $(seq 1 300); do echo MARK-LEAK-$i; sleep 0.01; done | "
                               f"nc -w 5 {target} 9000"], env={**os.environ, **h2.env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    os.kill(wireguard_go_pid(h1), signal.SIGKILL)
    stream.wait(30)
    seen, _ = sniffer.communicate(timeout=15)
    assert ".51820" in seen, "the sniffer saw no WireGuard: the test would prove nothing"
    assert "MARK-LEAK" not in seen
    # boxnetd starts wireguard-go again and rebuilds what went with it; the network carries traffic again.
    wait_for(lambda: h2.cli("exec", "src", "sh", "-c", f"echo back | nc -w 2 {target} 9000", check=False).returncode
             == 0, 20)  # fmt: skip
    # The daemon itself restarted (wireguard-go goes with it): sealed again from its ledger, and back.
    vni = h1.client.get("/networks/secure")["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
    h1.stop_daemon()
    h1.start_daemon()
    assert f"@th,96,24 {int(vni):#x}" in h1.run("nft", "list", "chain", "inet", "boxnet", "vxlan_sealed_in").stdout
    wait_for(lambda: h2.cli("exec", "src", "sh", "-c", f"echo again | nc -w 2 {target} 9000", check=False).returncode
             == 0, 20)  # fmt: skip


def public_key(host: LabHost) -> str:
    interface = host.run("wg", "show", "interfaces", check=True).stdout.split()[0]
    return host.run("wg", "show", interface, "public-key", check=True).stdout.strip()


def test_keys_rotate_under_load_and_no_connection_drops(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("er", hosts=2)
    h1, h2 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "--attachable", "--opt", "encrypted", "secure")
    h1.cli("run", "-d", "--name", "sink", "--network", "secure", "sh", "-c", "nc -l -p 9000 > /tmp/got; sleep 600")
    h2.cli("run", "-d", "--name", "src", "--network", "secure", "sleep", "600")
    target = address(h1, "sink", "secure")
    wait_for(lambda: h2.cli("exec", "src", "ping", "-c1", "-W1", target, check=False).returncode == 0, 15)
    before = {h.name: public_key(h) for h in lab.hosts}
    stream = subprocess.Popen(["ip", "netns", "exec", h2.name, ".venv/bin/python", "-m", "boxnet.cli.main", "exec",
                               "src", "sh", "-c", f"for i in $(seq 1 400); do echo line-$i; sleep 0.01; done | "
                               f"nc -w 10 {target} 9000"], env={**os.environ, **h2.env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    assert "key epoch 1" in h1.cli("swarm", "rotate-keys").stdout
    assert stream.wait(40) == 0, "the connection broke while the keys rotated"
    received = ""
    for _ in range(100):
        received = h1.cli("exec", "sink", "sh", "-c", "wc -l < /tmp/got; tail -n 2 /tmp/got", check=False).stdout
        if received.split()[:1] == ["400"]:
            break
        time.sleep(0.1)
    assert received.split()[:1] == ["400"], f"the sink got: {received}"
    after = {h.name: public_key(h) for h in lab.hosts}
    assert all(after[name] != before[name] for name in before), (before, after)
    # Each node's peer entry for the other carries the other's new key, and traffic flows on it.
    assert after["er-h1"] in h2.run("wg", "show", "all", "peers", check=True).stdout
    assert h2.cli("exec", "src", "ping", "-c1", "-W2", target, check=False).returncode == 0


def test_an_encrypted_ingress_carries_the_routing_mesh_only_through_wireguard(lab_factory) -> None:  # noqa: F811
    """Docker's way to encrypt the mesh: the ingress network made again with --opt encrypted. A request to a
    node that runs no task reaches a task on another node, and nothing of it crosses the underlay in clear."""
    lab = lab_factory("ei", hosts=3)
    h1 = lab.hosts[0]
    h1.cli("network", "rm", "ingress")
    h1.cli("network", "create", "-d", "overlay", "--ingress", "--opt", "encrypted", "ingress")
    h1.cli("service", "create", "--name", "web", "--replicas", "2", "--constraint", f"node.hostname!={h1.name}",
           "-p", "8080:80", "host", *SERVE)  # fmt: skip
    url = f"http://{h1.address}:8080/?mesh=MESHED-5d2a"
    wait_for(lambda: h1.run("curl", "-s", "-m", "2", "-o", "/dev/null", url).returncode == 0, 30)
    sniffer = sniff(lab.underlay, 3)
    time.sleep(1)
    answered = [h1.run("curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", url).stdout for _ in range(4)]
    seen, _ = sniffer.communicate(timeout=10)
    assert answered == ["200"] * 4
    assert "MESHED-5d2a" not in seen and ".4789" not in seen, seen
    assert ".51820" in seen  # it went, as WireGuard
    checked = h1.cli("overlay", "check", "ingress", check=False)
    assert checked.returncode == 0 and "encrypted (WireGuard)" in checked.stdout, checked.stdout
