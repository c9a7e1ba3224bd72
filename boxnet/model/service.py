"""Services, as Docker's ServiceSpec describes them, and the constraints that place their tasks."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from boxnet.errors import InvalidArgument
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


@dataclass(frozen=True)
class PublishedPort:
    target: int
    published: int
    protocol: str = "tcp"


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
        for port in self.ports:
            if port.protocol not in ("tcp", "udp") or not 0 < port.target < 65536 or not 0 <= port.published < 65536:
                raise InvalidArgument(f"published port {port.published}:{port.target}/{port.protocol} is invalid")
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
