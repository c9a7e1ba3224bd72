"""Which address a node advertises to the others (Docker's --advertise-addr rules)."""

from __future__ import annotations

import ipaddress

from boxnet.errors import InvalidArgument
from boxnet.kernel import links


def local_ipv4(exclude: set[str]) -> dict[str, list[str]]:
    """The host's global IPv4 addresses by interface, without loopback and the interfaces in exclude."""
    found: dict[str, list[str]] = {}
    for link in links.interfaces():
        if link["name"] == "lo" or link["name"] in exclude:
            continue
        for cidr in link["addresses"]:
            address = ipaddress.ip_interface(cidr).ip
            if address.version == 4 and not address.is_loopback and not address.is_link_local:
                found.setdefault(link["name"], []).append(str(address))
    return found


def choose(requested: str, default_port: int, exclude: set[str]) -> tuple[str, int]:
    """(address, port) from "", "IP", "IP:PORT", "IFACE" or "IFACE:PORT"."""
    candidates = local_ipv4(exclude)
    host, port = requested, default_port
    if requested.count(":") == 1:
        host, _, raw_port = requested.partition(":")
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise InvalidArgument(f"invalid advertise address {requested!r}: bad port")
        port = int(raw_port)
    if not host:
        everything = sorted({a for addresses in candidates.values() for a in addresses})
        if len(everything) != 1:
            listing = ", ".join(f"{a} on {name}" for name, addresses in sorted(candidates.items()) for a in addresses)
            raise InvalidArgument("could not choose an IP address to advertise since this system has "
                                  f"{'no' if not everything else 'several'} addresses ({listing or 'none'}): "
                                  "give one with --advertise-addr")  # fmt: skip
        return everything[0], port
    if host in candidates:
        return candidates[host][0], port
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise InvalidArgument(f"advertise address {host!r} is neither an IP address nor an interface with one") \
            from None  # fmt: skip
    if not any(address in addresses for addresses in candidates.values()):
        raise InvalidArgument(f"advertise address {address} is not an address of this host")
    return address, port
