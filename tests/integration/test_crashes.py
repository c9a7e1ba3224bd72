"""boxnetd killed with SIGKILL at every step of run, rm, network create and network rm: the next daemon
settles what was half-done, and nothing is left untracked (the leak checks after each test compare links,
nft rules, namespaces, registrations, processes, BPF programs and cgroups with the baseline)."""

from __future__ import annotations

import os

import pytest

from boxnet.testing.sandbox import Sandbox

START_POINTS = ["start:after-intent", "start:after-netns", "start:after-attach", "start:after-publish",
                "start:after-dns", "start:after-process", "start:after-register"]  # fmt: skip


def restart_without_crashes(sandbox: Sandbox) -> None:
    assert sandbox.daemon is not None
    sandbox.daemon.wait(timeout=30)  # it killed itself
    sandbox.extra_daemon_env.pop("BOXNET_CRASH")
    sandbox.start_daemon()


@pytest.mark.parametrize("sandbox", [{"BOXNET_CRASH": point} for point in START_POINTS], indirect=True,
                         ids=START_POINTS)  # fmt: skip
def test_a_daemon_killed_while_starting_a_container(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.90.0.0/24", "app")
    result = sandbox.cli("run", "-d", "--name", "victim", "--network", "app", "-p", "8080:80", "sleep", "300",
                         check=False)  # fmt: skip
    assert result.returncode != 0
    restart_without_crashes(sandbox)
    state = sandbox.inspect("victim")["State"]
    assert state["Status"] == "created" and not state["Running"] and "daemon stopped while starting" in state["Error"]
    assert sandbox.cli("ps", "-q").stdout.strip() == ""
    assert "victim" not in (os.listdir(sandbox.registry) if os.path.isdir(sandbox.registry) else [])
    # the record is whole: the same container starts, on its address, with its port
    sandbox.cli("start", "victim")
    assert sandbox.inspect("victim")["NetworkSettings"]["Networks"]["app"]["IPAddress"].startswith("10.90.0.")


@pytest.mark.parametrize("sandbox", [{"BOXNET_CRASH": p} for p in ("remove:after-intent", "remove:after-files")],
                         indirect=True, ids=["after-intent", "after-files"])  # fmt: skip
def test_a_daemon_killed_while_removing_a_container(sandbox: Sandbox) -> None:
    container_id = sandbox.cli("run", "-d", "--name", "victim", "-p", "8080:80", "sleep", "300").stdout.strip()
    assert sandbox.cli("rm", "-f", "victim", check=False).returncode != 0
    restart_without_crashes(sandbox)
    assert "victim" not in sandbox.cli("ps", "-a").stdout
    assert not os.path.exists(os.path.join(sandbox.root, "containers", container_id))


@pytest.mark.parametrize("sandbox", [{"BOXNET_CRASH": p} for p in ("network:after-record", "network:after-bridge",
                                                                     "network:after-rules")],
                         indirect=True, ids=["after-record", "after-bridge", "after-rules"])  # fmt: skip
def test_a_daemon_killed_while_creating_a_network(sandbox: Sandbox) -> None:
    assert sandbox.cli("network", "create", "halfmade", check=False).returncode != 0
    restart_without_crashes(sandbox)
    # recorded before anything was made: the next daemon makes the rest, and the network works
    sandbox.cli("run", "-d", "--name", "user", "--network", "halfmade", "sleep", "300")
    assert sandbox.inspect("user")["State"]["Running"]


@pytest.mark.parametrize("sandbox", [{"BOXNET_CRASH": "network-rm:after-intent"}], indirect=True)
def test_a_daemon_killed_while_removing_a_network(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "doomed")
    assert sandbox.cli("network", "rm", "doomed", check=False).returncode != 0
    restart_without_crashes(sandbox)
    assert "doomed" not in sandbox.cli("network", "ls").stdout
