"""Capture and sniff by container name, checked with tshark and against known payloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from test_connectivity import wait_listening

from boxnet.testing.sandbox import Sandbox


def start_capture(sandbox: Sandbox, *args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", *args], env=sandbox.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    written = args[args.index("-w") + 1] if "-w" in args and args[args.index("-w") + 1] != "-" else ""
    deadline = time.monotonic() + 10
    if written:  # the header is in the file once the capture tool is capturing
        while not (os.path.exists(written) and os.path.getsize(written) > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        time.sleep(0.7)  # the capture tool is listening once the daemon sends the header; time to get there
    return process


def tshark(path: str, *args: str) -> list[str]:
    result = subprocess.run(["tshark", "-r", path, *args], capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line]


def two_nodes(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "esnet")
    sandbox.cli("run", "-d", "--name", "es01", "--network", "esnet", "python3", "-m", "http.server", "9300")
    sandbox.cli("run", "-d", "--name", "es02", "--network", "esnet", "python3", "-m", "http.server", "9300")
    wait_listening(sandbox, "es01", 9300)
    wait_listening(sandbox, "es02", 9300)


def test_capture_two_containers_into_one_pcapng_with_the_filter_honoured(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    path = os.path.join(sandbox.root, "cluster.pcapng")
    capture = start_capture(sandbox, "capture", "es01", "es02", "-f", "host es02 and port 9300", "-w", path)
    sandbox.in_container("es02", "curl", "-s", "-o", "/dev/null", "http://es01:9300/")
    sandbox.in_container("es01", "ping", "-c", "2", "es02")  # not port 9300: must not be in the file
    time.sleep(0.5)
    capture.send_signal(signal.SIGINT)  # as Ctrl-C: the file still ends whole, with the counters
    _, stderr = capture.communicate(timeout=20)
    assert capture.returncode == 0, stderr
    names = tshark(path, "-T", "fields", "-e", "frame.interface_name")
    assert set(names) == {"es01", "es02"} and len(names) >= 10  # the handshake and the HTTP, seen from both ends
    assert not tshark(path, "-Y", "icmp")
    ports = {int(p) for line in tshark(path, "-T", "fields", "-e", "tcp.port") for p in line.split(",")}
    assert 9300 in ports
    times = [float(t) for t in tshark(path, "-T", "fields", "-e", "frame.time_epoch")]
    assert times == sorted(times)  # one timeline
    assert b"es01: " in stderr and b"dropped by kernel" in stderr
    info = subprocess.run(["capinfos", path], capture_output=True, text=True, check=True).stdout
    assert "Number of stat entries = 1" in info


def test_capture_count_text_output_and_stdout_stream(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    capture = start_capture(sandbox, "capture", "es01", "-c", "3", "-f", "tcp port 9300")
    sandbox.in_container("es02", "curl", "-s", "-o", "/dev/null", "http://es01:9300/")
    stdout, stderr = capture.communicate(timeout=20)
    lines = stdout.decode().splitlines()
    assert len(lines) == 3 and "[SYN]" in lines[0] and "es01" in lines[0], lines
    assert b"3 packets captured" in stderr
    # -w - streams pcapng: tshark reads it from a pipe as Wireshark would (`| wireshark -k -i -`).
    stream = start_capture(sandbox, "capture", "network:esnet", "-w", "-", "-c", "4", "-f", "icmp")
    sandbox.in_container("es01", "ping", "-c", "1", "es02")
    data, _ = stream.communicate(timeout=20)
    path = os.path.join(sandbox.root, "stream.pcapng")
    with open(path, "wb") as handle:
        handle.write(data)
    names = tshark(path, "-T", "fields", "-e", "frame.interface_name")
    assert len(names) == 4 and any(n.startswith("br-") for n in names) and "es01" in names


def test_capture_errors_are_clear_and_leave_nothing(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    bad = sandbox.cli("capture", "es01", "-f", "port nine", "-c", "1", check=False)
    assert bad.returncode != 0 and "capture on es01" in bad.stderr
    missing = sandbox.cli("capture", "nosuch", "-c", "1", check=False)
    assert missing.returncode != 0 and "nosuch" in missing.stderr
    nolabel = sandbox.cli("capture", "label:team=none", "-c", "1", check=False)
    assert nolabel.returncode != 0 and "team=none" in nolabel.stderr


def test_capture_duration_and_label_targets(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "esnet")
    sandbox.cli("run", "-d", "--name", "a", "--network", "esnet", "--label", "team=x", "sleep", "600")
    sandbox.cli("run", "-d", "--name", "b", "--network", "esnet", "--label", "team=x", "sleep", "600")
    path = os.path.join(sandbox.root, "labels.pcapng")
    started = time.monotonic()
    capture = start_capture(sandbox, "capture", "label:team=x", "--duration", "2", "-w", path, "-f", "icmp")
    sandbox.in_container("a", "ping", "-c", "1", "b")
    capture.communicate(timeout=20)
    assert 1.5 < time.monotonic() - started < 8
    assert set(tshark(path, "-T", "fields", "-e", "frame.interface_name")) == {"a", "b"}


def test_sniff_prints_matching_payloads_with_their_flow(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    sniff = start_capture(sandbox, "sniff", "es01", "--match", "secret-[0-9]+", "-c", "1", "-f", "tcp port 9300")
    sandbox.in_container("es02", "curl", "-s", "-o", "/dev/null", "http://es01:9300/", "-H", "X-Token: plain")
    sandbox.in_container("es02", "curl", "-s", "-o", "/dev/null", "http://es01:9300/", "-H", "X-Token: secret-42")
    stdout, _ = sniff.communicate(timeout=20)
    text = stdout.decode()
    es01, es02 = sandbox.ip_of("es01"), sandbox.ip_of("es02")
    assert f"TCP {es02}:" in text and f"-> {es01}:9300 [es01]" in text
    assert "X-Token: secret-42" in text and "plain" not in text


def test_debug_runs_host_tools_in_the_containers_network(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    listening = sandbox.cli("debug", "es01", "ss", "-ltn").stdout
    assert "0.0.0.0:9300" in listening
    address = sandbox.cli("debug", "es01", "ip", "-br", "-4", "addr", "show", "eth0").stdout
    assert sandbox.ip_of("es01") in address
    # The host's files, not the container's: tools the container lacks are there.
    with open("/etc/hostname") as handle:
        assert sandbox.cli("debug", "es01", "cat", "/etc/hostname").stdout == handle.read()
    processes = sandbox.cli("debug", "--pid", "es01", "ps", "-e", "-o", "pid=,comm=").stdout.split()
    assert processes[:2] == ["1", "python3"] and len(processes) == 4  # python3 and ps itself, nothing else
    assert sandbox.cli("debug", "es01", "sh", "-c", "exit 7", check=False).returncode == 7
    shell = sandbox.cli("debug", "es01", input="ss -ltn | grep -c 9300\n")
    assert shell.stdout.strip() == "1"


def test_topology_matches_the_kernel_and_counts_rule_hits(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "front")
    sandbox.cli("network", "create", "back")
    sandbox.cli("run", "-d", "--name", "web", "--network", "front", "-p", "8080:80", "sleep", "600")
    sandbox.cli("run", "-d", "--name", "db", "--network", "back", "sleep", "600")
    assert sandbox.in_container("web", "ping", "-c", "1", "-W", "1", sandbox.ip_of("db")).returncode != 0
    data = json.loads(sandbox.cli("topology", "--format", "json").stdout)
    web = next(c for c in data["Containers"] if c["Name"] == "web")
    eth0 = next(i for i in web["Interfaces"] if i["Name"] == "eth0")
    # The kernel's own answer: inside, eth0@ifN; on the host, the veth named in the topology has index N.
    inside = sandbox.cli("debug", "web", "ip", "-o", "link", "show", "eth0").stdout
    assert f"eth0@if{eth0['HostVethIfindex']}:" in inside
    host_side = sandbox.in_host("ip", "-o", "link", "show", eth0["HostVeth"], check=True).stdout
    assert host_side.startswith(f"{eth0['HostVethIfindex']}: {eth0['HostVeth']}@if{eth0['Ifindex']}:")
    assert eth0["Bridge"].startswith("br-") and eth0["HostVeth"] == eth0["LedgerHostVeth"]
    assert eth0["Addresses"] == [sandbox.ip_of("web") + "/16"] and web["Ports"][0]["HostPort"] == 8080
    # The ping to the other network was dropped on its way into db's network, and counted there.
    db = next(c for c in data["Containers"] if c["Name"] == "db")
    isolation = [r for r in db["Rules"] if "isolation" in r["Rule"]]
    assert isolation and isolation[0]["Packets"] >= 1
    assert any(r["Chain"] == "dns" and "127.0.0.11" in r["Rule"] for r in web["Rules"])
    text = sandbox.cli("topology").stdout
    assert f"{eth0['HostVeth']} (ifindex {eth0['HostVethIfindex']}) on {eth0['Bridge']}" in text
    assert "0.0.0.0:8080->80/tcp" in text
    # The kernel map the connect4 program reads, as the topology shows it.
    assert data["Host"]["ConnectRedirect"]["Ports"] == [
        {"HostIp": "0.0.0.0", "HostPort": 8080, "To": f"{sandbox.ip_of('web')}:80"}]
    assert "redirected at connect(), no NAT (1 ports)" in text
    dot = sandbox.cli("topology", "--format", "dot").stdout
    assert dot.startswith("digraph boxnet") and '"container:web"' in dot
    assert "<svg" in sandbox.cli("topology", "--format", "svg").stdout


def trace(sandbox: Sandbox, source: str, target: str) -> tuple[int, str]:
    result = sandbox.cli("trace", source, target, check=False)
    return result.returncode, result.stdout + result.stderr


def test_trace_agrees_with_real_reachability(sandbox: Sandbox) -> None:
    from test_connectivity import probe_from_container, run_server

    sandbox.cli("network", "create", "front")
    sandbox.cli("network", "create", "back")
    sandbox.cli("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "quiet")
    sandbox.cli("network", "create", "--internal", "vault")
    run_server(sandbox, "web", "--network", "front", "-p", "8080:80")
    run_server(sandbox, "db", "--network", "back")
    run_server(sandbox, "q1", "--network", "quiet")
    sandbox.cli("run", "-d", "--name", "cli", "--network", "front", "sleep", "600")
    sandbox.cli("run", "-d", "--name", "q2", "--network", "quiet", "sleep", "600")
    sandbox.cli("run", "-d", "--name", "locked", "--network", "vault", "sleep", "600")
    host = sandbox.inspect("cli")["NetworkSettings"]["Networks"]["front"]["Gateway"]
    matrix = [  # (source, target, where the probe goes, delivered?, words of the reason)
        ("cli", "web:80", ("cli", "web", 80), True, "delivered"),
        ("cli", "db:80", ("cli", "db", 80), False, "isolated"),
        ("q2", "q1:80", ("q2", "q1", 80), False, "enable_icc=false"),
        ("locked", "203.0.113.80:80", ("locked", "203.0.113.80", 80), False, "no way out"),
        ("cli", "203.0.113.80:80", ("cli", "203.0.113.80", 80), True, "delivered"),
        ("cli", "host:8080", ("cli", "198.51.100.2", 8080), True, "delivered"),
        ("db", f"{host}:8080", ("db", host, 8080), True, "delivered"),  # published: reachable from any network
        ("host", "db:80", None, True, "delivered"),
    ]
    for source, target, probe, delivered, reason in matrix:
        code, text = trace(sandbox, source, target)
        assert (code == 0) == delivered, f"trace {source} {target}:\n{text}"
        assert reason in text.splitlines()[-1], text
        if probe is not None:
            name, address, port = probe
            address = sandbox.ip_of(address) if address in ("web", "db", "q1") else address
            assert (probe_from_container(sandbox, name, address, port) is not None) == delivered, (source, target)
    code, text = trace(sandbox, "cli", "db:80")
    assert "isolation" in text and "route on the host: " in text, text
    assert "veth: eth0 <-> veth" in text and "(container cli, network" in text, text
    code, text = trace(sandbox, "host", "127.0.0.1:8080")  # the host's own connect() skips NAT
    assert code == 0 and "redirected by boxnet's connect4 program: 127.0.0.1:8080 -> " in text, text
    code, text = trace(sandbox, "203.0.113.9", "web:80")
    assert code != 0 and "namespace it owns" in text


def test_one_target_to_a_file_ends_whole_on_ctrl_c(sandbox: Sandbox) -> None:
    two_nodes(sandbox)
    path = os.path.join(sandbox.root, "one.pcapng")
    capture = start_capture(sandbox, "capture", "es01", "-w", path, "-f", "tcp port 9300")
    for _ in range(3):
        sandbox.in_container("es02", "curl", "-s", "-o", "/dev/null", "http://es01:9300/")
    time.sleep(0.5)  # the last packets reach the capture ring before Ctrl-C
    capture.send_signal(signal.SIGINT)
    _, stderr = capture.communicate(timeout=20)
    assert capture.returncode == 0, stderr
    names = tshark(path, "-T", "fields", "-e", "frame.interface_name")
    assert set(names) == {"es01"} and len(names) >= 18  # three connections, six or more packets each
    assert f"{len(names)} packets captured".encode() in stderr and b"dropped by kernel" in stderr
    info = subprocess.run(["capinfos", path], capture_output=True, text=True, check=True).stdout
    assert "Number of stat entries = 1" in info and "Description = eth0 in the network namespace of es01" in info


def _capture_tools(pid: int) -> list[int]:
    """The capture tools (tcpdump, dumpcap) among a process's children."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            for child in handle.read().split():
                if os.path.basename(os.readlink(f"/proc/{child}/exe")) in ("tcpdump", "dumpcap"):
                    found.append(int(child))
    return found


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_capture_tools_end_with_a_daemon_that_is_killed(sandbox: Sandbox) -> None:
    """A daemon killed mid-capture leaves no tcpdump (nor dumpcap) behind: they die with it."""
    two_nodes(sandbox)
    merged = start_capture(sandbox, "capture", "es01", "es02", "-w", os.path.join(sandbox.root, "two.pcapng"))
    direct = start_capture(sandbox, "capture", "es01", "-w", os.path.join(sandbox.root, "one.pcapng"))
    tools = _capture_tools(sandbox.daemon.pid)
    assert len(tools) == 3, tools  # two tcpdumps, one dumpcap
    sandbox.kill_daemon()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in tools) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in tools), [p for p in tools if not _gone(p)]
    for client in (merged, direct):
        client.wait(timeout=20)
    sandbox.start_daemon()


def test_a_trace_cut_short_by_a_killed_daemon_leaves_no_table(sandbox: Sandbox) -> None:
    """The trace's table is recorded before it is made; the daemon that starts again removes it."""
    sandbox.cli("network", "create", "front")
    sandbox.cli("network", "create", "back")
    sandbox.cli("run", "-d", "--name", "cli", "--network", "front", "sleep", "600")
    sandbox.cli("run", "-d", "--name", "db", "--network", "back", "sleep", "600")

    def trace_tables() -> list[str]:
        listed = sandbox.in_host("nft", "list", "tables").stdout.split()
        return [word for word in listed if word.startswith("boxnet_trace_")]

    assert not trace_tables()
    tracing = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "trace", "cli", "db:80"],
                               env=sandbox.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 5  # the probe is dropped (isolation): the trace waits for it 1.5 s
    while not trace_tables() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert trace_tables(), "the trace made no table: the test would prove nothing"
    sandbox.kill_daemon()
    tracing.wait(timeout=20)
    assert trace_tables()  # left by the killed daemon
    sandbox.start_daemon()
    assert not trace_tables()
    assert "trace table boxnet_trace_" in sandbox.daemon_log()
