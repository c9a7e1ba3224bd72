"""host, none and container:X network modes; --pid container:X and host."""

from __future__ import annotations

import pytest
from test_connectivity import probe_from_container, run_server

from boxnet.testing.sandbox import HOST_ADDR, WEB_ADDR, Sandbox


def test_host_mode_uses_the_hosts_network(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "hosty", "--network", "host", "sleep", "300")
    links = sandbox.in_container("hosty", "ip", "-br", "addr").stdout
    assert "uplink0" in links and HOST_ADDR in links
    assert probe_from_container(sandbox, "hosty", WEB_ADDR) == HOST_ADDR
    data = sandbox.inspect("hosty")
    assert data["HostConfig"]["NetworkMode"] == "host"
    assert data["NetworkSettings"]["SandboxKey"] == ""
    # a server in host mode listens on the host's own address
    run_server(sandbox, "hostweb", "--network", "host", port=8088)
    assert probe_from_container(sandbox, "hosty", HOST_ADDR, 8088) == HOST_ADDR


@pytest.mark.parametrize("sandbox", [{"via_ip_netns": True}], indirect=True)
def test_host_mode_with_a_daemon_started_by_ip_netns_exec(sandbox: Sandbox) -> None:
    """`ip netns exec` gives the daemon a mount namespace with the host namespace's sysfs already on /sys: a
    container on the host's network sees that one (a second sysfs for the namespace would be EBUSY)."""
    links = sandbox.cli("run", "--rm", "--network", "host", "ls", "/sys/class/net").stdout.split()
    assert "uplink0" in links, links
    sandbox.cli("run", "-d", "--name", "bridged", "sleep", "300")  # the others keep a sysfs of their own
    assert sandbox.in_container("bridged", "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]


def test_none_mode_has_only_loopback(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "lonely", "--network", "none", "sleep", "300")
    assert sandbox.in_container("lonely", "ls", "/sys/class/net").stdout.split() == ["lo"]
    assert probe_from_container(sandbox, "lonely", WEB_ADDR, timeout=1) is None
    result = sandbox.cli("network", "connect", "bridge", "lonely", check=False)
    assert result.returncode != 0 and "network mode none" in result.stderr


def test_container_mode_shares_the_network_namespace(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "shared")
    target_ip = run_server(sandbox, "es01", "--network", "shared")
    sandbox.cli("run", "-d", "--name", "toolbox", "--network", "container:es01", "sleep", "300")
    out = sandbox.in_container("toolbox", "ip", "-br", "addr", "show", "eth0").stdout
    assert target_ip in out
    # the toolbox sees es01's listening socket and can reach it on localhost, as in seed 000
    assert ":80 " in sandbox.in_container("toolbox", "ss", "-ltn").stdout
    assert probe_from_container(sandbox, "toolbox", "127.0.0.1") == "127.0.0.1"
    assert sandbox.in_container("toolbox", "cat", "/etc/hosts").stdout.count(target_ip) == 1
    assert sandbox.inspect("toolbox")["HostConfig"]["NetworkMode"].startswith("container:")
    result = sandbox.cli("run", "-d", "--network", "container:es01", "-p", "81:81", "sleep", "1", check=False)
    assert result.returncode != 0 and "port publishing" in result.stderr
    refused = sandbox.cli("rm", "-f", "es01", check=False)
    assert refused.returncode != 0 and "shares its network" in refused.stderr
    sandbox.cli("rm", "-f", "toolbox", "es01")


def test_pid_modes(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "target", "sleep", "4242")
    sandbox.cli("run", "-d", "--name", "peer", "--pid", "container:target", "sleep", "300")
    assert "sleep 4242" in sandbox.in_container("peer", "ps", "-eo", "args").stdout
    sandbox.cli("run", "-d", "--name", "hostpid", "--pid", "host", "sleep", "300")
    processes = sandbox.in_container("hostpid", "ps", "-eo", "pid").stdout.split()
    assert len(processes) > 20
