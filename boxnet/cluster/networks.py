"""Swarm-scope networks in the cluster store: created and removed by managers, with their name, VXLAN id and
subnets taken in the same transaction (no two overlays share one, whoever asks at the same instant); and
their addresses, leased by compare-and-swap, so that no two nodes hand out one address."""

from __future__ import annotations

import ipaddress
import json
import logging
from datetime import UTC, datetime

from boxnet.cluster import keys
from boxnet.errors import Conflict, Exhausted, InvalidArgument
from boxnet.ipam.allocator import SubnetAllocator
from boxnet.model.names import new_id
from boxnet.model.network import Network, NetworkRequest, SubnetConfig, requested_subnets
from boxnet.store.cluster import ClusterStore, Delete, Put, absent

log = logging.getLogger(__name__)

POOL = ipaddress.ip_network("10.0.0.0/8")  # Docker's default address pool for swarm networks
SUBNET_SIZE = 24
INGRESS_VNI = 4096  # Docker's; held by at most one network, which makes it the ingress
FIRST_VNI = INGRESS_VNI + 1
INGRESS_SUBNET = "10.0.0.0/24"
ATTEMPTS = 20


def ingress_request() -> NetworkRequest:
    """The ingress network a new swarm has, as Docker's."""
    return NetworkRequest(name="ingress", driver="overlay", ingress=True)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _subnet_key(subnet: str) -> str:
    return keys.SUBNETS + subnet.replace("/", "_")


class ClusterNetworks:
    def __init__(self, store: ClusterStore, node_id: str) -> None:
        self.store = store
        self.node_id = node_id

    # ---- networks ----------------------------------------------------------------------------------
    def create(self, request: NetworkRequest, local_subnets: list[ipaddress.IPv4Network]) -> Network:
        """Records the network; each node realizes it from the record. local_subnets: this node's other
        networks, which a chosen subnet avoids too."""
        for _ in range(ATTEMPTS):
            if self.store.get(keys.NETWORK_NAMES + request.name) is not None:
                raise Conflict(f"network with name {request.name} already exists")
            taken = [ipaddress.ip_network(e.key[len(keys.SUBNETS):].replace("_", "/"))
                     for e in self.store.range(keys.SUBNETS)[0]]  # fmt: skip
            vnis = {int(e.key[len(keys.VNIS):]) for e in self.store.range(keys.VNIS)[0]}
            if request.ingress:
                if INGRESS_VNI in vnis:
                    raise Conflict("an ingress network already exists: remove it first (a swarm has one)")
                vni = INGRESS_VNI
            else:
                vni = next(v for v in range(FIRST_VNI, FIRST_VNI + len(vnis) + 1) if v not in vnis)
            network_id = new_id()
            subnets = self._subnets(request, taken, local_subnets)
            network = Network(id=network_id, name=request.name, driver=request.driver, created=_now(),
                              subnets=subnets, internal=request.internal, attachable=request.attachable,
                              options=dict(request.options), labels=dict(request.labels),
                              driver_data={"vni": str(vni)}, ingress=request.ingress)  # fmt: skip
            record = json.dumps(network.to_dict())
            compares = [absent(keys.NETWORK_NAMES + request.name), absent(f"{keys.VNIS}{vni}"),
                        *(absent(_subnet_key(s.subnet)) for s in subnets)]  # fmt: skip
            puts = [Put(keys.NETWORKS + network_id, record), Put(keys.NETWORK_NAMES + request.name, network_id),
                    Put(f"{keys.VNIS}{vni}", network_id), *(Put(_subnet_key(s.subnet), network_id) for s in subnets)]
            if self.store.txn(compares, puts):
                log.info("created swarm network %s (VNI %d, %s)", request.name, vni, subnets[0].subnet)
                return network
        raise Conflict(f"could not create network {request.name}: too many concurrent changes, try again")

    @staticmethod
    def _subnets(request: NetworkRequest, taken: list, local: list) -> list[SubnetConfig]:
        if request.subnets:
            return requested_subnets(request, taken, "a swarm network uses")
        avoid = [*taken, *local]
        ingress = ipaddress.ip_network(INGRESS_SUBNET)
        if request.ingress and not any(ingress.overlaps(other) for other in avoid if other.version == 4):
            return [SubnetConfig(INGRESS_SUBNET, str(next(ingress.hosts())))]
        for candidate in POOL.subnets(new_prefix=SUBNET_SIZE):
            if candidate == ingress:
                continue  # Docker's ingress network's, even when the ingress is elsewhere
            if not any(candidate.overlaps(other) for other in avoid if other.version == 4):
                return [SubnetConfig(str(candidate), str(next(candidate.hosts())))]
        raise Exhausted(f"no free /{SUBNET_SIZE} left in {POOL}")

    def remove(self, network: Network) -> None:
        if network.ingress:
            publishing = sorted(json.loads(e.value)["spec"]["name"] for e in self.store.range(keys.SERVICES)[0]
                                if json.loads(e.value)["spec"].get("ports"))  # fmt: skip
            if publishing:
                raise Conflict(f"ingress network cannot be removed because service {', '.join(publishing)} "
                               "publishes ports through it")  # fmt: skip
        elif self.store.range(f"{keys.ENDPOINTS}{network.id}/")[0]:
            raise Conflict(f"error while removing network: network {network.name} has active endpoints")
        vni = network.driver_data.get("vni", "")
        # Endpoints left at this point are the nodes' own on the ingress network.
        self.store.txn([], [Delete(keys.NETWORKS + network.id), Delete(keys.NETWORK_NAMES + network.name),
                            Delete(f"{keys.VNIS}{vni}"), *(Delete(_subnet_key(s.subnet)) for s in network.subnets),
                            Delete(f"{keys.IPAM}{network.id}/", prefix=True),
                            Delete(f"{keys.ENDPOINTS}{network.id}/", prefix=True)])  # fmt: skip
        log.info("removed swarm network %s", network.name)

    # ---- addresses ---------------------------------------------------------------------------------
    def allocate(self, network: Network, version: int, requested: str, owner: str) -> str:
        """An address of the network's subnet, taken if nobody holds it (compare-and-swap)."""
        subnets = [s for s in network.subnets if s.network.version == version]
        if not subnets:
            raise Conflict(f"network {network.name} has no IPv{version} subnet")
        config = subnets[0]
        if requested and ipaddress.ip_address(requested) not in config.network:
            raise InvalidArgument(f"address {requested} is not in any subnet of network {network.name}")
        value = json.dumps({"node": self.node_id, "owner": owner})
        for _ in range(ATTEMPTS * 5):
            held = {ipaddress.ip_address(e.key.rsplit("/", 1)[1])
                    for e in self.store.range(f"{keys.IPAM}{network.id}/")[0]}  # fmt: skip
            allocator = SubnetAllocator(config.network, config.gateway_address,
                                        ipaddress.ip_network(config.ip_range) if config.ip_range else None,
                                        held | {ipaddress.ip_address(a) for a in config.auxiliary.values()})
            address = allocator.allocate(requested or None)
            if self.store.txn([absent(keys.ipam(network.id, str(address)))],
                              [Put(keys.ipam(network.id, str(address)), value)]):  # fmt: skip
                return f"{address}/{config.prefixlen}"
            if requested:
                raise Conflict(f"address {requested} is already in use on network {network.name}")
        raise Exhausted(f"could not lease an address on {network.name}: too many concurrent changes")

    def release(self, network_id: str, cidr: str) -> None:
        if cidr:
            self.store.delete(keys.ipam(network_id, cidr.split("/", 1)[0]))

    def release_node(self, node_id: str) -> int:
        """Addresses a removed node held (node rm): free for others."""
        gone = [e.key for e in self.store.range(keys.IPAM)[0] if json.loads(e.value).get("node") == node_id]
        for key in gone:
            self.store.delete(key)
        return len(gone)
