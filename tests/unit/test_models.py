import pytest

from boxnet.drivers import registry as drivers
from boxnet.drivers.macvlan.driver import split_vlan
from boxnet.errors import InvalidArgument
from boxnet.model.container import DEFAULT_CAPABILITIES, effective_capabilities
from boxnet.model.names import check_ifname, parse_key_values
from boxnet.model.network import Network, NetworkRequest, SubnetConfig
from boxnet.model.ports import PortMapping, find_clash, parse_port_spec


@pytest.mark.parametrize(("spec", "expected"), [
    ("80", PortMapping(80)),
    ("8080:80", PortMapping(80, "tcp", "", 8080)),
    ("127.0.0.1:8080:80/udp", PortMapping(80, "udp", "127.0.0.1", 8080)),
    ("0.0.0.0:8080:80", PortMapping(80, "tcp", "", 8080)),
    ("127.0.0.1::80", PortMapping(80, "tcp", "127.0.0.1", 0)),
    ("[::1]:8080:80", PortMapping(80, "tcp", "::1", 8080)),
])  # fmt: skip
def test_port_specs(spec: str, expected: PortMapping) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("0", "between 1 and 65535"), ("70000:80", "between 1 and 65535"), ("80/icmp", "invalid protocol"),
    ("a:b:c:d", "invalid port"), ("1.2.3:80:80", "invalid host address"), ("x", "not a number"),
])  # fmt: skip
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_port_spec(spec)


def test_port_clashes() -> None:
    any_addr = PortMapping(80, "tcp", "", 8080)
    assert any_addr.clashes_with(PortMapping(81, "tcp", "127.0.0.1", 8080))
    assert not any_addr.clashes_with(PortMapping(80, "udp", "", 8080))
    assert not PortMapping(80, "tcp", "127.0.0.1", 8080).clashes_with(PortMapping(80, "tcp", "127.0.0.2", 8080))
    assert find_clash([any_addr, PortMapping(90, "tcp", "", 8080)], []) is not None


def test_network_request_validation() -> None:
    NetworkRequest("ok", subnets=["10.0.0.0/24"], gateways=["10.0.0.254"]).validate()
    bad = [
        (NetworkRequest("x", subnets=["10.0.0.0/24"], gateways=["10.0.1.1"]), "outside the subnet"),
        (NetworkRequest("x", subnets=["10.0.0.0/24", "10.0.0.128/25"]), "overlap"),
        (NetworkRequest("x", subnets=["fd00::/64"]), "without --ipv6"),
        (NetworkRequest("x", options={"com.docker.network.bridge.enable_icc": "nah"}), "not a boolean"),
        (NetworkRequest("x", options={"encrypted": ""}), "unknown option"),
        (NetworkRequest("x", options={"com.docker.network.driver.mtu": "9"}), "MTU"),
        (NetworkRequest("bridge"), "reserved"),
        (NetworkRequest("-x"), "invalid network name"),
        (NetworkRequest("x", driver="vlan"), "unknown network driver 'vlan'; known: bridge, macvlan"),
        (NetworkRequest("x", driver="host"), "only one instance of the 'host' network"),
        (NetworkRequest("x", subnets=["10.0.0.0/24"], ip_ranges=["10.1.0.0/25"]), "not inside"),
        (NetworkRequest("x", driver="macvlan"), "needs -o parent=IFACE"),
        (NetworkRequest("x", driver="macvlan", options={"parent": "eth0", "macvlan_mode": "hub"}), "not one of"),
        (NetworkRequest("x", driver="macvlan", options={"parent": "eth0.4095"}), "VLAN id 4095"),
        (NetworkRequest("x", driver="macvlan", options={"parent": "eth0", "mtu": "9000"}), "unknown option 'mtu'"),
        (NetworkRequest("x", driver="macvlan", options={"parent": "a b"}), "option parent"),
    ]
    for request, message in bad:
        with pytest.raises(InvalidArgument, match=message):
            request.validate()
            drivers.for_creation(request.driver).validate(request)
    good = NetworkRequest("mv", driver="macvlan", options={"parent": "eth0.10", "macvlan_mode": "private"})
    good.validate()
    drivers.for_creation("macvlan").validate(good)


def test_drivers_declare_what_they_do() -> None:
    assert drivers.get("bridge").capabilities.publishes_ports
    macvlan = drivers.get("macvlan").capabilities
    assert not macvlan.publishes_ports and not macvlan.subnet_on_host and macvlan.endpoints
    assert not drivers.get("host").capabilities.endpoints and not drivers.get("null").capabilities.user_created
    assert split_vlan("eth0.10") == ("eth0", 10) and split_vlan("eth0") is None and split_vlan("br.x") is None


def test_network_roundtrip_and_flags() -> None:
    network = Network("a" * 64, "n", "bridge", "now", [SubnetConfig("10.0.0.0/24", "10.0.0.1")],
                      options={"com.docker.network.bridge.enable_icc": "false"}, internal=True, bridge="br-x")
    again = Network.from_dict(network.to_dict())
    assert again == network and not again.icc and not again.masquerade


def test_ifnames_and_key_values() -> None:
    assert check_ifname("br-0123456789ab") == "br-0123456789ab"
    with pytest.raises(InvalidArgument, match="at most 15"):
        check_ifname("a" * 16)
    with pytest.raises(InvalidArgument):
        check_ifname("a b")
    assert parse_key_values("label", ["a=b", "c"]) == {"a": "b", "c": ""}
    with pytest.raises(InvalidArgument):
        parse_key_values("option", ["novalue"])


def test_capabilities_follow_dockers_rule() -> None:
    assert set(effective_capabilities([], [])) == set(DEFAULT_CAPABILITIES)
    caps = effective_capabilities(["NET_ADMIN", "cap_sys_time"], ["NET_RAW"])
    assert "NET_ADMIN" in caps and "SYS_TIME" in caps and "NET_RAW" not in caps
    assert effective_capabilities(["NET_ADMIN"], ["ALL"]) == ["NET_ADMIN"]
    with pytest.raises(InvalidArgument):
        effective_capabilities(["NOPE"], [])


def test_container_record_roundtrip() -> None:
    import json

    from boxnet.model.container import Container, ContainerState, Endpoint

    container = Container(
        id="a" * 64, name="web", created="2026-01-01T00:00:00.000000Z", ports=[PortMapping(80, "tcp", "", 8080)],
        published_ports=[PortMapping(80, "tcp", "", 8080)], labels={"k": "v"},
        endpoints={"n1": Endpoint("n1", "e1", ifname="eth0", ipv4="10.0.0.2/24", aliases=["db"])},
        state=ContainerState(status="running", pid=42), requested_networks={"appnet": {"aliases": ["db"]}},
    )  # fmt: skip
    assert Container.from_dict(json.loads(container.to_json())) == container
