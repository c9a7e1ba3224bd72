"""MAC addresses of container interfaces."""

from __future__ import annotations

import ipaddress
import secrets


def mac_for(ipv4_cidr: str) -> str:
    """Docker's scheme: 02:42 followed by the four bytes of the IPv4 address."""
    packed = ipaddress.ip_interface(ipv4_cidr).ip.packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def random_mac() -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
