"""Containers: lifecycle, their own namespaces and files, inspect/ps/logs/exec, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from boxnet.testing.sandbox import DNS_ADDR, Sandbox, sh

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def test_run_detached_and_inspect(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.50.0.0/24", "appnet")
    cid = sandbox.cli("run", "-d", "--name", "web", "--network", "appnet", "-p", "8080:80", "--label",
                      "tier=front", "sleep", "300").stdout.strip()
    assert len(cid) == 64
    pid = sandbox.cli("inspect", "-f", "{{.State.Pid}}", "web").stdout.strip()
    assert int(pid) > 1 and os.path.exists(f"/proc/{pid}")
    data = sandbox.inspect("web")
    assert data["Name"] == "/web" and data["State"]["Status"] == "running" and data["State"]["Running"]
    net = data["NetworkSettings"]["Networks"]["appnet"]
    assert net["IPAddress"] == "10.50.0.2" and net["Gateway"] == "10.50.0.1" and net["IPPrefixLen"] == 24
    assert net["MacAddress"] == "02:42:0a:32:00:02"
    assert data["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert data["Config"]["Labels"] == {"tier": "front"}
    assert data["HostConfig"]["NetworkMode"] == "appnet"
    # the veth's container end is eth0 with that address and a default route via the gateway
    out = sandbox.in_container("web", "sh", "-c", "ip -br addr show eth0; ip route").stdout
    assert "10.50.0.2/24" in out and "default via 10.50.0.1" in out
    network = sandbox.client.get("/networks/appnet")
    assert network["Containers"][cid]["Name"] == "web"
    assert network["Containers"][cid]["IPv4Address"] == "10.50.0.2/24"


def test_container_has_its_own_namespaces_caps_and_files(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "box", "--hostname", "boxhost", "sleep", "300")
    script = ("cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; grep CapEff /proc/self/status; "
              "touch /etc/x 2>&1 | grep -c Read-only; touch /tmp/ok && echo tmp-writable; "
              "ls /sys/class/net | sort | tr '\\n' ' '; echo; cat /etc/hostname")
    out = sandbox.in_container("box", "sh", "-c", script).stdout.splitlines()
    assert out[0].strip() == "sleep 300"
    assert out[1] == "boxhost"
    assert out[2].split()[1] == DOCKER_DEFAULT_CAPS
    assert out[3] == "1"
    assert out[4] == "tmp-writable"
    assert out[5].split() == ["eth0", "lo"]
    assert out[6] == "boxhost"
    hosts = sandbox.in_container("box", "cat", "/etc/hosts").stdout
    assert f"{sandbox.ip_of('box')}\tboxhost" in hosts
    # default bridge: the host's nameservers, loopback ones left out, search and options kept
    resolv = sandbox.in_container("box", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines() == [f"nameserver {DNS_ADDR}", "search example.test", "options edns0"]
    # the host's own processes are not visible
    assert sandbox.in_container("box", "sh", "-c", "ls /proc | grep -c '^[0-9]'").stdout.strip() in ("2", "3", "4")


def test_cap_add_and_drop(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "admin", "--cap-add", "NET_ADMIN", "--cap-drop", "NET_RAW", "sleep", "300")
    caps = int(sandbox.in_container("admin", "sh", "-c", "grep CapEff /proc/self/status").stdout.split()[1], 16)
    assert caps & (1 << 12) and not caps & (1 << 13)
    # NET_ADMIN really works inside: change the container's own link
    assert sandbox.in_container("admin", "ip", "link", "set", "eth0", "mtu", "1400").returncode == 0
    plain = sandbox.cli("run", "-d", "--name", "plain", "sleep", "300")
    del plain
    assert sandbox.in_container("plain", "ip", "link", "set", "eth0", "mtu", "1400").returncode != 0


def test_exec_exit_code_stdin_and_logs(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "talker", "sh", "-c", "echo out; echo err >&2; sleep 300")
    assert sandbox.in_container("talker", "sh", "-c", "exit 42").returncode == 42
    assert sandbox.in_container("talker", "nonexistent-command").returncode == 127
    piped = sandbox.cli("exec", "-i", "talker", "tr", "a-z", "A-Z", input="hello\n")
    assert piped.stdout == "HELLO\n"
    deadline = time.monotonic() + 5
    while "err" not in (logs := sandbox.cli("logs", "talker")).stderr and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logs.stdout == "out\n" and logs.stderr == "err\n"


def test_foreground_run_prints_output_and_returns_the_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.cli("run", "--rm", "sh", "-c", "echo hi from $(hostname); exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout.startswith("hi from ")
    assert sandbox.client.get("/containers/json", all=1) == []


def test_stop_kill_restart_remove(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "svc", "sleep", "300")
    first_pid = sandbox.inspect("svc")["State"]["Pid"]
    first_ip = sandbox.ip_of("svc")
    sandbox.cli("stop", "-t", "1", "svc")
    state = sandbox.inspect("svc")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137 and state["Pid"] == 0
    assert not os.path.exists(f"/proc/{first_pid}")
    assert sandbox.inspect("svc")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    sandbox.cli("start", "svc")
    assert sandbox.inspect("svc")["State"]["Running"]
    assert sandbox.ip_of("svc") != first_ip or True  # Docker may hand out another address
    sandbox.cli("restart", "-t", "1", "svc")
    assert sandbox.inspect("svc")["State"]["Pid"] != first_pid
    sandbox.cli("kill", "svc")
    assert sandbox.cli("wait", "svc").stdout.strip() == "137"
    sandbox.cli("run", "-d", "--name", "busy", "sleep", "300")
    refused = sandbox.cli("rm", "busy", check=False)
    assert refused.returncode != 0 and "cannot remove a running container" in refused.stderr
    sandbox.cli("rm", "-f", "busy", "svc")
    assert sandbox.client.get("/containers/json", all=1) == []


def test_auto_remove_detached(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--rm", "--name", "brief", "true")
    deadline = time.monotonic() + 10
    while sandbox.client.get("/containers/json", all=1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.client.get("/containers/json", all=1) == []


def test_ps_filters(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "other")
    sandbox.cli("run", "-d", "--name", "a1", "--label", "app=a", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "b1", "--label", "app=b", "--network", "other", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "gone", "true")
    sandbox.cli("wait", "gone")
    names = lambda *args: set(sandbox.cli("ps", "--format", "{{.Names}}", *args).stdout.split())  # noqa: E731
    assert names() == {"['/a1']", "['/b1']"} or names() == {"[/a1]", "[/b1]"}
    assert names("--filter", "label=app=a") == {"[/a1]"}
    assert names("--filter", "network=other") == {"[/b1]"}
    assert names("--filter", "name=b1") == {"[/b1]"}
    assert names("-a") == {"[/a1]", "[/b1]", "[/gone]"}
    assert len(sandbox.cli("ps", "-q").stdout.split()) == 2


def test_ip_netns_exec_finds_the_container(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "nsreg", "sleep", "300")
    link = os.path.join(sandbox.registry, "nsreg")
    assert os.readlink(link) == sandbox.inspect("nsreg")["NetworkSettings"]["SandboxKey"]
    out = sandbox.in_host("nsenter", f"--net={link}", "ip", "-br", "addr", "show", "eth0").stdout
    assert sandbox.ip_of("nsreg") in out
    sandbox.cli("rm", "-f", "nsreg")
    assert not os.path.lexists(link)


@pytest.mark.parametrize("sandbox", [{"netns_registry": "/run/netns"}], indirect=True)
def test_ip_netns_exec_by_name_on_a_default_install(sandbox: Sandbox) -> None:
    name = f"{sandbox.tag}-web"  # unique on this machine: /run/netns is shared by everything on it
    sandbox.cli("run", "-d", "--name", name, "sleep", "300")
    listed = sh("ip", "netns", "list").stdout
    assert name in listed
    out = sh("ip", "netns", "exec", name, "ip", "-br", "addr", "show", "eth0").stdout
    assert sandbox.ip_of(name) in out
    sandbox.cli("rm", "-f", name)
    assert name not in sh("ip", "netns", "list").stdout


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static is installed by make setup")
def test_rootfs_directory(sandbox: Sandbox, tmp_path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "hostname", "ip", "sleep", "wget", "mknod", "head"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "marker").write_text("inside the rootfs\n")
    sandbox.cli("run", "-d", "--name", "rooted", "--rootfs", str(root), "/bin/sleep", "300")
    out = sandbox.in_container("rooted", "sh", "-c", "cat /marker; ls /; hostname").stdout
    assert out.startswith("inside the rootfs") and "etc" in out
    assert sandbox.in_container("rooted", "cat", "/etc/hosts").stdout.count(sandbox.ip_of("rooted")) == 1
    # every writable place is nodev: a disk's node made there (CAP_MKNOD is Docker's default) opens nothing
    for place in ("/dev/disk", "/disk", "/tmp/disk"):
        made = sandbox.in_container("rooted", "sh", "-c", f"mknod {place} b 8 0 && head -c1 {place} 2>&1; echo")
        assert "Permission denied" in made.stdout, (place, made.stdout, made.stderr)


def test_bad_container_input_changes_nothing(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "first", "-p", "9000:80", "sleep", "300")
    before = sandbox.kernel_state()
    containers_before = sandbox.client.get("/containers/json", all=1)
    cases = [
        (["--name", "first", "sleep", "1"], "already in use"),
        (["--network", "nosuch", "sleep", "1"], "not found"),
        (["-p", "9000:80", "sleep", "1"], "already allocated"),
        (["-p", "70000:80", "sleep", "1"], "between 1 and 65535"),
        (["-p", "80/icmp", "sleep", "1"], "invalid protocol"),
        (["-p", "abc", "sleep", "1"], "not a number"),
        (["--cap-add", "NOT_A_CAP", "sleep", "1"], "unknown capability"),
        (["--name", "bad name!", "sleep", "1"], "invalid container name"),
        (["--ip", "172.17.0.50", "sleep", "1"], "user defined networks only"),
        (["--pid", "container:nosuch", "sleep", "1"], "No such container"),
        (["--network", "container:nosuch", "sleep", "1"], "No such container"),
        (["--rootfs", "/nonexistent", "sleep", "1"], "not a directory"),
        (["no-such-command-xyz"], "exec"),
    ]
    for args, message in cases:
        result = sandbox.cli("run", "-d", *args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        leftovers = [c for c in sandbox.client.get("/containers/json", all=1) if c["Names"] != ["/first"]]
        for container in leftovers:  # a start that failed leaves a created container, as docker run does
            assert container["State"] == "created", container
            sandbox.client.delete(f"/containers/{container['Id']}", force=1)
    assert sandbox.kernel_state() == before
    assert [c["Id"] for c in sandbox.client.get("/containers/json", all=1)] == [c["Id"] for c in containers_before]
    assert json.loads(sandbox.cli("inspect", "first").stdout)[0]["State"]["Running"]


def test_interactive_and_tty_runs(sandbox: Sandbox) -> None:
    piped = sandbox.cli("run", "--rm", "-i", "host", "--", "tr", "a-z", "A-Z", input="hello stdin\n")
    assert piped.stdout == "HELLO STDIN\n"
    with_tty = sandbox.cli("run", "--rm", "-t", "sh", "-c", "tty; stty size", check=False)
    assert with_tty.returncode == 0
    assert with_tty.stdout.split()[0] == "/dev/pts/0"  # from the container's own devpts instance
    both = sandbox.cli("run", "--rm", "-i", "-t", "sh", "-c", "read line; echo got $line; exit 4",
                       input="abc\n", check=False)  # fmt: skip
    assert both.returncode == 4 and "got abc" in both.stdout
    assert sandbox.client.get("/containers/json", all=1) == []


def test_attach_to_a_running_container_with_stdin(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "-i", "--name", "reader", "sh", "-c", "while read l; do echo echo:$l; done")
    query = {"stream": 1, "stdin": 1, "stdout": 1, "stderr": 1}
    response, sock = sandbox.client.stream("POST", "/containers/reader/attach", query, upgrade=True)
    sock.sendall(b"one\ntwo\n")
    received = b""
    while received.count(b"echo:") < 2:
        chunk = response.fp.read1(4096)
        assert chunk, "the attach stream ended early"
        received += chunk
    assert b"echo:one" in received and b"echo:two" in received
    sock.close()


HANDLES_INT_AND_TERM = ("python3", "-c", "import signal, sys, time\n"
                        "signal.signal(signal.SIGINT, lambda *a: sys.exit(11))\n"
                        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(12))\n"
                        "print('ready', flush=True); time.sleep(300)")  # fmt: skip


def test_run_without_a_tty_passes_ctrl_c_and_sigterm_to_the_container(sandbox: Sandbox) -> None:
    import signal as signals
    import subprocess
    import sys

    for name, sig, code in (("int", signals.SIGINT, 11), ("term", signals.SIGTERM, 12)):
        cli = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "run", "--name", name, *HANDLES_INT_AND_TERM],
                               stdout=subprocess.PIPE, text=True, env=sandbox.env())  # fmt: skip
        assert cli.stdout is not None and cli.stdout.readline().strip() == "ready"
        cli.send_signal(sig)
        assert cli.wait(timeout=30) == code  # the container decided, and the CLI returned its exit code
        assert sandbox.inspect(name)["State"]["ExitCode"] == code
