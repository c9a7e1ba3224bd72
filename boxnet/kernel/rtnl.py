"""A minimal rtnetlink client for the hot path of attaching a container: a few fixed message shapes.

pyroute2 stays for everything else; its synchronous API runs an asyncio loop per request (about 1 ms),
which alone would exceed the start-up budget. Each request here is one sendto/recv on a socket of the
calling thread's network namespace (a socket keeps the namespace it was made in).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from boxnet.kernel import netlink
from boxnet.kernel.netlink import (
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NetlinkError,
    attr,
    string,
    u32,
)

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
RTMGRP_IPV4_IFADDR = 0x10

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_PROTINFO = 1, 3, 4, 5, 10, 12
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_MACVLAN_MODE = 1
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IFLA_BRPORT_MODE = 4  # hairpin
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
AF_BRIDGE = 7

_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change


def _mac(value: str) -> bytes:
    return bytes(int(part, 16) for part in value.split(":"))


class Rtnl:
    """One netlink socket, in the namespace of the thread that made it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        self._seq += 1
        self._sock.send(netlink.message(kind, flags | NLM_F_ACK, self._seq, body))
        return netlink.read_answer(self._sock, self._seq)

    # ---- links -------------------------------------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        try:
            replies = self._request(RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + string(IFLA_IFNAME, name))
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _IFINFO.unpack_from(replies[0][1])[2] if replies else None

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, master: int, mtu: int | None = None,
                 peer_mac: str | None = None) -> None:  # fmt: skip
        """The pair, with the host end on its bridge (down: the caller brings it up) and the peer born in
        another namespace."""
        peer_attrs = string(IFLA_IFNAME, peer) + u32(IFLA_NET_NS_FD, peer_netns_fd)
        if mtu:
            peer_attrs += u32(IFLA_MTU, mtu)
        if peer_mac:
            peer_attrs += attr(IFLA_ADDRESS, _mac(peer_mac))
        peer_info = attr(VETH_INFO_PEER | NLA_F_NESTED, _IFINFO.pack(0, 0, 0, 0, 0) + peer_attrs)
        linkinfo = string(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA | NLA_F_NESTED, peer_info)
        attrs = string(IFLA_IFNAME, name) + u32(IFLA_MASTER, master) + attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
        if mtu:
            attrs += u32(IFLA_MTU, mtu)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs)

    def add_macvlan(self, name: str, parent: int, netns_fd: int, mode: str, mac: str | None = None) -> None:
        """A macvlan device on `parent` (an index in this namespace), born inside another namespace."""
        data = attr(IFLA_INFO_DATA | NLA_F_NESTED, u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[mode]))
        linkinfo = attr(IFLA_LINKINFO | NLA_F_NESTED, string(IFLA_INFO_KIND, "macvlan") + data)
        attrs = string(IFLA_IFNAME, name) + u32(IFLA_LINK, parent) + u32(IFLA_NET_NS_FD, netns_fd) + linkinfo
        if mac:
            attrs += attr(IFLA_ADDRESS, _mac(mac))
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs)

    def set_hairpin(self, index: int) -> None:
        protinfo = attr(IFLA_PROTINFO | NLA_F_NESTED, attr(IFLA_BRPORT_MODE, b"\x01"))
        self._request(RTM_SETLINK, 0, _IFINFO.pack(AF_BRIDGE, 0, index, 0, 0) + protinfo)

    def set_up(self, index: int) -> None:
        self._request(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP))

    def delete_link(self, name: str) -> bool:
        try:
            self._request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + string(IFLA_IFNAME, name))
            return True
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise

    # ---- addresses and routes ----------------------------------------------------------------------
    def add_address(self, index: int, cidr: str) -> None:
        interface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
        packed = interface.ip.packed
        header = struct.pack("=BBBBI", family, interface.network.prefixlen, 0, 0, index)
        attrs = attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        if interface.version == 6:
            attrs += u32(IFA_FLAGS, IFA_F_NODAD)
        try:
            self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, header + attrs)
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def ipv4_addresses(self) -> set[str]:
        """Every IPv4 address of the namespace, on any interface."""
        self._seq += 1
        self._sock.send(netlink.message(RTM_GETADDR, netlink.NLM_F_DUMP, self._seq,
                                        struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)))  # fmt: skip
        found = set()
        for kind, payload in netlink.read_answer(self._sock, self._seq, "dump addresses"):
            local = netlink.parse_attrs(payload, 8).get(IFA_LOCAL) if kind == RTM_NEWADDR else None
            if local and len(local) == 4:
                found.add(str(ipaddress.IPv4Address(local)))
        return found

    def add_default_route(self, index: int, gateway: str) -> None:
        address = ipaddress.ip_address(gateway)
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        header = struct.pack("=BBBBBBBBI", family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
        try:
            self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                          header + attr(RTA_GATEWAY, address.packed) + u32(RTA_OIF, index))  # fmt: skip
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise
