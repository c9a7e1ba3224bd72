"""The swarm, as one node sees it: init, join, leave, and the cluster's nodes, over etcd.

A manager runs an etcd member (cluster/etcd_member.py) and the join service; every node holds a lease that
keeps its `alive` key (cluster/liveness.py). Each step of init, join and leave is recorded first in the
node's local state (cluster/state.py), so a daemon killed half-way undoes or finishes it when it starts.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from boxnet.cluster import addresses, keys, pki
from boxnet.cluster.etcd_member import CLIENT_PORT, PEER_PORT, EtcdMember, MemberConfig, end_recorded
from boxnet.cluster.join_service import JoinServer, fetch_ca, request_join
from boxnet.cluster.liveness import Liveness
from boxnet.cluster.nodes import NodeDirectory, NodeStatus, now
from boxnet.cluster.state import LocalState, StateFiles
from boxnet.engine import faults
from boxnet.errors import BoxnetError, InvalidArgument, Unavailable
from boxnet.model.node import Node, check_availability, host_resources
from boxnet.store.cluster import Put, absent
from boxnet.store.etcd import Credentials, EtcdError, EtcdStore

log = logging.getLogger(__name__)

NOT_IN_SWARM = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
                "node to swarm and try again.")  # fmt: skip
NOT_A_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
                 "Please run this command on a manager node or promote the current node to a manager.")  # fmt: skip
ALREADY_IN_SWARM = ('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join '
                    "another one.")  # fmt: skip


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass(frozen=True)
class ExternalStore:
    """`boxnetd --cluster-store`: an etcd the user runs. Every daemon pointed at it is a node of one swarm (a
    manager: it may change the swarm's objects); there is no CA, no token and no join service of boxnet's."""

    endpoints: list[str]
    credentials: Credentials | None
    advertise: str = ""


EXTERNAL = ("this daemon's swarm is the etcd given by --cluster-store: every daemon pointed at it is a node, and "
            "swarm init, join and leave do not apply")  # fmt: skip


class SwarmListener(Protocol):
    def swarm_connected(self, swarm: Swarm) -> None: ...

    def swarm_disconnecting(self, swarm: Swarm, leaving: bool) -> None:
        """leaving: this node leaves the swarm (else the daemon only stops)."""


class Swarm:
    def __init__(self, root: str, engine_version: str, node_ttl: int = 10,
                 own_links: Callable[[], set[str]] = set, external: ExternalStore | None = None) -> None:  # fmt: skip
        self.external = external
        self.files = StateFiles(root)
        self.state = self.files.load()
        self.engine_version = engine_version
        self.node_ttl = node_ttl
        self.own_links = own_links  # boxnet's bridges and veths: never an advertise address
        self.store: EtcdStore | None = None
        self.member: EtcdMember | None = None
        self.liveness: Liveness | None = None
        self.join_server: JoinServer | None = None
        self.lock = threading.RLock()
        self.error = ""
        # Told when this node is connected to the swarm, and before it disconnects (the engine's sync).
        self.listeners: list[SwarmListener] = []
        # Whether this node made the swarm just now (its listeners then make what a new swarm has: ingress).
        self.made_the_swarm = False

    # ---- state -------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.state.phase == "active"

    @property
    def is_manager(self) -> bool:
        return self.active and self.state.role == "manager"

    def _save(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        self.files.save(self.state)

    def require_store(self) -> EtcdStore:
        if not self.active or self.store is None:
            raise Unavailable(NOT_IN_SWARM)
        return self.store

    def require_manager(self) -> EtcdStore:
        store = self.require_store()
        if self.state.role != "manager":
            raise Unavailable(NOT_A_MANAGER)
        return store

    def _member_config(self) -> MemberConfig:
        return MemberConfig(self.files.etcd_directory, self.state.node_id, self.state.addr, self.state.cluster_id,
                            self.files.credentials())  # fmt: skip

    # ---- start and stop with the daemon ------------------------------------------------------------
    def resume(self) -> None:
        """At daemon start: back into the swarm it was in, or undo an init or join a crash cut short."""
        with self.lock:
            if self.external is not None:
                try:
                    self._join_external(self.external)
                except BoxnetError as exc:
                    self.error = exc.message
                    log.error("could not join the swarm of the cluster store: %s", exc.message)
                return
            phase = self.state.phase
            if phase in ("initializing", "joining", "leaving"):
                log.warning("the daemon stopped while this node was %s a swarm; it undoes what it had of it", phase)
                end_recorded(self._member_config())
                self.files.wipe()
                self.state = LocalState()
                return
            if phase != "active":
                return
            try:
                self._connect(start_member=self.state.managed_etcd)
                assert self.store is not None
                if self.store.get(keys.node(self.state.node_id)) is None:
                    # `node rm` while this daemon was away: this node is no longer part of the swarm.
                    log.warning("this node was removed from the swarm while its daemon was away; it leaves")
                    self._disconnect(revoke=True, leaving=True)
                    self.files.wipe()
                    self.state = LocalState()
            except BoxnetError as exc:
                self.error = exc.message
                log.error("could not rejoin the swarm: %s", exc.message)

    def _join_external(self, external: ExternalStore) -> None:
        """Registers this node in the user's etcd (its ID kept across restarts) and connects."""
        addr, _ = addresses.choose(external.advertise, 2377, self.own_links())
        node_id = self.state.node_id or pki.new_node_id()
        self._save(phase="active", node_id=node_id, role="manager", addr=addr, etcd_endpoints=list(external.endpoints),
                   managed_etcd=False, created=self.state.created or now())  # fmt: skip
        store = EtcdStore(external.endpoints, external.credentials)
        try:
            cluster = {"id": pki.new_node_id(), "created": now(), "ca": "", "default_addr_pool": ["10.0.0.0/8"],
                       "subnet_size": 24, "data_path_port": 4789}  # fmt: skip
            self.made_the_swarm = store.txn([absent(keys.CLUSTER)], [Put(keys.CLUSTER, json.dumps(cluster))])
            entry = store.get(keys.node(node_id))
            node = Node.from_json(entry.value) if entry else self._self_node("manager", "active")
            node.addr, node.engine_version, node.updated = addr, self.engine_version, now()
            store.put(keys.node(node_id), node.to_json())
        finally:
            store.close()
        self._connect(start_member=False)

    def credentials(self) -> Credentials | None:
        return self.external.credentials if self.external is not None else self.files.credentials()

    def close(self) -> None:
        """At daemon shutdown: peers see this node go at once (its lease is revoked); the swarm stays."""
        with self.lock:
            self._disconnect(revoke=True, leaving=False)

    def _connect(self, start_member: bool) -> None:
        """Starts what an active node runs: its etcd member (managers), the store client, its lease, and the
        join service (managers)."""
        if start_member and self.member is None:
            self.member = EtcdMember(self._member_config())
            self.member.start(self.state.initial_cluster, "existing")
        self.store = EtcdStore(self.state.etcd_endpoints, self.credentials())
        self.liveness = Liveness(self.store, keys.alive(self.state.node_id),
                                 json.dumps({"addr": self.state.addr, "since": now()}), self.node_ttl)  # fmt: skip
        self.liveness.start()
        for listener in self.listeners:
            listener.swarm_connected(self)
        if self.state.role == "manager" and self.external is None:
            self.join_server = JoinServer(self.state.addr, self.state.port, self.files.path("node.crt"),
                                          self.files.path("node.key"), self.files.read("ca.crt"), self._admit)
            self.join_server.start()
        self.error = ""

    def _disconnect(self, revoke: bool, leaving: bool = True) -> None:
        if self.liveness is not None:  # it was connected
            for listener in self.listeners:
                listener.swarm_disconnecting(self, leaving)
        if self.join_server is not None:
            self.join_server.stop()
            self.join_server = None
        if self.liveness is not None:
            self.liveness.stop(revoke)
            self.liveness = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.member is not None:
            self.member.stop()
            self.member = None

    # ---- init --------------------------------------------------------------------------------------
    def init(self, advertise: str, port: int = 2377) -> str:
        if self.external is not None:
            raise InvalidArgument(EXTERNAL)
        with self.lock:
            if self.state.phase != "inactive":
                raise Unavailable(ALREADY_IN_SWARM)
            addr, port = addresses.choose(advertise, port, self.own_links())
            node_id, cluster_id = pki.new_node_id(), pki.new_node_id()
            self._save(phase="initializing", node_id=node_id, cluster_id=cluster_id, role="manager", addr=addr,
                       port=port, managed_etcd=True, created=now())  # fmt: skip
            try:
                ca, ca_key = pki.new_ca(cluster_id)
                self._write_identity(ca, pki.new_key(), node_id, addr, ca_key)
                config = self._member_config()
                self._save(etcd_endpoints=[config.client_url], initial_cluster=f"{node_id}={config.peer_url}",
                           tokens={"worker": pki.new_token(ca), "manager": pki.new_token(ca)})  # fmt: skip
                self.member = EtcdMember(config)
                self.member.start(self.state.initial_cluster, "new")
                faults.check("swarm-init:after-etcd")
                store = EtcdStore(self.state.etcd_endpoints, self.files.credentials())
                cluster = {"id": cluster_id, "created": now(), "ca": ca.decode(), "default_addr_pool": ["10.0.0.0/8"],
                           "subnet_size": 24, "data_path_port": 4789}  # fmt: skip
                node = self._self_node("manager", "active")
                store.txn([absent(keys.CLUSTER)], [Put(keys.CLUSTER, json.dumps(cluster)),
                                                   Put(keys.node(node_id), node.to_json())])  # fmt: skip
                store.close()
                self._save(phase="active")
                self.made_the_swarm = True
                self._connect(start_member=True)
            except BaseException:
                self._abandon()
                raise
            log.info("initialized swarm %s: node %s, manager, at %s", cluster_id, node_id, addr)
            return node_id

    def _write_identity(self, ca: bytes, key: bytes, node_id: str, addr: str, ca_key: bytes | None = None) -> None:
        self.files.write("ca.crt", ca)
        if ca_key:
            self.files.write("ca.key", ca_key)
        self.files.write("node.key", key)
        self.files.write("node.crt", pki.sign(ca, ca_key, pki.csr_for(key, node_id), node_id, [addr])
                         if ca_key else b"")  # fmt: skip

    def _self_node(self, role: str, availability: str) -> Node:
        stamp = now()
        cpus, memory = host_resources()
        return Node(self.state.node_id, socket.gethostname(), self.state.addr, role, availability,
                    engine_version=self.engine_version, nano_cpus=cpus, memory_bytes=memory, created=stamp,
                    updated=stamp)  # fmt: skip

    def _abandon(self) -> None:
        """Undoes a failed init or join: whatever it started stops, its files go."""
        self._disconnect(revoke=True)
        end_recorded(self._member_config())
        self.files.wipe()
        self.state = LocalState()

    # ---- join: the manager's side ------------------------------------------------------------------
    def _admit(self, request: dict[str, Any], peer: str) -> dict[str, Any]:
        """A node asks in with a token and a certificate request: it gets an ID, a certificate, and where the
        store is; a manager also an etcd member slot, the CA's key and the tokens."""
        with self.lock:
            store = self.require_manager()
            role = pki.role_of(str(request.get("token", "")), self.state.tokens)
            addr = str(request.get("addr") or peer)
            hostname = str(request.get("hostname") or addr)[:253]
            availability = check_availability(str(request.get("availability") or "active"))
            node_id = pki.new_node_id()
            cert = pki.sign(self.files.read("ca.crt"), self.files.read("ca.key"),
                            str(request.get("csr", "")).encode(), node_id, [addr])  # fmt: skip
            stamp = now()
            node = Node(node_id, hostname, addr, role, availability, engine_version=str(request.get("engine", "")),
                        nano_cpus=_int(request.get("nano_cpus")), memory_bytes=_int(request.get("memory_bytes")),
                        created=stamp, updated=stamp)  # fmt: skip
            store.put(keys.node(node_id), node.to_json())
            answer: dict[str, Any] = {"node_id": node_id, "role": role, "cert": cert.decode(),
                                      "cluster_id": self.state.cluster_id}  # fmt: skip
            if role == "manager":
                peer_url = f"https://{addr}:{PEER_PORT}"
                members = self._add_member(store, peer_url)
                named = [(m.get("name") or node_id, m["peerURLs"][0]) for m in members]
                answer.update(initial_cluster=",".join(f"{n}={u}" for n, u in named), ca_key=self.files.read(
                    "ca.key").decode(), tokens=self.state.tokens)  # fmt: skip
                # Its own member first: a manager reads and writes through the member it runs.
                others = [u for m in members for u in m.get("clientURLs", [])]
                answer["etcd"] = [f"https://{addr}:{CLIENT_PORT}", *others]
            else:
                answer["etcd"] = [u for m in store.members() for u in m.get("clientURLs", [])]
            log.info("admitted %s (%s) as %s %s", hostname, addr, role, node_id)
            return answer

    @staticmethod
    def _add_member(store: EtcdStore, peer_url: str) -> list[dict[str, Any]]:
        """etcd refuses a reconfiguration for a few seconds after the last one ("unhealthy cluster")."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return store.add_member(peer_url)["members"]
            except (EtcdError, Unavailable) as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"etcd would not take a new member: {exc}") from None
                time.sleep(0.5)

    # ---- join: the joining node's side -------------------------------------------------------------
    def join(self, remotes: list[str], token: str, advertise: str = "", availability: str = "active") -> None:
        if self.external is not None:
            raise InvalidArgument(EXTERNAL)
        with self.lock:
            if self.state.phase != "inactive":
                raise Unavailable(ALREADY_IN_SWARM)
            if not remotes:
                raise InvalidArgument("at least 1 RemoteAddr is required to join")
            pki.parse_token(token)
            check_availability(availability)
            addr, port = addresses.choose(advertise, 2377, self.own_links())
            remote = remotes[0]
            ca = fetch_ca(remote)
            pki.check_ca(token, ca)
            self._save(phase="joining", addr=addr, port=port, created=now())
            try:
                self.files.write("ca.crt", ca)
                key = pki.new_key()
                self.files.write("node.key", key)
                answer = request_join(remote, self.files.path("ca.crt"), {
                    "token": token, "csr": pki.csr_for(key, "joining").decode(), "addr": addr,
                    "hostname": socket.gethostname(), "availability": availability, "engine": self.engine_version,
                    "nano_cpus": host_resources()[0], "memory_bytes": host_resources()[1],
                })  # fmt: skip
                self.files.write("node.crt", answer["cert"].encode())
                faults.check("swarm-join:after-certificate")
                manager = answer["role"] == "manager"
                if manager:
                    self.files.write("ca.key", answer["ca_key"].encode())
                self._save(node_id=answer["node_id"], cluster_id=answer["cluster_id"], role=answer["role"],
                           etcd_endpoints=list(answer["etcd"]), managed_etcd=manager,
                           initial_cluster=answer.get("initial_cluster", ""), tokens=answer.get("tokens", {}))
                self._save(phase="active")
                self._connect(start_member=manager)
            except BaseException:
                self._abandon()
                raise
            log.info("joined swarm %s as %s %s", self.state.cluster_id, self.state.role, self.state.node_id)

    # ---- leave -------------------------------------------------------------------------------------
    def check_leave(self, force: bool) -> None:
        """Why this node may not leave, before anything is done about it."""
        if self.external is not None:
            raise InvalidArgument(EXTERNAL)
        if self.state.phase == "inactive":
            raise Unavailable("This node is not part of a swarm")
        if self.state.role == "manager" and not force:
            raise Unavailable("You are attempting to leave the swarm on a node that is participating as a "
                              "manager. Removing this node leaves the remaining managers with fewer to hold "
                              "the cluster store's quorum. Use `--force` to suppress this message.")  # fmt: skip

    def leave(self, force: bool) -> None:
        with self.lock:
            self.check_leave(force)
            self._save(phase="leaving")
            if self.store is not None and self.state.managed_etcd:
                try:
                    self._remove_own_member()
                except BoxnetError as exc:
                    log.warning("could not remove this node's etcd member: %s", exc.message)
            self._disconnect(revoke=True)
            end_recorded(self._member_config())
            self.files.wipe()
            self.state = LocalState()
            self.error = ""

    def _remove_own_member(self) -> None:
        assert self.store is not None
        members = self.store.members()
        own = [m for m in members if m.get("name") == self.state.node_id]
        if own and len(members) > 1:
            others = [u for m in members if m is not own[0] for u in m.get("clientURLs", [])]
            remote = EtcdStore(others, self.files.credentials())
            try:
                remote.remove_member(own[0]["ID"])
            finally:
                remote.close()

    # ---- nodes (cluster/nodes.py) ------------------------------------------------------------------
    def _directory(self) -> NodeDirectory:
        return NodeDirectory(self.require_manager(), self.state.node_id)

    def nodes(self) -> list[NodeStatus]:
        return self._directory().list()

    def node(self, ref: str) -> NodeStatus:
        return self._directory().find(ref)

    def update_node(self, ref: str, version: int, role: str, availability: str, labels: dict[str, str],
                    name: str) -> None:  # fmt: skip
        self._directory().update(ref, version, role, availability, labels, name)

    def remove_node(self, ref: str, force: bool) -> None:
        self._directory().remove(ref, force)

    # ---- what /info and /swarm say -----------------------------------------------------------------
    def cluster(self) -> tuple[dict[str, Any], int]:
        store = self.require_manager()
        entry = store.get(keys.CLUSTER)
        if entry is None:
            raise Unavailable("the cluster store holds no cluster record")
        return json.loads(entry.value), entry.mod_revision
