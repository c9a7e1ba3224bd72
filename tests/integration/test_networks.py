"""Networks: create, inspect, ls, rm, prune, options and bad input, against the real kernel."""

from __future__ import annotations

import json

import pytest

from boxnet.testing.sandbox import Sandbox


def test_default_networks_exist_with_docker_names(sandbox: Sandbox) -> None:
    names = {n["Name"]: n for n in sandbox.client.get("/networks")}
    assert {"bridge", "host", "none"} <= set(names)
    bridge = sandbox.client.get("/networks/bridge")
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert "172.17.0.1/16" in sandbox.in_host("ip", "-br", "addr", "show", "boxnet0").stdout


@pytest.mark.parametrize("sandbox", [{"host_routes": [("172.17.8.0/24", "198.51.100.1")]}], indirect=True)
def test_default_bridge_avoids_a_subnet_the_host_routes(sandbox: Sandbox) -> None:
    bridge = sandbox.client.get("/networks/bridge")
    assert bridge["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
    sandbox.cli("run", "-d", "--name", "c", "sleep", "300")
    assert sandbox.ip_of("c") == "172.18.0.2"


def test_create_inspect_and_remove_a_user_network(sandbox: Sandbox) -> None:
    out = sandbox.cli("network", "create", "--subnet", "10.20.0.0/24", "--gateway", "10.20.0.254",
                      "--label", "team=blue", "-o", "com.docker.network.driver.mtu=1400", "appnet").stdout
    network_id = out.strip()
    assert len(network_id) == 64
    inspected = json.loads(sandbox.cli("network", "inspect", "appnet").stdout)[0]
    assert inspected["Id"] == network_id
    assert inspected["Driver"] == "bridge" and inspected["Scope"] == "local"
    assert inspected["IPAM"]["Config"] == [{"Subnet": "10.20.0.0/24", "Gateway": "10.20.0.254"}]
    assert inspected["Labels"] == {"team": "blue"}
    assert inspected["Internal"] is False and inspected["EnableIPv6"] is False
    bridge = f"br-{network_id[:12]}"
    link = json.loads(sandbox.in_host("ip", "-j", "-d", "link", "show", bridge, check=True).stdout)[0]
    assert link["mtu"] == 1400
    assert "10.20.0.254/24" in sandbox.in_host("ip", "-br", "addr", "show", bridge).stdout
    assert "appnet" in sandbox.cli("network", "ls").stdout
    sandbox.cli("network", "rm", "appnet")
    assert sandbox.in_host("ip", "link", "show", bridge).returncode != 0
    assert "appnet" not in sandbox.cli("network", "ls").stdout


def test_subnets_come_from_the_pools_without_overlap(sandbox: Sandbox) -> None:
    first = sandbox.client.post("/networks/create", {"Name": "one"})["Id"]
    second = sandbox.client.post("/networks/create", {"Name": "two"})["Id"]
    subnets = [sandbox.client.get(f"/networks/{i}")["IPAM"]["Config"][0]["Subnet"] for i in (first, second)]
    assert subnets == ["172.18.0.0/16", "172.19.0.0/16"]


def test_bridge_name_option_and_ipv6(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "-o", "com.docker.network.bridge.name=mybr0", "--ipv6",
                "--subnet", "fd00:dead:beef::/64", "v6net")
    addresses = sandbox.in_host("ip", "-br", "addr", "show", "mybr0", check=True).stdout
    assert "fd00:dead:beef::1/64" in addresses and "172.18.0.1/16" in addresses
    inspected = sandbox.client.get("/networks/v6net")
    assert inspected["EnableIPv6"] is True


def test_prune_removes_only_unused_networks(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "idle")
    sandbox.cli("network", "create", "busy")
    sandbox.cli("run", "-d", "--name", "c1", "--network", "busy", "sleep", "300")
    out = sandbox.cli("network", "prune", "-f").stdout
    assert "idle" in out and "busy" not in out
    result = sandbox.cli("network", "rm", "busy", check=False)
    assert result.returncode != 0 and "active endpoints" in result.stderr


def _state(sandbox: Sandbox) -> dict:
    return sandbox.kernel_state()


def test_bad_input_is_rejected_and_changes_nothing(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "--subnet", "10.30.0.0/24", "taken")
    before = _state(sandbox)
    cases = [
        (["--subnet", "10.30.0.128/25", "overlap"], "overlaps"),
        (["--subnet", "10.40.0.0/24", "--gateway", "10.41.0.1", "gwout"], "outside the subnet"),
        (["--subnet", "10.40.0.0/33", "bad"], "invalid subnet"),
        (["--subnet", "banana", "bad2"], "invalid subnet"),
        (["--subnet", "10.40.0.1/24", "hostbits"], "host bits"),
        (["taken"], "already exists"),
        (["-o", "com.docker.network.bridge.enable_icc=maybe", "badbool"], "not a boolean"),
        (["-o", "encrypted", "typo"], "unknown option 'encrypted' for the bridge driver"),
        (["-o", "com.docker.network.bridge.enable_ic=false", "typo2"], "unknown option"),
        (["-o", "com.docker.network.bridge.name=averyveryverylongname", "long"], "at most 15"),
        (["-d", "overlay", "drv"], "This node is not a swarm manager"),
        (["-d", "ipvlan", "drv"], "unknown network driver 'ipvlan'; known: bridge, macvlan, overlay"),
        (["bad name"], "invalid network name"),
    ]
    for args, message in cases:
        result = sandbox.cli("network", "create", *args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    assert _state(sandbox) == before
    result = sandbox.cli("network", "rm", "bridge", check=False)
    assert result.returncode != 0 and "pre-defined" in result.stderr
    assert sandbox.cli("network", "inspect", "nosuch", check=False).returncode != 0


def test_pool_exhaustion_is_a_clear_error(sandbox: Sandbox) -> None:
    # 172.18-31 (/16 each) then 192.168.0.0/16 cut into /20s: 14 + 16 networks, then nothing.
    for index in range(30):
        sandbox.client.post("/networks/create", {"Name": f"n{index}"})
    before = _state(sandbox)
    result = sandbox.cli("network", "create", "one-too-many", check=False)
    assert result.returncode != 0 and "fully subnetted" in result.stderr
    assert _state(sandbox) == before
