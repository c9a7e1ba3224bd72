"""Swarm networks and their addresses in the cluster store: what two managers or two nodes racing for the
same name, VXLAN id, subnet or address end up with."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from boxnet.cluster import keys
from boxnet.cluster.networks import ClusterNetworks
from boxnet.errors import Conflict
from boxnet.model.network import NetworkRequest
from boxnet.store.cluster_memory import MemoryClusterStore


def test_networks_get_distinct_vnis_and_subnets_and_unique_names() -> None:
    store = MemoryClusterStore()
    managers = ClusterNetworks(store, "m1"), ClusterNetworks(store, "m2")
    first = managers[0].create(NetworkRequest("a", driver="overlay"), [])
    second = managers[1].create(NetworkRequest("b", driver="overlay"), [ipaddress.ip_network("10.0.2.0/24")])
    assert (first.driver_data["vni"], second.driver_data["vni"]) == ("4097", "4098")
    assert first.subnets[0].subnet == "10.0.1.0/24" and first.subnets[0].gateway == "10.0.1.1"
    assert second.subnets[0].subnet == "10.0.3.0/24"  # 10.0.2.0/24 is a local network of m2's node
    with pytest.raises(Conflict, match="already exists"):
        managers[1].create(NetworkRequest("a", driver="overlay"), [])
    with pytest.raises(Conflict, match="overlaps"):
        managers[0].create(NetworkRequest("c", driver="overlay", subnets=["10.0.1.128/25"]), [])
    managers[0].remove(first)
    assert store.get(keys.NETWORK_NAMES + "a") is None and store.get(f"{keys.VNIS}4097") is None
    again = managers[1].create(NetworkRequest("a2", driver="overlay"), [])
    assert again.driver_data["vni"] == "4097" and again.subnets[0].subnet == "10.0.1.0/24"


def test_concurrent_creates_never_share_a_vni_or_a_subnet() -> None:
    store = MemoryClusterStore()
    made = []

    def create(index: int) -> None:
        made.append(ClusterNetworks(store, f"m{index}").create(NetworkRequest(f"n{index}", driver="overlay"), []))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({n.driver_data["vni"] for n in made}) == 8
    assert len({n.subnets[0].subnet for n in made}) == 8


def test_no_two_nodes_lease_one_address() -> None:
    store = MemoryClusterStore()
    network = ClusterNetworks(store, "m").create(NetworkRequest("n", driver="overlay", subnets=["10.9.0.0/28"]), [])
    leased: list[str] = []
    lock = threading.Lock()

    def lease(node: str) -> None:
        ipam = ClusterNetworks(store, node)
        for index in range(3):
            address = ipam.allocate(network, 4, "", f"{node}-{index}")
            with lock:
                leased.append(address)

    threads = [threading.Thread(target=lease, args=(f"node{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(leased) == 12 and len(set(leased)) == 12
    assert "10.9.0.1/28" not in leased  # the gateway
    nodes = ClusterNetworks(store, "node0")
    with pytest.raises(Conflict, match="already in use"):
        nodes.allocate(network, 4, leased[0].split("/")[0], "late")
    nodes.release(network.id, leased[0])
    assert nodes.allocate(network, 4, leased[0].split("/")[0], "late") == leased[0]
    assert ClusterNetworks(store, "x").release_node("node1") == 3
    with pytest.raises(Conflict, match="active endpoints"):
        store.put(keys.endpoint(network.id, "e1"), "{}")
        nodes.remove(network)
