"""Services, as Docker's ServiceSpec describes them, and the constraints that place their tasks."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from boxnet.errors import Exhausted, InvalidArgument
from boxnet.model.names import check_object_name

MODES = ("replicated", "global")
ENDPOINT_MODES = ("vip", "dnsrr")
_CONSTRAINT = re.compile(r"^\s*(node\.(?:id|hostname|role|labels\.[A-Za-z0-9_.-]+))\s*(==|!=)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class NodeFacts:
    """What a constraint may ask of a node."""

    id: str
    hostname: str
    role: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Constraint:
    key: str  # node.id | node.hostname | node.role | node.labels.K
    op: str  # == | !=
    value: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if not match:
            raise InvalidArgument(f"constraint {text!r}: expected node.id, node.hostname, node.role or "
                                  "node.labels.KEY, then == or !=, then a value")  # fmt: skip
        key, op, value = match.groups()
        if key == "node.role" and value not in ("manager", "worker"):
            raise InvalidArgument(f"constraint {text!r}: a node's role is manager or worker")
        return cls(key, op, value)

    def holds(self, node: NodeFacts) -> bool:
        if self.key.startswith("node.labels."):
            actual: str | None = node.labels.get(self.key[len("node.labels."):])
        else:
            actual = {"node.id": node.id, "node.hostname": node.hostname, "node.role": node.role}[self.key]
        return (actual == self.value) if self.op == "==" else (actual != self.value)

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


# The label that makes a container a service's task (Docker's).
TASK_LABEL = "com.docker.swarm.task.id"


@dataclass(frozen=True)
class PublishedPort:
    target: int
    published: int  # 0 until the swarm assigns one from DYNAMIC_PORTS
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.published}/{self.protocol}"


# Where a port published without a number is taken from (Docker's range).
DYNAMIC_PORTS = range(30000, 32768)
# Published on every node, these would capture the swarm's own traffic on the underlay.
SWARM_PORTS = {("tcp", 2377): "the swarm's join port", ("tcp", 2379): "etcd's client port",
               ("tcp", 2380): "etcd's peer port", ("udp", 4789): "the VXLAN port"}  # fmt: skip


def assign_ports(ports: list[PublishedPort], before: list[PublishedPort], taken: set[tuple[str, int]]
                 ) -> list[PublishedPort]:  # fmt: skip
    """The ports with a published number each: one asked for as 0 keeps the number it had (same target and
    protocol in `before`), else takes the first free one of DYNAMIC_PORTS (not in `taken`, nor in these)."""
    had = {(p.protocol, p.target): p.published for p in before}
    used = set(taken) | {(p.protocol, p.published) for p in ports if p.published}
    assigned = []
    for port in ports:
        number = port.published
        if not number:
            kept = had.get((port.protocol, port.target), 0)
            number = kept if kept and (port.protocol, kept) not in used else \
                next((n for n in DYNAMIC_PORTS if (port.protocol, n) not in used), 0)  # fmt: skip
            if not number:
                raise Exhausted(f"no free port left in {DYNAMIC_PORTS.start}-{DYNAMIC_PORTS.stop - 1}")
        used.add((port.protocol, number))
        assigned.append(PublishedPort(port.target, number, port.protocol))
    return assigned


@dataclass
class ServiceSpec:
    name: str
    image: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    container_labels: dict[str, str] = field(default_factory=dict)
    mode: str = "replicated"
    replicas: int = 1
    networks: list[str] = field(default_factory=list)
    endpoint_mode: str = "vip"
    constraints: list[str] = field(default_factory=list)
    ports: list[PublishedPort] = field(default_factory=list)
    # Docker's UpdateConfig and RollbackConfig: tasks replaced at once (0: all), seconds between batches, and
    # seconds a batch must have run before the next (Monitor: here a batch's tasks must run for it, not only
    # start). FailureAction is pause (a batch whose tasks do not run holds the update), Order stop-first.
    update_parallelism: int = 1
    update_delay: float = 0.0
    update_monitor: float = 0.0
    rollback_parallelism: int = 1
    rollback_delay: float = 0.0
    rollback_monitor: float = 0.0

    def validate(self) -> None:
        check_object_name("service", self.name)
        if not self.image:
            raise InvalidArgument("a service needs an image")
        if self.mode not in MODES:
            raise InvalidArgument(f"service mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.endpoint_mode not in ENDPOINT_MODES:
            raise InvalidArgument(f"endpoint mode {self.endpoint_mode!r}: one of {', '.join(ENDPOINT_MODES)}")
        if self.mode == "replicated" and not 0 <= self.replicas <= 1000:
            raise InvalidArgument(f"replicas: {self.replicas} is not from 0 to 1000")
        if self.endpoint_mode == "dnsrr" and self.ports:
            raise InvalidArgument("published ports need --endpoint-mode vip (as in Docker: the routing mesh "
                                  "balances over the virtual address)")  # fmt: skip
        if min(self.update_parallelism, self.update_delay, self.update_monitor, self.rollback_parallelism,
               self.rollback_delay, self.rollback_monitor) < 0:  # fmt: skip
            raise InvalidArgument("update and rollback parallelism, delay and monitor cannot be negative")
        published = set()
        for port in self.ports:
            if port.protocol not in ("tcp", "udp") or not 0 < port.target < 65536 or not 0 <= port.published < 65536:
                raise InvalidArgument(f"published port {port.published}:{port.target}/{port.protocol} is invalid")
            if (port.protocol, port.published) in SWARM_PORTS:
                raise InvalidArgument(f"port {port} cannot be published: it is "
                                      f"{SWARM_PORTS[(port.protocol, port.published)]}, on every node")  # fmt: skip
            if port.published and (port.protocol, port.published) in published:
                raise InvalidArgument(f"port {port} is published twice")
            published.add((port.protocol, port.published))
        for text in self.constraints:
            Constraint.parse(text)

    def placement(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.constraints]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceSpec:
        data = dict(data)
        data["ports"] = [PublishedPort(**p) for p in data.get("ports", [])]
        return cls(**data)


def task_spec(spec: ServiceSpec) -> dict[str, Any]:
    """What one task runs, written into the task when the leader makes it (as Docker's tasks carry their spec):
    the task runs it, and shows it, whatever the service's spec became since."""
    return {"image": spec.image, "args": list(spec.args), "env": list(spec.env),
            "container_labels": dict(spec.container_labels)}  # fmt: skip
