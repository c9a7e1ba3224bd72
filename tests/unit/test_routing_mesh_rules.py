"""The routing mesh's pure parts: published ports numbered and held one service each, the ingress network
in the cluster store, and the nft table rendered from validated values."""

from __future__ import annotations

import pytest

from boxnet.cli.service import parse_publish
from boxnet.cluster import keys
from boxnet.cluster.networks import INGRESS_VNI, ClusterNetworks, ingress_request
from boxnet.errors import Conflict, InvalidArgument
from boxnet.firewall import mesh_rules
from boxnet.model.network import NetworkRequest
from boxnet.model.service import DYNAMIC_PORTS, PublishedPort, ServiceSpec, assign_ports
from boxnet.services.mesh import mesh_ports
from boxnet.services.records import ServiceRecords, ServicesState
from boxnet.store.cluster_memory import MemoryClusterStore


def test_ports_are_numbered_kept_across_updates_and_never_taken_twice() -> None:
    asked = [PublishedPort(80, 8080), PublishedPort(443, 0), PublishedPort(53, 0, "udp")]
    first = assign_ports(asked, [], {("tcp", DYNAMIC_PORTS.start)})
    assert first == [PublishedPort(80, 8080), PublishedPort(443, DYNAMIC_PORTS.start + 1),
                     PublishedPort(53, DYNAMIC_PORTS.start, "udp")]  # fmt: skip
    # An update that asks again without numbers keeps the ones the ports had.
    assert assign_ports([PublishedPort(443, 0)], first, set()) == [PublishedPort(443, DYNAMIC_PORTS.start + 1)]


def test_a_spec_cannot_publish_the_swarms_own_ports_or_one_port_twice() -> None:
    for ports, message in (([PublishedPort(80, 2377)], "join port"), ([PublishedPort(80, 4789, "udp")], "VXLAN"),
                           ([PublishedPort(80, 8080), PublishedPort(81, 8080)], "published twice")):  # fmt: skip
        with pytest.raises(InvalidArgument, match=message):
            ServiceSpec("s", "host", ports=ports).validate()
    ServiceSpec("s", "host", ports=[PublishedPort(80, 8080), PublishedPort(80, 8080, "udp")]).validate()


def records() -> tuple[MemoryClusterStore, ServiceRecords]:
    store = MemoryClusterStore()
    return store, ServiceRecords(store, ClusterNetworks(store, "m1"))


def test_one_service_per_published_port_and_a_removed_service_frees_its_ports() -> None:
    store, services = records()
    web = services.create(ServiceSpec("web", "host", ports=[PublishedPort(80, 8080), PublishedPort(81, 0)]), [])
    assert web.spec.ports == [PublishedPort(80, 8080), PublishedPort(81, DYNAMIC_PORTS.start)]
    assert store.get(keys.PORTS + "tcp/8080").value == web.id
    with pytest.raises(Conflict, match="8080/tcp is already published by service web"):
        services.create(ServiceSpec("api", "host", ports=[PublishedPort(80, 8080)]), [])
    assert [r.spec.name for r in services.list()] == ["web"]  # the refused one made nothing
    other = services.create(ServiceSpec("api", "host", ports=[PublishedPort(80, 0)]), [])
    assert other.spec.ports == [PublishedPort(80, DYNAMIC_PORTS.start + 1)]
    # An update that drops a port frees it, one that adds a port takes it.
    spec = ServiceSpec("web", "host", ports=[PublishedPort(80, 9090)])
    web = services.update("web", web.version, spec)
    assert store.get(keys.PORTS + "tcp/8080") is None and store.get(keys.PORTS + "tcp/9090").value == web.id
    services.remove("web")
    assert [e.key for e in store.range(keys.PORTS)[0]] == [f"{keys.PORTS}tcp/{DYNAMIC_PORTS.start + 1}"]


def test_the_ingress_network_has_docker_s_vni_and_subnet_and_there_is_one() -> None:
    store = MemoryClusterStore()
    networks = ClusterNetworks(store, "m1")
    ingress = networks.create(ingress_request(), [])
    assert ingress.ingress and ingress.driver_data["vni"] == str(INGRESS_VNI)
    assert ingress.subnets[0].subnet == "10.0.0.0/24" and not ingress.attachable
    with pytest.raises(Conflict, match="an ingress network already exists"):
        networks.create(NetworkRequest("mesh2", driver="overlay", ingress=True), [])
    assert networks.create(NetworkRequest("app", driver="overlay"), []).subnets[0].subnet == "10.0.1.0/24"
    ServiceRecords(store, networks).create(ServiceSpec("web", "host", ports=[PublishedPort(80, 8080)]), [])
    with pytest.raises(Conflict, match="service web publishes ports"):
        networks.remove(ingress)
    with pytest.raises(InvalidArgument, match="cannot be attachable"):
        NetworkRequest("x", driver="overlay", ingress=True, attachable=True).validate()


def test_mesh_rules_balance_over_running_tasks_and_masquerade_only_towards_other_nodes() -> None:
    ports = [mesh_rules.MeshPort("tcp", 8080, 80, ("10.0.0.6", "10.0.0.5")), mesh_rules.MeshPort("udp", 53, 53, ())]
    commands = mesh_rules.full("ov-0123456789ab", ports, ["10.0.0.5"])
    text = "\n".join(commands)
    assert commands[:3] == ["add table ip boxnet_mesh", "delete table ip boxnet_mesh", "add table ip boxnet_mesh"]
    assert "dnat ip to numgen inc mod 2 map { 0 : 10.0.0.5 . 80, 1 : 10.0.0.6 . 80 }" in text
    assert "tcp . 8080 : jump p-tcp-8080" in text and "udp . 53" not in text  # no task: no entry
    assert 'oifname "ov-0123456789ab" ct status dnat ip daddr != @local_backends masquerade' in text
    assert "add element ip boxnet_mesh local_backends { 10.0.0.5 }" in text
    for bad in (lambda: mesh_rules.MeshPort("tcp; flush ruleset", 1, 1, ()),
                lambda: mesh_rules.MeshPort("tcp", 8080, 80, ("10.0.0.5 . 1 }",)),
                lambda: mesh_rules.full('ov"; flush', [], [])):  # fmt: skip
        with pytest.raises(ValueError):
            bad()


def test_mesh_ports_come_from_running_tasks_on_the_ingress_network() -> None:
    _, services = records()
    web = services.create(ServiceSpec("web", "host", ports=[PublishedPort(80, 8080)]), [])
    tasks = {"t1": {"service_id": web.id, "node_id": "n1"}, "t2": {"service_id": web.id, "node_id": "n2"},
             "t3": {"service_id": web.id, "node_id": "n2"}}  # fmt: skip
    status = {"t1": {"state": "running", "addresses": {"ing": "10.0.0.5", "app": "10.0.1.5"}},
              "t2": {"state": "running", "addresses": {"ing": "10.0.0.6"}},
              "t3": {"state": "failed", "addresses": {"ing": "10.0.0.7"}}}  # fmt: skip
    ports, local = mesh_ports(ServicesState(services.list(), tasks, status), "ing", "n1")
    assert ports == [mesh_rules.MeshPort("tcp", 8080, 80, ("10.0.0.5", "10.0.0.6"))] and local == ["10.0.0.5"]


def test_publish_flag_in_docker_s_two_forms() -> None:
    assert parse_publish("8080:80") == {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                        "PublishMode": "ingress"}  # fmt: skip
    assert parse_publish("53:53/udp")["Protocol"] == "udp" and parse_publish("80")["PublishedPort"] == 0
    assert parse_publish("published=8080,target=80,mode=host")["PublishMode"] == "host"  # refused by the API
    for bad in ("8080:http", "published=1,target=2,colour=red"):
        with pytest.raises(InvalidArgument):
            parse_publish(bad)
