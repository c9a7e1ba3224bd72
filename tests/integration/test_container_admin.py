"""pause/unpause through the freezer, rename with DNS following, container prune and system df: the docker
CLI, the SDK and boxnet's CLI."""

from __future__ import annotations

import json
import os
import time

import docker
from test_docker_clients import docker_cli
from test_stats_top import cgroup_number

from boxnet.runtime.cgroups import find_hierarchies
from boxnet.testing.sandbox import Sandbox


def freezer_state(sandbox: Sandbox, name: str) -> str:
    hierarchy = next(h for h in find_hierarchies() if h.controller == "freezer")
    path = os.path.join(hierarchy.mountpoint, hierarchy.own, "boxnet", sandbox.inspect(name)["Id"], "freezer.state")
    with open(path) as handle:
        return handle.read().strip()


def test_pause_freezes_every_process(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "pz", "host", "sh", "-c", "while :; do :; done")
    assert docker_cli(sandbox, "pause", "pz").returncode == 0
    assert freezer_state(sandbox, "pz") == "FROZEN"
    used = cgroup_number(sandbox, "pz", "cpuacct", "cpuacct.usage")
    time.sleep(0.3)
    assert cgroup_number(sandbox, "pz", "cpuacct", "cpuacct.usage") == used  # not one nanosecond more
    state = sandbox.inspect("pz")["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    assert "(Paused)" in docker_cli(sandbox, "ps", "--filter", "status=paused").stdout
    refused = docker_cli(sandbox, "exec", "pz", "true")
    assert refused.returncode != 0 and "is paused" in refused.stderr
    again = docker_cli(sandbox, "pause", "pz")
    assert again.returncode != 0 and "already paused" in again.stderr
    assert docker_cli(sandbox, "unpause", "pz").returncode == 0
    assert freezer_state(sandbox, "pz") == "THAWED"
    time.sleep(0.2)
    assert cgroup_number(sandbox, "pz", "cpuacct", "cpuacct.usage") > used
    not_paused = docker_cli(sandbox, "unpause", "pz")
    assert not_paused.returncode != 0 and "is not paused" in not_paused.stderr
    # a paused container stops (and is removed) as a running one does
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        container = client.containers.get("pz")
        container.pause()
        container.reload()
        assert container.status == "paused"
        container.stop(timeout=1)
        container.reload()
        assert container.status == "exited" and not container.attrs["State"]["Paused"]
    finally:
        client.close()
    stopped = docker_cli(sandbox, "pause", "pz")
    assert stopped.returncode != 0 and "is not running" in stopped.stderr


def test_rename_moves_the_dns_name_and_the_netns(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "rnnet")
    sandbox.cli("run", "-d", "--name", "old", "--network", "rnnet", "host", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "asker", "--network", "rnnet", "host", "sleep", "300")
    address = sandbox.ip_of("old", "rnnet")
    assert docker_cli(sandbox, "rename", "old", "new").returncode == 0
    assert sandbox.inspect("new")["Name"] == "/new"
    answer = sandbox.in_container("asker", "getent", "hosts", "new")
    assert answer.returncode == 0 and answer.stdout.split()[0] == address
    assert sandbox.in_container("asker", "getent", "hosts", "old").returncode != 0
    assert sorted(os.listdir(sandbox.registry)) == ["asker", "new"]  # the daemon's `ip netns` directory
    taken = docker_cli(sandbox, "rename", "new", "asker")
    assert taken.returncode != 0 and "already in use" in taken.stderr
    bad = docker_cli(sandbox, "rename", "new", "no/slash")
    assert bad.returncode != 0 and "invalid container name" in bad.stderr
    sandbox.cli("rename", "new", "newer")
    assert sandbox.in_container("asker", "getent", "hosts", "newer").stdout.split()[0] == address


def test_container_prune_and_system_df(sandbox: Sandbox) -> None:
    sandbox.cli("run", "--name", "done1", "--label", "keep=no", "host", "true")
    sandbox.cli("run", "--name", "done2", "--label", "keep=yes", "host", "true")
    sandbox.cli("run", "-d", "--name", "alive", "host", "sleep", "300")
    sandbox.cli("volume", "create", "dfvol")
    usage = json.loads(docker_cli(sandbox, "system", "df", "--format", "{{json .}}").stdout.splitlines()[1])
    assert usage["Type"] == "Containers" and usage["TotalCount"] == "3" and usage["Active"] == "1", usage
    table = sandbox.cli("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert table[3].split()[:4] == ["Local", "Volumes", "1", "0"]
    # label filters as Docker's: only the stopped container labelled keep=no goes
    result = docker_cli(sandbox, "container", "prune", "-f", "--filter", "label=keep=no")
    assert result.returncode == 0 and "Total reclaimed space" in result.stdout, result.stderr
    names = sorted(c["Names"][0] for c in sandbox.client.get("/containers/json", all=1))
    assert names == ["/alive", "/done2"]
    pruned = sandbox.cli("container", "prune", "-f").stdout
    assert sandbox.inspect("alive")["State"]["Running"] and "Deleted Containers:" in pruned
    assert [c["Names"][0] for c in sandbox.client.get("/containers/json", all=1)] == ["/alive"]
    refused = docker_cli(sandbox, "container", "prune", "-f", "--filter", "colour=red")
    assert refused.returncode != 0 and "invalid filter 'colour'" in refused.stderr
