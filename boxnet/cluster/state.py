"""This node's side of the cluster, on its own disk: who it is in which swarm, and its certificates.

Written before each step of init, join and leave (the phase says how far it got), so that a daemon killed
half-way finds a record naming what to finish or undo. Mode 0600: it holds the join tokens on managers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field

from boxnet.store.etcd import Credentials

# inactive: in no swarm. initializing / joining: a step of init or join was under way. active: in a swarm.
# leaving: a leave was under way.
PHASES = ("inactive", "initializing", "joining", "active", "leaving")


@dataclass
class LocalState:
    phase: str = "inactive"
    cluster_id: str = ""
    node_id: str = ""
    role: str = ""  # worker | manager
    addr: str = ""  # advertised underlay address
    port: int = 2377  # the join service's (Docker's swarm port)
    etcd_endpoints: list[str] = field(default_factory=list)
    managed_etcd: bool = False  # this node runs an etcd member
    initial_cluster: str = ""  # the member list this node's etcd member was started with
    # Managers only: the join tokens, by role.
    tokens: dict[str, str] = field(default_factory=dict)
    created: str = ""


class StateFiles:
    def __init__(self, root: str) -> None:
        self.directory = os.path.join(root, "cluster")

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    @property
    def etcd_directory(self) -> str:
        return self.path("etcd")

    def load(self) -> LocalState:
        try:
            with open(self.path("state.json")) as handle:
                return LocalState(**json.load(handle))
        except FileNotFoundError:
            return LocalState()

    def save(self, state: LocalState) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        temporary = self.path("state.json.new")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            json.dump(asdict(state), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path("state.json"))

    def write(self, name: str, data: bytes) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with open(os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(data)

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as handle:
            return handle.read()

    def has(self, name: str) -> bool:
        return os.path.exists(self.path(name))

    def credentials(self) -> Credentials:
        return Credentials(self.path("ca.crt"), self.path("node.crt"), self.path("node.key"))

    def wipe(self) -> None:
        """Everything of the swarm this node was in (certificates, etcd data); the record goes last."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.etcd_directory)
        for name in ("ca.crt", "ca.key", "node.crt", "node.key"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))
        self.save(LocalState())
