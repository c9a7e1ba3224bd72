"""The swarm's nodes as managers see them: their records, whether each is alive (its lease), which manager
leads (the etcd leader), and the changes managers make (availability, labels, removal)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from boxnet.cluster import keys
from boxnet.cluster.networks import ClusterNetworks
from boxnet.errors import BoxnetError, Conflict, InvalidArgument
from boxnet.model.names import resolve_ref
from boxnet.model.node import Node, check_availability
from boxnet.store.cluster import Put, unchanged_since
from boxnet.store.etcd import EtcdStore

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_address(store: EtcdStore, node_id: str) -> tuple[str, str]:
    """(underlay address, hostname) of a node, from its record: ("", node_id) if the store has none."""
    entry = store.get(keys.node(node_id))
    if entry is None:
        return "", node_id
    node = Node.from_json(entry.value)
    return node.addr, node.hostname or node_id


@dataclass
class NodeStatus:
    """A node record with what the store says of it now."""

    node: Node
    version: int  # the record's mod revision: Docker's Version.Index
    alive: bool
    leader: bool = False
    reachable: bool = False


class NodeDirectory:
    def __init__(self, store: EtcdStore, self_id: str) -> None:
        self.store = store
        self.self_id = self_id

    def list(self) -> list[NodeStatus]:
        store = self.store
        entries, _ = store.range(keys.NODES)
        alive = {e.key[len(keys.ALIVE):] for e in store.range(keys.ALIVE)[0]}
        leader, reachable = self._managers(store)
        found = []
        for entry in entries:
            node = Node.from_json(entry.value)
            found.append(NodeStatus(node, entry.mod_revision, node.id in alive, node.id == leader,
                                    node.id in reachable))  # fmt: skip
        return found

    def _managers(self, store: EtcdStore) -> tuple[str, set[str]]:
        """The leader's node ID, and the managers whose etcd members are started."""
        try:
            members = store.members()
            leader_id = store.status().get("leader", "")
        except BoxnetError:
            return "", set()
        names = {m["ID"]: m.get("name", "") for m in members}
        return names.get(leader_id, ""), {m.get("name", "") for m in members if m.get("clientURLs")}

    def find(self, ref: str) -> NodeStatus:
        return resolve_ref(self.list(), ref, "node", lambda s: s.node.id, lambda s: s.node.hostname)

    def update(self, ref: str, version: int, role: str, availability: str, labels: dict[str, str],
               name: str) -> None:  # fmt: skip
        store = self.store
        status = self.find(ref)
        node = status.node
        if role != node.role:
            raise InvalidArgument(f"changing the role of node {node.hostname} is not supported: it leaves and "
                                  f"joins again with the {role} token")  # fmt: skip
        node.availability, node.labels, node.name, node.updated = check_availability(availability), labels, name, now()
        if not store.txn([unchanged_since(keys.node(node.id), version)], [Put(keys.node(node.id), node.to_json())]):
            raise Conflict(f"update out of sequence: node {node.hostname} changed since version {version}")

    def remove(self, ref: str, force: bool) -> None:
        store = self.store
        status = self.find(ref)
        if status.node.id == self.self_id:
            raise InvalidArgument("this node cannot remove itself: use `swarm leave`")
        if status.alive and not force:
            raise InvalidArgument(f"node {status.node.id} is not down and can't be removed")
        if status.node.role == "manager" and status.reachable:
            raise InvalidArgument(f"node {status.node.id} is a manager whose etcd member is still in the cluster: "
                                  "it must leave the swarm first")  # fmt: skip
        store.delete(keys.node(status.node.id))
        store.delete(keys.alive(status.node.id))
        # Its addresses were kept while it was away (a partitioned node keeps using them); now they are free.
        released = ClusterNetworks(store, self.self_id).release_node(status.node.id)
        log.info("removed node %s (%s); %d address(es) it held are free", status.node.hostname, status.node.id,
                 released)  # fmt: skip
