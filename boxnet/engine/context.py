"""What every engine service shares: configuration, the registry, the kernel-facing parts, one lock."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from boxnet.engine.events import EventLog
from boxnet.engine.firewall import Firewall
from boxnet.engine.registry import Registry
from boxnet.images.store import ImageStore
from boxnet.kernel.port_reservations import PortReservations
from boxnet.runtime.cgroups import Cgroups
from boxnet.volumes.store import VolumeStore

if TYPE_CHECKING:
    from boxnet.cluster.swarm import ExternalStore
    from boxnet.engine.cluster_sync import ClusterSync
    from boxnet.engine.dns import DnsService


@dataclass
class EngineConfig:
    root: str
    # Where container namespaces are registered for `ip netns exec <name>`.
    netns_registry: str = "/run/netns"
    # The resolv.conf the default bridge's containers copy their nameservers from.
    resolv_conf: str = "/etc/resolv.conf"
    default_bridge: str = "boxnet0"
    # Where the embedded DNS forwards names it does not know, unless a container has its own --dns;
    # empty: the nameservers of resolv_conf.
    dns_upstreams: list[str] = field(default_factory=list)
    # The host's own TCP connections to published IPv4 ports go straight to the container, redirected at
    # connect() by a cgroup program; off, they go through the nft DNAT like everybody else's.
    connect_redirect: bool = True
    # Seconds a node's lease lives without renewal: how soon peers see a dead node's endpoints go.
    node_ttl: int = 10
    # `--cluster-store`: an etcd the user runs, instead of the members managers run (cluster/swarm.py).
    cluster_store: ExternalStore | None = None
    # Registries pulled from over plain HTTP (host:port or a CIDR), as dockerd's --insecure-registry.
    insecure_registries: list[str] = field(default_factory=list)

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.root, "containers")

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.containers_dir, container_id)


@dataclass
class EngineContext:
    config: EngineConfig
    registry: Registry
    firewall: Firewall = field(default_factory=Firewall)
    cgroups: Cgroups = field(default_factory=Cgroups)
    reservations: PortReservations = field(default_factory=PortReservations)
    # One lock over every change of state: twenty concurrent runs must never share an address.
    lock: threading.RLock = field(default_factory=threading.RLock)
    # What happened, for /events (published after each change is done).
    events: EventLog = field(default_factory=EventLog)
    dns: DnsService = field(init=False)
    images: ImageStore = field(init=False)
    volumes: VolumeStore = field(init=False)
    # In a swarm: what keeps this node in step with it (engine/cluster_sync.py), and this node's role.
    cluster: ClusterSync | None = None
    cluster_role: str = ""

    def require_cluster(self) -> ClusterSync:
        from boxnet.cluster.swarm import NOT_IN_SWARM
        from boxnet.errors import Unavailable

        if self.cluster is None:
            raise Unavailable(NOT_IN_SWARM)
        return self.cluster

    def require_manager(self) -> ClusterSync:
        from boxnet.cluster.swarm import NOT_A_MANAGER
        from boxnet.errors import Unavailable

        cluster = self.require_cluster()
        if self.cluster_role != "manager":
            raise Unavailable(NOT_A_MANAGER)
        return cluster

    def __post_init__(self) -> None:
        from boxnet.engine.dns import DnsService  # it needs this class; this one needs an instance of it

        self.dns = DnsService(self)
        self.images = ImageStore(self.config.root)
        self.volumes = VolumeStore(self.config.root)
        self.volumes.on_change = lambda action, name: self.events.publish("volume", action, name, {"driver": "local"})
