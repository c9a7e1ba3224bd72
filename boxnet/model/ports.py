"""Published ports: parsing docker's -p syntax and checking for clashes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from boxnet.errors import InvalidArgument

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""  # "" means every address of the host
    host_port: int = 0  # 0 means "choose a free one"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.host_ip, self.protocol, self.host_port)

    def clashes_with(self, other: PortMapping) -> bool:
        if self.protocol != other.protocol or self.host_port != other.host_port:
            return False
        return not self.host_ip or not other.host_ip or self.host_ip == other.host_ip

    def to_dict(self) -> dict[str, object]:
        return {
            "container_port": self.container_port,
            "protocol": self.protocol,
            "host_ip": self.host_ip,
            "host_port": self.host_port,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PortMapping:
        return cls(**data)


def _port(raw: str, what: str, allow_zero: bool = False) -> int:
    if not raw.isdigit():
        raise InvalidArgument(f"invalid {what} {raw!r}: not a number")
    value = int(raw)
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise InvalidArgument(f"invalid {what} {raw!r}: must be between 1 and 65535")
    return value


def parse_port_spec(spec: str) -> PortMapping:
    """Parses `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]` (IPv6 host addresses in brackets)."""
    body, _, protocol = spec.partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {protocol!r} in {spec!r}: use tcp, udp or sctp")
    host_ip = ""
    if body.startswith("["):
        closing = body.find("]")
        if closing < 0 or body[closing + 1 : closing + 2] != ":":
            raise InvalidArgument(f"invalid port specification {spec!r}")
        host_ip, body = body[1:closing], body[closing + 2 :]
    parts = body.split(":")
    if len(parts) == 3:
        host_ip, host_port_raw, container_raw = parts
    elif len(parts) == 2:
        host_port_raw, container_raw = parts
    elif len(parts) == 1:
        host_port_raw, container_raw = "", parts[0]
    else:
        raise InvalidArgument(f"invalid port specification {spec!r}")
    if "-" in container_raw or "-" in host_port_raw:
        raise InvalidArgument(f"port ranges are not supported yet: {spec!r}")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidArgument(f"invalid host address {host_ip!r} in {spec!r}") from None
        if host_ip in ("0.0.0.0", "::"):
            host_ip = ""
    container_port = _port(container_raw, "container port")
    host_port = _port(host_port_raw, "host port") if host_port_raw else 0
    return PortMapping(container_port, protocol, host_ip, host_port)


def find_clash(new: list[PortMapping], existing: list[PortMapping]) -> tuple[PortMapping, PortMapping] | None:
    for index, mapping in enumerate(new):
        if not mapping.host_port:
            continue
        for other in list(existing) + new[:index]:
            if other.host_port and mapping.clashes_with(other):
                return mapping, other
    return None
