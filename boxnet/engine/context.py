"""What every engine service shares: configuration, the registry, the kernel-facing parts, one lock."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from boxnet.drivers.bridge import BridgeDriver
from boxnet.engine.firewall import Firewall
from boxnet.engine.registry import Registry


@dataclass
class EngineConfig:
    root: str
    # Where container namespaces are registered for `ip netns exec <name>`.
    netns_registry: str = "/run/netns"
    # The resolv.conf the default bridge's containers copy their nameservers from.
    resolv_conf: str = "/etc/resolv.conf"
    default_bridge: str = "boxnet0"

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
    bridge: BridgeDriver = field(default_factory=BridgeDriver)
    # One lock over every change of state: twenty concurrent runs must never share an address.
    lock: threading.RLock = field(default_factory=threading.RLock)
