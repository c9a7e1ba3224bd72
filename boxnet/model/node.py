"""A node of the cluster, as the cluster store holds it (written by whoever admitted it, then by managers)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from boxnet.errors import InvalidArgument

ROLES = ("worker", "manager")
AVAILABILITIES = ("active", "pause", "drain")


@dataclass
class Node:
    id: str
    hostname: str
    addr: str  # the advertised underlay address
    role: str
    availability: str = "active"
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""  # Spec.Name, which users may set; Docker shows the hostname
    engine_version: str = ""
    nano_cpus: int = 0
    memory_bytes: int = 0
    created: str = ""
    updated: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Node:
        return cls(**json.loads(text))


def host_resources() -> tuple[int, int]:
    """(NanoCPUs, MemoryBytes) of this host, as a node describes itself."""
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (os.cpu_count() or 1) * 10**9, memory


def check_availability(value: str) -> str:
    if value not in AVAILABILITIES:
        raise InvalidArgument(f"invalid availability {value!r}: one of {', '.join(AVAILABILITIES)}")
    return value
