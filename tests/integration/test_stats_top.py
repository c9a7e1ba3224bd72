"""stats against the kernel's own counters, and top, through the docker CLI, the SDK and boxnet's CLI."""

from __future__ import annotations

import json
import os

import docker
from test_docker_clients import docker_cli

from boxnet.runtime.cgroups import find_hierarchies
from boxnet.testing.sandbox import Sandbox


def cgroup_number(sandbox: Sandbox, name: str, controller: str, file: str) -> int:
    container_id = sandbox.inspect(name)["Id"]
    hierarchy = next(h for h in find_hierarchies() if h.controller == controller)
    with open(os.path.join(hierarchy.mountpoint, hierarchy.own, "boxnet", container_id, file)) as handle:
        return int(handle.read().split()[0])


def link_counters(sandbox: Sandbox, name: str) -> dict[str, int]:
    """eth0's counters as iproute2 reads them (netlink), not as stats does (/proc/PID/net/dev)."""
    pid = str(sandbox.inspect(name)["State"]["Pid"])
    out = json.loads(sandbox.in_host("nsenter", "-t", pid, "-n", "ip", "-s", "-j", "link", "show", "eth0",
                                     check=True).stdout)[0]["stats64"]  # fmt: skip
    return {"rx_bytes": out["rx"]["bytes"], "tx_bytes": out["tx"]["bytes"], "rx_packets": out["rx"]["packets"],
            "tx_packets": out["tx"]["packets"]}  # fmt: skip


def test_stats_agree_with_the_kernel(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "stnet")
    # a busy process and 16 MiB held in a tmpfs (charged to the container's memory cgroup)
    sandbox.cli("run", "-d", "--name", "busy", "--network", "stnet", "--memory", "256m", "--pids-limit", "50",
                "--tmpfs", "/tmp", "host", "sh", "-c",
                "head -c 16777216 /dev/zero > /tmp/fill; while :; do :; done")  # fmt: skip
    sandbox.cli("run", "-d", "--name", "peer", "--network", "stnet", "host", "sleep", "300")
    sandbox.in_container("busy", "ping", "-c", "5", "-i", "0.2", "peer")
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        container = client.containers.get("busy")
        before = cgroup_number(sandbox, "busy", "cpuacct", "cpuacct.usage")
        counters_before = link_counters(sandbox, "busy")
        once = container.stats(stream=False)
        counters_after = link_counters(sandbox, "busy")
        after = cgroup_number(sandbox, "busy", "cpuacct", "cpuacct.usage")
        # Docker's two samples a second apart: precpu is the first, and the busy loop used most of that second
        used = once["cpu_stats"]["cpu_usage"]["total_usage"] - once["precpu_stats"]["cpu_usage"]["total_usage"]
        assert 0.5e9 < used < 1.5e9 * once["cpu_stats"]["online_cpus"], once["cpu_stats"]
        assert before <= once["cpu_stats"]["cpu_usage"]["total_usage"] <= after
        assert once["memory_stats"]["limit"] == 256 << 20
        assert 16 << 20 <= once["memory_stats"]["usage"] <= cgroup_number(sandbox, "busy", "memory",
                                                                          "memory.max_usage_in_bytes")  # fmt: skip
        assert once["memory_stats"]["stats"]["shmem"] >= 16 << 20  # what the tmpfs holds, as memory.stat says
        assert once["pids_stats"] == {"current": cgroup_number(sandbox, "busy", "pids", "pids.current"), "limit": 50}
        eth0 = once["networks"]["eth0"]
        for key in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"):
            assert counters_before[key] <= eth0[key] <= counters_after[key], (key, eth0, counters_after)
        assert eth0["tx_packets"] >= 5 and list(once["networks"]) == ["eth0"]
        assert once["name"] == "/busy" and once["id"] == container.id
        streamed = container.stats(stream=True, decode=True)
        first, second = next(streamed), next(streamed)
        assert second["precpu_stats"] == first["cpu_stats"] and second["preread"] == first["read"]
        streamed.close()
        quick = container.stats(stream=False, one_shot=True)
        assert quick["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    finally:
        client.close()
    # the docker CLI prints the numbers it computes from these (one process: the loop is the shell's own)
    row = json.loads(docker_cli(sandbox, "stats", "--no-stream", "--format", "{{json .}}", "busy").stdout)
    assert row["Name"] == "busy" and row["MemUsage"].endswith("/ 256MiB") and row["PIDs"] == "1", row
    assert 50.0 < float(row["CPUPerc"].rstrip("%")) < 150.0, row
    table = sandbox.cli("stats", "--no-stream", "busy", "peer").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]  # fmt: skip
    busy = next(line for line in table if " busy " in line).split()
    assert float(busy[2].rstrip("%")) > 50.0 and busy[5] == "256MiB", busy
    # a container that does not run: zeroes, as Docker's
    sandbox.cli("stop", "-t", "0", "peer")
    stopped = sandbox.client.get("/containers/peer/stats", stream=0)
    assert stopped["read"] == "0001-01-01T00:00:00Z" and stopped["memory_stats"] == {}
    bad = docker_cli(sandbox, "stats", "--no-stream", "nosuch")
    assert bad.returncode != 0 and "nosuch" in bad.stderr


def test_top(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "tp", "host", "sh", "-c", "sleep 301 & sleep 302")
    sandbox.in_container("tp", "true")
    listed = docker_cli(sandbox, "top", "tp")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"]
    commands = sorted(line.split(None, 7)[7] for line in lines[1:])
    assert commands == ["sh -c sleep 301 & sleep 302", "sleep 301", "sleep 302"], lines
    pid = str(sandbox.inspect("tp")["State"]["Pid"])
    assert any(line.split()[1] == pid for line in lines[1:])
    custom = sandbox.cli("top", "tp", "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and sorted(line.split()[1] for line in custom[1:]) == [
        "sh", "sleep", "sleep"], custom  # fmt: skip
    no_pid = docker_cli(sandbox, "top", "tp", "-o", "comm")
    assert no_pid.returncode != 0 and "no PID column" in no_pid.stderr
    sandbox.cli("stop", "-t", "0", "tp")
    stopped = docker_cli(sandbox, "top", "tp")
    assert stopped.returncode != 0 and "is not running" in stopped.stderr
