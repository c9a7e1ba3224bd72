"""What a client asks of a container's process is done: its user, root filesystem, privileges, kernel settings,
limits, devices, hosts, MAC, working directory, restart policy and stop signal."""

from __future__ import annotations

import os
import time

from boxnet.testing.sandbox import Sandbox


def run(sandbox: Sandbox, *args: str, check: bool = True) -> str:
    return sandbox.cli("run", "--rm", *args, check=check).stdout.strip()


def test_user_groups_and_privileges(sandbox: Sandbox) -> None:
    assert run(sandbox, "-u", "nobody", "id") == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    assert run(sandbox, "-u", "1234:5678", "--group-add", "100", "id") == "uid=1234 gid=5678 groups=5678,100(users)"
    # a non-root user keeps no effective capability, as in Docker
    assert run(sandbox, "-u", "nobody", "grep", "CapEff", "/proc/self/status").endswith("0000000000000000")
    failed = sandbox.cli("run", "--rm", "-u", "nosuchuser", "id", check=False)
    assert failed.returncode != 0 and "unable to find user nosuchuser" in failed.stderr
    assert run(sandbox, "grep", "NoNewPrivs", "/proc/self/status").endswith("0")
    assert run(sandbox, "--security-opt", "no-new-privileges", "grep", "NoNewPrivs", "/proc/self/status").endswith("1")
    # exec runs as the container's user unless told otherwise
    sandbox.cli("run", "-d", "--name", "who", "-u", "nobody", "sleep", "300")
    assert sandbox.in_container("who", "id", "-un").stdout.strip() == "nobody"
    assert sandbox.cli("exec", "-u", "root", "who", "id", "-un").stdout.strip() == "root"


def test_read_only_root_and_the_working_directory(sandbox: Sandbox) -> None:
    out = run(sandbox, "--read-only", "sh", "-c", "touch /tmp/x 2>&1; touch /x 2>&1; echo done")
    assert out.count("Read-only file system") == 2 and out.endswith("done")
    assert run(sandbox, "sh", "-c", "touch /tmp/x && echo writable") == "writable"  # without it: private /tmp
    assert run(sandbox, "-w", "/tmp/made/here", "pwd") == "/tmp/made/here"  # a missing one is made
    failed = sandbox.cli("run", "--rm", "--read-only", "-w", "/not/there", "pwd", check=False)
    assert failed.returncode != 0 and "working directory /not/there" in failed.stderr


def test_namespaced_sysctls_only(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "tuned")
    values = run(sandbox, "--network", "tuned", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl",
                 "kernel.shmmax=1048576", "cat", "/proc/sys/net/ipv4/ip_forward",
                 "/proc/sys/kernel/shmmax")  # fmt: skip
    assert values == "1\n1048576"
    # set at start only: /proc/sys is read-only inside, as in Docker
    assert "Read-only" in run(sandbox, "--network", "tuned", "sh", "-c",
                              "(echo 1 > /proc/sys/net/ipv4/ip_forward) 2>&1", check=False)  # fmt: skip
    for flags in (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], ["--sysctl", "kernel.panic=1"],
                  ["--sysctl", "vm.swappiness=1"]):  # fmt: skip
        result = sandbox.cli("run", "--rm", *flags, "true", check=False)
        assert result.returncode == 2 and "not allowed" in result.stderr, (flags, result.stderr)


def cgroup_file(sandbox: Sandbox, name: str, controller: str, file: str) -> str:
    from boxnet.runtime.cgroups import find_hierarchies

    container_id = sandbox.inspect(name)["Id"]
    hierarchy = next(h for h in find_hierarchies() if h.controller == controller)
    directory = os.path.join(hierarchy.mountpoint, hierarchy.own, "boxnet", container_id)
    with open(os.path.join(directory, file)) as handle:
        return handle.read().strip()


def test_limits_are_the_kernels(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "limited", "-m", "64m", "--cpus", "0.5", "--cpu-shares", "512",
                "--pids-limit", "20", "--ulimit", "nofile=100:200", "--shm-size", "16m", "sleep", "300")  # fmt: skip
    assert cgroup_file(sandbox, "limited", "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert cgroup_file(sandbox, "limited", "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(sandbox, "limited", "cpu", "cpu.shares") == "512"
    assert cgroup_file(sandbox, "limited", "pids", "pids.max") == "20"
    assert sandbox.in_container("limited", "sh", "-c", "ulimit -n; ulimit -Hn").stdout.split() == ["100", "200"]
    assert "16384" in sandbox.in_container("limited", "df", "-k", "/dev/shm").stdout
    # the pids limit holds: forks past it fail
    forks = sandbox.in_container("limited", "sh", "-c", "for i in $(seq 40); do sleep 5 & done 2>&1; wait")
    assert "fork" in (forks.stdout + forks.stderr).lower() or "resource" in (forks.stdout + forks.stderr).lower()
    inspected = sandbox.inspect("limited")["HostConfig"]
    assert (inspected["Memory"], inspected["NanoCpus"], inspected["PidsLimit"]) == (64 << 20, 500_000_000, 20)


def test_devices_are_the_few_allowed_and_those_given(sandbox: Sandbox) -> None:
    listing = run(sandbox, "ls", "/dev").split()
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= set(listing)
    assert not {"sda", "vda", "mem", "kmsg"} & set(listing)
    # a node made with CAP_MKNOD opens nothing
    out = run(sandbox, "sh", "-c", "mknod /tmp/disk b 8 0 && head -c1 /tmp/disk 2>&1; echo", check=False)
    assert "Permission denied" in out or "Operation not permitted" in out
    assert run(sandbox, "--device", "/dev/fuse", "ls", "/dev/fuse") == "/dev/fuse"
    # read-only device access, enforced by the devices controller: opening it for writing is refused
    script = "(echo x > /dev/fuse) 2>&1; echo"
    assert "Operation not permitted" in run(sandbox, "--device", "/dev/fuse:/dev/fuse:r", "sh", "-c", script)
    assert "Operation not permitted" not in run(sandbox, "--device", "/dev/fuse:/dev/fuse:rw", "sh", "-c", script)


def test_hosts_mac_and_addresses(sandbox: Sandbox) -> None:
    hosts = run(sandbox, "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "cat", "/etc/hosts")
    gateway = sandbox.client.get("/networks/bridge")["IPAM"]["Config"][0]["Gateway"]
    assert "10.1.2.3\tdb" in hosts and f"{gateway}\tgw" in hosts
    sandbox.cli("run", "-d", "--name", "mac", "--mac-address", "02:42:ac:11:00:99", "sleep", "300")
    assert sandbox.in_container("mac", "cat", "/sys/class/net/eth0/address").stdout.strip() == "02:42:ac:11:00:99"
    clash = sandbox.cli("run", "-d", "--mac-address", "02:42:ac:11:00:99", "sleep", "300", check=False)
    assert clash.returncode != 0 and "already in use" in clash.stderr


def wait_for(condition, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_restart_policies(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "sh", "-c", "exit 3")
    wait_for(lambda: sandbox.inspect("flaky")["RestartCount"] == 2 and not sandbox.inspect("flaky")["State"][
        "Restarting"] and sandbox.inspect("flaky")["State"]["Status"] == "exited")
    time.sleep(1)
    assert sandbox.inspect("flaky")["RestartCount"] == 2 and sandbox.inspect("flaky")["State"]["ExitCode"] == 3
    sandbox.cli("run", "-d", "--name", "fine", "--restart", "on-failure", "true")  # success: not restarted
    time.sleep(1)
    assert sandbox.inspect("fine")["RestartCount"] == 0
    sandbox.cli("run", "-d", "--name", "always", "--restart", "always", "sh", "-c", "sleep 0.2")
    wait_for(lambda: sandbox.inspect("always")["RestartCount"] >= 2)
    sandbox.cli("stop", "always")  # stopped by hand: it stays stopped
    count = sandbox.inspect("always")["RestartCount"]
    time.sleep(1.5)
    state = sandbox.inspect("always")
    assert state["RestartCount"] == count and state["State"]["Status"] == "exited"
    # `always` comes back with the daemon even after a manual stop; `unless-stopped` does not
    sandbox.cli("run", "-d", "--name", "unless", "--restart", "unless-stopped", "sleep", "300")
    sandbox.cli("stop", "-t", "0", "unless")
    sandbox.kill_daemon()
    sandbox.start_daemon()
    wait_for(lambda: sandbox.inspect("always")["State"]["Running"] or sandbox.inspect("always")["RestartCount"] > count)
    assert sandbox.inspect("unless")["State"]["Status"] == "exited"


HANDLES_USR1 = ("python3", "-c", "import signal, sys, time\n"
                "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(5))\ntime.sleep(300)")  # fmt: skip


def test_stop_signal_and_timeout(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "usr1", "--stop-signal", "SIGUSR1", *HANDLES_USR1)
    time.sleep(0.5)
    sandbox.cli("stop", "usr1")
    assert sandbox.inspect("usr1")["State"]["ExitCode"] == 5
    sandbox.cli("run", "-d", "--name", "stubborn", "--stop-timeout", "1", "sleep", "300")
    started = time.monotonic()
    sandbox.cli("stop", "stubborn")  # PID 1 ignores SIGTERM: killed after its own timeout, not 10 s
    assert time.monotonic() - started < 5 and sandbox.inspect("stubborn")["State"]["ExitCode"] == 137
