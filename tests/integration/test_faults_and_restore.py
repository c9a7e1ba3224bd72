"""Failures half-way, concurrency, and live restore across a daemon killed with SIGKILL."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest
from test_connectivity import probe_from_container, probe_from_ns, run_server

from boxnet.testing.sandbox import ATTACKER_ADDR, HOST_ADDR, WEB_ADDR, Sandbox

START_FAULTS = "start:after-netns,start:after-attach,start:after-publish,start:after-process"


@pytest.mark.parametrize("sandbox", [{"BOXNET_FAULTS": START_FAULTS}], indirect=True)
def test_a_start_failing_half_way_leaves_nothing(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.70.0.0/24", "faulty")
    before = sandbox.kernel_state()
    result = sandbox.cli("run", "-d", "--name", "doomed", "--network", "faulty", "-p", "8080:80", "sleep", "300",
                         check=False)  # fmt: skip
    assert result.returncode != 0 and "injected fault at start:after-netns" in result.stderr
    assert sandbox.kernel_state() == before
    container = sandbox.inspect("doomed")
    assert container["State"]["Status"] == "created" and "injected fault" in container["State"]["Error"]
    sandbox.cli("rm", "doomed")


@pytest.mark.parametrize("sandbox", [{"BOXNET_FAULTS": "start:after-process"}], indirect=True)
def test_a_failure_after_the_process_started_releases_address_and_process(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.71.0.0/24", "faulty")
    before = sandbox.kernel_state()
    result = sandbox.cli("run", "-d", "--name", "doomed", "--network", "faulty", "-p", "8080:80", "sleep", "300",
                         check=False)  # fmt: skip
    assert result.returncode != 0 and "after-process" in result.stderr
    assert sandbox.kernel_state() == before
    # the lease went back: the next container on the network gets the first address again
    sandbox.cli("rm", "doomed")
    assert sandbox.client.get("/networks/faulty")["Containers"] == {}


@pytest.mark.parametrize("sandbox", [{"BOXNET_FAULTS": "network:after-rules"}], indirect=True)
def test_a_network_create_failing_half_way_leaves_nothing(sandbox: Sandbox) -> None:
    before = sandbox.kernel_state()
    result = sandbox.cli("network", "create", "halfmade", check=False)
    assert result.returncode != 0 and "injected fault" in result.stderr
    assert sandbox.kernel_state() == before
    assert "halfmade" not in sandbox.cli("network", "ls").stdout


def test_twenty_concurrent_runs_never_share_an_address(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.80.0.0/24", "busy")

    def run(index: int) -> str:
        return sandbox.cli("run", "-d", "--name", f"c{index}", "--network", "busy", "sleep", "300").stdout.strip()

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(run, range(20)))
    addresses = [sandbox.client.get(f"/containers/{i}/json")["NetworkSettings"]["Networks"]["busy"]["IPAddress"]
                 for i in ids]  # fmt: skip
    assert len(set(addresses)) == 20 and all(a.startswith("10.80.0.") for a in addresses)
    macs = {c["MacAddress"] for c in sandbox.client.get("/networks/busy")["Containers"].values()}
    assert len(macs) == 20


def test_live_restore_after_sigkill(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "app")
    run_server(sandbox, "web", "--network", "app", "-p", "8080:80")
    sandbox.cli("run", "-d", "--name", "client", "--network", "app", "sleep", "300")
    sandbox.cli("run", "-d", "--name", "victim", "sleep", "300")
    brief_id = sandbox.cli("run", "-d", "--rm", "--name", "brief", "sleep", "300").stdout.strip()
    web_pid = sandbox.inspect("web")["State"]["Pid"]
    victim_pid = sandbox.inspect("victim")["State"]["Pid"]
    brief_pid = sandbox.inspect("brief")["State"]["Pid"]
    sandbox.kill_daemon(signal.SIGKILL)
    # with no daemon at all, everything keeps working
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == ATTACKER_ADDR
    assert probe_from_ns(sandbox, sandbox.host, "127.0.0.1", 8080) is not None
    with open(f"/proc/{brief_pid}/stat") as stat:
        brief_shim = int(stat.read().rsplit(")", 1)[1].split()[1])  # its parent: the shim
    os.kill(victim_pid, signal.SIGKILL)
    os.kill(brief_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{brief_shim}") and time.monotonic() < deadline:
        time.sleep(0.02)  # the shim gone too: the restarted daemon finds it dead, not ending
    assert not os.path.exists(f"/proc/{brief_shim}")
    sandbox.start_daemon()
    web = sandbox.inspect("web")
    assert web["State"]["Running"] and web["State"]["Pid"] == web_pid
    # its shim may still be on its way out when the new daemon adopts it: the end is noticed either way
    assert sandbox.cli("wait", "victim", timeout=10).stdout.strip() == "137"
    victim = sandbox.inspect("victim")["State"]
    assert victim["Status"] == "exited" and victim["ExitCode"] == 137
    # a --rm container that died meanwhile is gone, record and state directory both
    deadline = time.monotonic() + 5
    while "brief" in sandbox.cli("ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "brief" not in sandbox.cli("ps", "-a").stdout
    assert not os.path.exists(os.path.join(sandbox.root, "containers", brief_id))
    assert probe_from_container(sandbox, "client", sandbox.ip_of("web")) == sandbox.ip_of("client")
    # the adopted container's end is still noticed
    sandbox.cli("stop", "-t", "1", "web")
    assert sandbox.inspect("web")["State"]["Status"] == "exited"
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080, timeout=1) is None


def test_restart_repairs_flushed_rules_and_deleted_links(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "app")
    sandbox.cli("network", "create", "gone")
    run_server(sandbox, "web", "--network", "app", "-p", "8080:80")
    sandbox.cli("network", "rm", "gone")
    baseline = sandbox.kernel_state()
    sandbox.kill_daemon(signal.SIGKILL)
    sandbox.in_host("nft", "flush", "ruleset", check=True)
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080, timeout=1) is None
    sandbox.start_daemon()
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == ATTACKER_ADDR
    assert sandbox.kernel_state() == baseline
    assert "gone" not in sandbox.cli("network", "ls").stdout
    # on demand too: delete the container's veth and the bridge, then ask for a repair
    web_bridge = f"br-{sandbox_network_id(sandbox, 'app')[:12]}"
    sandbox.in_host("ip", "link", "del", web_bridge, check=True)
    repaired = sandbox.client.post("/boxnet/reconcile")["Repaired"]
    assert any(web_bridge in item for item in repaired)
    sandbox.cli("run", "-d", "--name", "client", "--network", "app", "sleep", "300")
    assert probe_from_container(sandbox, "client", sandbox.ip_of("web")) == sandbox.ip_of("client")
    assert probe_from_container(sandbox, "client", WEB_ADDR) == HOST_ADDR


def sandbox_network_id(sandbox: Sandbox, name: str) -> str:
    return sandbox.client.get(f"/networks/{name}")["Id"]
