"""boxnet's `bridge boxnet` table: what may enter a bridge from a container's port.

A container is a tenant: with Docker's default capabilities (NET_RAW among them) it can write any frame it
likes. Each container port (the host end of its veth) is pinned to its own identity, by set elements keyed
by the port's name, so that a port costs one element per set and no rule:

- frames must carry the port's own source MAC;
- ARP must claim the port's own MAC and IPv4 address (an ARP probe, from 0.0.0.0, is let through: Linux
  learns nothing from it);
- IPv4 must come from the port's address, IPv6 from one of its own (its address and its EUI-64 link-local;
  the unspecified address only for MLD reports and duplicate address detection of its own address);
- neighbour advertisements must name one of the port's own addresses as target, and its own MAC as the
  link-layer address; neighbour solicitations, its own MAC;
- no router advertisement, redirect or router renumbering leaves a container (CVE-2020-13401), and no
  other ethertype either (VLAN-tagged frames included);
- frames to the 802.1D link-local groups (01:80:c2:00:00:0X), which skip the bridge's prerouting hook, are
  dropped on input (the bridges' group_fwd_mask sends LLDP's, which skips every hook, through prerouting).

Also here: icc off (enable_icc=false), as a set of the ports of such networks: a frame between two ports of
one bridge reaches the inet hooks only with br_netfilter, while this table sees every frame.

Raw payload matches in concatenations need `typeof` sets (nft 1.0.6), so the ND sets hold the addresses as
raw bytes; kernel/nfnl.py adds and removes every set's elements of a port in one transaction.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from boxnet.kernel import nfnl

TABLE = "boxnet"
TB = f"bridge {TABLE}"
_SAFE_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# The bridges' group_fwd_mask: forward LLDP's 01:80:c2:00:00:0e through the hooks (bit 14).
GROUP_FWD_MASK = 1 << 14


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with this MAC (addr_gen_mode 0)."""
    octets = bytearray(int(part, 16) for part in mac.split(":"))
    octets[0] ^= 0x02
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])))


@dataclass(frozen=True)
class PortGuard:
    """One container port and the identity it is held to."""

    veth: str
    mac: str
    ipv4: str = ""  # addresses, no prefix length
    ipv6: str = ""
    icc_off: bool = False

    def __post_init__(self) -> None:
        if not _SAFE_IFNAME.match(self.veth) or not _MAC.match(self.mac):
            raise ValueError(f"unsafe port {self.veth!r} or MAC {self.mac!r}")
        for address in (self.ipv4, self.ipv6):
            if address:
                ipaddress.ip_address(address)

    @property
    def ipv6_addresses(self) -> list[str]:
        return [self.ipv6, link_local(self.mac)] if self.ipv6 else []

    def text_elements(self) -> dict[str, list[str]]:
        """Each set's elements for this port, as nft writes them."""
        port = f'"{self.veth}"'
        elements = {"guard_ports": [port], "port_mac": [f"{port} . {self.mac}"],
                    "port_nd_lladdr": [f"{port} . 0x{self.mac.replace(':', '')}"]}  # fmt: skip
        if self.ipv4:
            elements["port_ip4"] = [f"{port} . {self.ipv4}"]
        if self.ipv6:
            elements["port_ip6"] = [f"{port} . {a}" for a in self.ipv6_addresses]
            elements["port_nd_target"] = [f"{port} . 0x{ipaddress.IPv6Address(a).packed.hex()}"
                                          for a in self.ipv6_addresses]  # fmt: skip
        if self.icc_off:
            elements["icc_off_ports"] = [port]
        return elements

    def register_elements(self) -> list[tuple[str, list[tuple[bytes, bytes | None]]]]:
        """The same, as the kernel stores the keys (for kernel/nfnl.py)."""
        port = nfnl.register_ifname(self.veth)
        mac = bytes(int(part, 16) for part in self.mac.split(":"))
        groups: list[tuple[str, list[bytes]]] = [("guard_ports", [port]),
                                                 ("port_mac", [port + nfnl.pad(mac)]),
                                                 ("port_nd_lladdr", [port + nfnl.pad(mac)])]  # fmt: skip
        if self.ipv4:
            groups.append(("port_ip4", [port + ipaddress.IPv4Address(self.ipv4).packed]))
        if self.ipv6:
            packed = [ipaddress.IPv6Address(a).packed for a in self.ipv6_addresses]
            groups += [("port_ip6", [port + p for p in packed]), ("port_nd_target", [port + p for p in packed])]
        if self.icc_off:
            groups.append(("icc_off_ports", [port]))
        return [(name, [(key, None) for key in keys]) for name, keys in groups]


def skeleton() -> list[str]:
    rule = f"add rule {TB}"
    return [
        f"add table {TB}",
        f"add set {TB} guard_ports {{ type ifname; }}",
        f"add set {TB} port_mac {{ type ifname . ether_addr; }}",
        f"add set {TB} port_ip4 {{ type ifname . ipv4_addr; }}",
        f"add set {TB} port_ip6 {{ type ifname . ipv6_addr; }}",
        f"add set {TB} port_nd_target {{ typeof iifname . @th,64,128; }}",
        f"add set {TB} port_nd_lladdr {{ typeof iifname . @th,208,48; }}",
        f"add set {TB} icc_off_ports {{ type ifname; }}",
        f"add chain {TB} guard_pre {{ type filter hook prerouting priority filter; policy accept; }}",
        f"add chain {TB} guard_in {{ type filter hook input priority filter; policy accept; }}",
        f"add chain {TB} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"add chain {TB} guard",
        f"add chain {TB} guard_arp",
        f"add chain {TB} guard_ip4",
        f"add chain {TB} guard_ip6",
        f"add chain {TB} guard_ip6_unspec",
        f"add chain {TB} guard_na",
        f"add chain {TB} guard_ns",
        f"{rule} guard_pre iifname @guard_ports jump guard",
        f'{rule} guard_in iifname @guard_ports ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 counter drop '
        'comment "link-local group frame from a container"',
        f'{rule} guard iifname . ether saddr != @port_mac counter drop comment "spoofed source MAC"',
        f"{rule} guard ether type vmap {{ arp : goto guard_arp, ip : goto guard_ip4, ip6 : goto guard_ip6 }}",
        f'{rule} guard counter drop comment "other ethertype (VLAN-tagged included)"',
        f'{rule} guard_arp arp htype != 1 counter drop comment "spoofed ARP"',
        f'{rule} guard_arp arp ptype != ip counter drop comment "spoofed ARP"',
        f'{rule} guard_arp arp hlen != 6 counter drop comment "spoofed ARP"',
        f'{rule} guard_arp arp plen != 4 counter drop comment "spoofed ARP"',
        f'{rule} guard_arp iifname . arp saddr ether != @port_mac counter drop comment "spoofed ARP"',
        f"{rule} guard_arp iifname . arp saddr ip @port_ip4 accept",
        f'{rule} guard_arp arp operation request arp saddr ip 0.0.0.0 accept comment "ARP probe"',
        f'{rule} guard_arp counter drop comment "spoofed ARP"',
        f'{rule} guard_ip4 iifname . ip saddr != @port_ip4 counter drop comment "spoofed IPv4 source"',
        f"{rule} guard_ip6 icmpv6 type {{ nd-router-advert, nd-redirect, router-renumbering }} counter drop "
        'comment "router advertisement from a container"',
        f"{rule} guard_ip6 ip6 saddr :: goto guard_ip6_unspec",
        f'{rule} guard_ip6 iifname . ip6 saddr != @port_ip6 counter drop comment "spoofed IPv6 source"',
        f"{rule} guard_ip6 icmpv6 type nd-neighbor-advert goto guard_na",
        f"{rule} guard_ip6 icmpv6 type nd-neighbor-solicit goto guard_ns",
        f"{rule} guard_ip6_unspec icmpv6 type {{ mld-listener-report, mld2-listener-report }} accept",
        f"{rule} guard_ip6_unspec icmpv6 type nd-neighbor-solicit iifname . @th,64,128 @port_nd_target accept",
        f'{rule} guard_ip6_unspec counter drop comment "spoofed IPv6 source"',
        f'{rule} guard_na iifname . @th,64,128 != @port_nd_target counter drop comment "spoofed neighbour '
        'advertisement"',
        f"{rule} guard_na ip6 length 24 accept",
        f"{rule} guard_na @th,192,16 0x0201 iifname . @th,208,48 @port_nd_lladdr accept",
        f'{rule} guard_na counter drop comment "spoofed neighbour advertisement"',
        f"{rule} guard_ns ip6 length 24 accept",
        f"{rule} guard_ns @th,192,16 0x0101 iifname . @th,208,48 @port_nd_lladdr accept",
        f'{rule} guard_ns counter drop comment "spoofed neighbour solicitation"',
        f'{rule} forward iifname @icc_off_ports meta protocol {{ ip, ip6 }} counter drop comment "icc off"',
    ]


def add_ports(guards: list[PortGuard]) -> list[str]:
    by_set: dict[str, list[str]] = {}
    for guard in guards:
        for name, elements in guard.text_elements().items():
            by_set.setdefault(name, []).extend(elements)
    return [f"add element {TB} {name} {{ {', '.join(elements)} }}" for name, elements in sorted(by_set.items())]


def delete_table() -> list[str]:
    return [f"add table {TB}", f"delete table {TB}"]
