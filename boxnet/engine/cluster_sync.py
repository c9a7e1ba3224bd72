"""Keeps this node in step with the swarm: swarm networks realized here from the cluster store, remote
endpoints programmed on the VXLAN devices and named in the embedded DNS, and this node's own endpoints
published on its lease (so that they vanish from every peer if this node dies).

Everything is keyed by endpoint: an address that moves to another node replaces its entry, and an entry
leaves when its endpoint does, whatever order the events come in (moby#33789 and #52661 left stale ones).
After a compaction the watch lists everything again and the devices are diffed against that listing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from boxnet.cluster import keys
from boxnet.cluster.networks import ClusterNetworks
from boxnet.drivers import registry as drivers
from boxnet.drivers.overlay.driver import (
    INGRESS_ADDRESS,
    LOCAL,
    MTU,
    VNI,
    VXLAN,
    VXLAN_OVERHEAD,
    WIREGUARD,
    encrypted,
)
from boxnet.engine.context import EngineContext
from boxnet.engine.encryption import NodeEncryption
from boxnet.errors import BoxnetError
from boxnet.kernel import vxlan, wireguard
from boxnet.model.container import Container, Endpoint
from boxnet.model.macs import mac_for
from boxnet.model.network import Network
from boxnet.store.cluster import ClusterStore, Entry, Event
from boxnet.store.watcher import PrefixWatcher

if TYPE_CHECKING:
    from boxnet.cluster.liveness import Liveness
    from boxnet.engine.networks import NetworkService

log = logging.getLogger(__name__)

NODE_ENDPOINT = "node-"  # an endpoint ID prefix: a node's own address on the ingress network


@dataclass(frozen=True)
class RemoteEndpoint:
    network_id: str
    endpoint_id: str
    node: str
    vtep: str
    mac: str
    ipv4: str  # without prefix length
    name: str
    hostname: str
    aliases: tuple[str, ...]

    @classmethod
    def parse(cls, key: str, value: str) -> RemoteEndpoint:
        network_id, endpoint_id = key[len(keys.ENDPOINTS):].split("/", 1)
        data = json.loads(value)
        return cls(network_id, endpoint_id, data["node"], data["vtep"], data["mac"], data["ipv4"], data["name"],
                   data.get("hostname", ""), tuple(data.get("aliases", ())))  # fmt: skip


def is_swarm_network(network: Network) -> bool:
    return drivers.of(network).capabilities.scope == "global"


class ClusterSync:
    def __init__(self, ctx: EngineContext, networks: NetworkService, store: ClusterStore, node_id: str, addr: str,
                 liveness: Liveness) -> None:  # fmt: skip
        self.ctx, self.networks, self.store = ctx, networks, store
        self.node_id, self.addr, self.liveness = node_id, addr, liveness
        self.cluster_networks = ClusterNetworks(store, node_id)
        self.remote: dict[str, dict[str, RemoteEndpoint]] = {}  # network id -> endpoint id -> endpoint
        self._peers_lock = threading.Lock()
        self.network_watch = PrefixWatcher(store, keys.NETWORKS, self._networks_listed, self._networks_changed)
        self.endpoint_watch = PrefixWatcher(store, keys.ENDPOINTS, self._endpoints_listed, self._endpoints_changed)
        self.nodes: dict[str, str] = {}  # node id -> underlay address, of the nodes alive now
        self.node_watch = PrefixWatcher(store, keys.ALIVE, self._nodes_listed, self._nodes_changed)
        self.encryption: NodeEncryption | None = None  # made with the first encrypted network realized here

    def start(self) -> None:
        self.node_watch.start()
        self.node_watch.synced.wait(10)
        self.network_watch.start()
        self.network_watch.synced.wait(10)
        self.endpoint_watch.start()
        self.endpoint_watch.synced.wait(10)
        self.liveness.on_new_lease.append(self._publish_all)
        self._publish_all(self.liveness.lease)
        # Encrypted networks this node realized before (a daemon that started again): WireGuard back.
        if any(encrypted(n) for n in self.ctx.registry.networks.values()):
            try:
                self._encryption()
                self._encryption_changed()
            except BoxnetError as exc:
                log.error("WireGuard for the encrypted networks: %s (they stay sealed)", exc.message)

    def stop(self) -> None:
        if self._publish_all in self.liveness.on_new_lease:
            self.liveness.on_new_lease.remove(self._publish_all)
        self.endpoint_watch.stop()
        self.network_watch.stop()
        self.node_watch.stop()
        if self.encryption is not None:
            self.encryption.stop()

    def leave(self) -> None:
        """This node leaves the swarm: its realization of the swarm networks goes."""
        self.stop()
        with self.ctx.lock:
            for network in [n for n in self.ctx.registry.networks.values() if is_swarm_network(n)]:
                self._drop(network.id)
            if self.encryption is not None:
                self.encryption.leave()
            self.ctx.firewall.set_swarm(None)

    # ---- the swarm's nodes: the only sources of VXLAN ----------------------------------------------
    def _nodes_listed(self, entries: list[Entry]) -> None:
        self.nodes = {e.key[len(keys.ALIVE):]: json.loads(e.value).get("addr", "") for e in entries}
        self._allow_vteps()

    def _nodes_changed(self, events: list[Event]) -> None:
        for event in events:
            node_id = event.key[len(keys.ALIVE):]
            if event.kind == "put":
                self.nodes[node_id] = json.loads(event.value).get("addr", "")
            else:
                self.nodes.pop(node_id, None)
        self._allow_vteps()

    def _allow_vteps(self) -> None:
        """VXLAN from the nodes' underlay addresses, and (encrypted networks) from their WireGuard ones."""
        sealed = self.encryption.addresses() if self.encryption is not None else set()
        with self.ctx.lock:
            self.ctx.firewall.set_swarm({a for a in self.nodes.values() if a} | {self.addr} | sealed)

    # ---- encrypted networks ------------------------------------------------------------------------
    def _encryption(self) -> NodeEncryption:
        if self.encryption is None:
            self.encryption = NodeEncryption(self.store, self.node_id, self.addr,
                                             os.path.join(self.ctx.config.root, "cluster"),
                                             lambda: self.liveness.lease, self._encryption_changed)  # fmt: skip
        self.encryption.ensure()
        return self.encryption

    def _encryption_changed(self) -> None:
        """Peers came or went, or WireGuard was made again: the encrypted networks' devices and entries."""
        self._allow_vteps()
        for network in [n for n in self.ctx.registry.networks.values() if encrypted(n)]:
            with self.ctx.lock:
                try:
                    drivers.of(network).create(network)  # idempotent: what a dead wireguard-go took with it
                except BoxnetError as exc:
                    log.error("encrypted network %s: %s", network.name, exc.message)
            self._program(network.id)

    # ---- swarm networks ----------------------------------------------------------------------------
    def _networks_listed(self, entries: list[Entry]) -> None:
        wanted = {e.key[len(keys.NETWORKS):]: e for e in entries}
        with self.ctx.lock:
            for network in [n for n in self.ctx.registry.networks.values() if is_swarm_network(n)]:
                if network.id not in wanted:
                    self._drop(network.id)
        for entry in entries:
            self.adopt(Network.from_dict(json.loads(entry.value)))

    def _networks_changed(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "put":
                self.adopt(Network.from_dict(json.loads(event.value)))
            else:
                with self.ctx.lock:
                    self._drop(event.key[len(keys.NETWORKS):])

    def adopt(self, record: Network) -> Network:
        """Realizes a swarm network on this node (idempotent): the local record names this node's devices."""
        with self.ctx.lock:
            present = self.ctx.registry.networks.get(record.id)
            if present is not None and not present.removing:
                return present
            network = Network.from_dict(record.to_dict())
            network.driver_data[LOCAL] = self.addr
            network.driver_data[MTU] = str(vxlan.underlay_mtu(self.addr) - VXLAN_OVERHEAD)
            if network.ingress:
                network.driver_data[INGRESS_ADDRESS] = self._node_address(network)
            if encrypted(network):
                # Fail closed: the VNI is sealed before its VXLAN device exists, which then runs between the
                # nodes' WireGuard addresses.
                encryption = self._encryption()
                self.ctx.firewall.seal(int(network.driver_data[VNI]), encryption.name)
                network.driver_data[LOCAL] = encryption.address
                network.driver_data[WIREGUARD] = encryption.name
                network.driver_data[MTU] = str(vxlan.underlay_mtu(self.addr) - wireguard.OVERHEAD - VXLAN_OVERHEAD)
            drivers.of(network).prepare(network, [n for n in self.ctx.registry.networks.values() if n.id != network.id])
            self.networks.make(network)
        if network.ingress:
            self._publish_node(network)
        self._program(network.id)
        # Endpoints seen before the network was realized here had no zone to be named in: now they have.
        with self._peers_lock:
            waiting = list(self.remote.get(network.id, {}).values())
        for endpoint in waiting:
            self._name(endpoint)
        return network

    def realize_by_name(self, name: str) -> None:
        """The swarm network of that name, realized here if the watch has not done it yet (nothing if there
        is none: the caller's own lookup says so)."""
        try:
            entry = self.store.get(keys.NETWORK_NAMES + name)
            record = self.store.get(keys.NETWORKS + entry.value) if entry is not None else None
        except BoxnetError as exc:
            log.warning("looking up swarm network %s: %s", name, exc.message)
            return
        if record is not None:
            self.adopt(Network.from_dict(json.loads(record.value)))

    def _drop(self, network_id: str) -> None:
        network = self.ctx.registry.networks.get(network_id)
        if network is None:
            return
        users = self.ctx.registry.containers_on(network_id)
        if users:
            log.warning("swarm network %s is gone but %s still use it here; it stays until they leave",
                        network.name, ", ".join(c.name for c in users))  # fmt: skip
            return
        if network.ingress:
            self._unpublish_node(network)
        self.networks.remove_local(network)
        if encrypted(network):
            self.ctx.firewall.unseal(int(network.driver_data[VNI]))

    # ---- this node on the ingress network ----------------------------------------------------------
    def _node_address(self, network: Network) -> str:
        """This node's address on the ingress network: the one it leased before (a daemon restarted, a network
        realized again), else a new lease."""
        owner = f"node:{self.node_id}"
        prefix = network.subnets[0].prefixlen
        for entry in self.store.range(f"{keys.IPAM}{network.id}/")[0]:
            if json.loads(entry.value).get("owner") == owner:
                return f"{entry.key.rsplit('/', 1)[1]}/{prefix}"
        return self.cluster_networks.allocate(network, 4, "", owner)

    def _publish_node(self, network: Network) -> None:
        """The node's ingress address as an endpoint, on its lease: peers program it like a task's, so that
        the tasks they run answer the mesh of this node."""
        address = network.driver_data.get(INGRESS_ADDRESS, "")
        if address:
            record = {"node": self.node_id, "vtep": self.addr, "mac": mac_for(address), "ipv4": address.split("/")[0],
                      "name": "", "hostname": "", "aliases": []}  # fmt: skip
            self.store.put(keys.endpoint(network.id, NODE_ENDPOINT + self.node_id), json.dumps(record),
                           self.liveness.lease)  # fmt: skip

    def _unpublish_node(self, network: Network) -> None:
        with contextlib.suppress(BoxnetError):
            self.store.delete(keys.endpoint(network.id, NODE_ENDPOINT + self.node_id))
            self.cluster_networks.release(network.id, network.driver_data.get(INGRESS_ADDRESS, ""))

    # ---- remote endpoints --------------------------------------------------------------------------
    def _endpoints_listed(self, entries: list[Entry]) -> None:
        found: dict[str, dict[str, RemoteEndpoint]] = {}
        for entry in entries:
            endpoint = RemoteEndpoint.parse(entry.key, entry.value)
            if endpoint.node != self.node_id:
                found.setdefault(endpoint.network_id, {})[endpoint.endpoint_id] = endpoint
        with self._peers_lock:
            before = {(n, e) for n, eps in self.remote.items() for e in eps}
            self.remote = found
        for network_id, endpoint_id in before - {(n, e) for n, eps in found.items() for e in eps}:
            self.ctx.dns.remote_endpoint_removed(network_id, endpoint_id)
        for endpoints in found.values():
            for endpoint in endpoints.values():
                self._name(endpoint)
        for network_id in {n for n, _ in before} | set(found):
            self._program(network_id)

    def _endpoints_changed(self, events: list[Event]) -> None:
        touched = set()
        for event in events:
            network_id, endpoint_id = event.key[len(keys.ENDPOINTS):].split("/", 1)
            if event.kind == "put":
                endpoint = RemoteEndpoint.parse(event.key, event.value)
                if endpoint.node == self.node_id:
                    continue
                with self._peers_lock:
                    self.remote.setdefault(network_id, {})[endpoint_id] = endpoint
                self._name(endpoint)
            else:
                with self._peers_lock:
                    gone = self.remote.get(network_id, {}).pop(endpoint_id, None)
                if gone is None:
                    continue
                self.ctx.dns.remote_endpoint_removed(network_id, endpoint_id)
            touched.add(network_id)
        for network_id in touched:
            self._program(network_id)

    def _name(self, endpoint: RemoteEndpoint) -> None:
        network = self.ctx.registry.networks.get(endpoint.network_id)
        if network is not None and network.serves_names:
            self.ctx.dns.remote_endpoint_added(network, endpoint.endpoint_id, endpoint.name, endpoint.hostname,
                                               list(endpoint.aliases), endpoint.ipv4)  # fmt: skip

    def _program(self, network_id: str) -> None:
        """The VXLAN device's entries made equal to the remote endpoints of the network: a diff."""
        network = self.ctx.registry.networks.get(network_id)
        if network is None or not network.driver_data.get(VXLAN):
            return
        device = network.driver_data[VXLAN]
        sealed = self.encryption if encrypted(network) else None
        with self._peers_lock:
            # An encrypted network's peers are reached at their nodes' WireGuard addresses (none yet: later).
            wanted = {vxlan.Peer(e.mac, e.ipv4, sealed.address_of(e.node) if sealed else e.vtep)
                      for e in self.remote.get(network_id, {}).values()
                      if e.ipv4 and (sealed is None or sealed.address_of(e.node))}  # fmt: skip
            present = vxlan.peers(device)
            for peer in present - wanted:
                vxlan.remove_peer(device, peer)
            for peer in wanted - present:
                vxlan.add_peer(device, peer)

    def name_all(self) -> None:
        """A new resolver gets the remote names too."""
        with self._peers_lock:
            endpoints = [e for eps in self.remote.values() for e in eps.values()]
        for endpoint in endpoints:
            self._name(endpoint)

    def remote_address(self, name: str, network_ids: set[str]) -> str:
        with self._peers_lock:
            for network_id in network_ids:
                for endpoint in self.remote.get(network_id, {}).values():
                    if name in (endpoint.name, endpoint.hostname, *endpoint.aliases) and endpoint.ipv4:
                        return endpoint.ipv4
        return ""

    # ---- this node's endpoints ---------------------------------------------------------------------
    def publish(self, container: Container, network: Network, endpoint: Endpoint) -> None:
        record = {"node": self.node_id, "vtep": self.addr, "mac": endpoint.mac, "ipv4": endpoint.address(4),
                  "name": container.name, "hostname": container.hostname, "aliases": endpoint.aliases,
                  "container": container.id}  # fmt: skip
        self.store.put(keys.endpoint(network.id, endpoint.endpoint_id), json.dumps(record), self.liveness.lease)

    def unpublish(self, network_id: str, endpoint_id: str) -> None:
        self.store.delete(keys.endpoint(network_id, endpoint_id))

    def _publish_all(self, lease: int) -> None:
        """On a new lease (a daemon start, or the old one expired while the store was out of reach): every
        local endpoint on a swarm network, put again on it."""
        with self.ctx.lock:
            for container in self.ctx.registry.containers.values():
                if container.state.status != "running":
                    continue
                for endpoint in container.endpoints.values():
                    network = self.ctx.registry.networks.get(endpoint.network_id)
                    if network is not None and is_swarm_network(network):
                        try:
                            self.publish(container, network, endpoint)
                        except BoxnetError as exc:
                            log.warning("could not publish %s's endpoint on %s: %s", container.name, network.name,
                                        exc.message)  # fmt: skip
            for network in [n for n in self.ctx.registry.networks.values() if n.ingress]:
                try:
                    self._publish_node(network)
                except BoxnetError as exc:
                    log.warning("could not publish this node's address on %s: %s", network.name, exc.message)
            if self.encryption is not None:
                try:
                    self.encryption.publish(lease)
                except BoxnetError as exc:
                    log.warning("could not publish this node's WireGuard key: %s", exc.message)
