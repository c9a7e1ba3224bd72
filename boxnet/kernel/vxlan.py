"""VXLAN devices and their static forwarding entries, through pyroute2 (cold path: per network and per peer).

Static mode, never flooding: `nolearning proxy`; one forwarding entry per remote MAC (`fdb ... dst VTEP self
permanent`) and one permanent neighbour entry per remote IP, so ARP is answered on the device itself and an
address nobody programmed gets nothing (../shared/notes/multihost-facts.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from boxnet.kernel import links

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
VXLAN_PORT = 4789
ENOENT, ENODEV = 2, 19


@dataclass(frozen=True)
class Peer:
    """A remote endpoint as the local VXLAN device must know it."""

    mac: str
    ip: str  # without prefix length
    vtep: str  # the remote node's underlay address


def ensure_vxlan(name: str, vni: int, local: str, bridge: str, mtu: int) -> None:
    """The VXLAN device, on the bridge and up (made if missing)."""
    with IPRoute() as ipr:
        index = links.link_index(name)
        if index is None:
            ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local, vxlan_port=VXLAN_PORT,
                     vxlan_learning=0, vxlan_proxy=1, mtu=mtu)  # fmt: skip
            index = links.link_index(name)
            assert index is not None
        master = links.link_index(bridge)
        ipr.link("set", index=index, master=master, state="up")


def _underlay_link(local: str) -> Any:
    """The link that holds the node's underlay address (None if none does)."""
    with IPRoute() as ipr:
        for address in ipr.get_addr(family=2):
            if address.get_attr("IFA_ADDRESS") == local:
                return ipr.get_links(address["index"])[0]
    return None


def underlay_mtu(local: str) -> int:
    """The MTU of the interface that holds the node's underlay address."""
    link = _underlay_link(local)
    return link.get_attr("IFLA_MTU") if link is not None else 1500


def underlay_device(local: str) -> str | None:
    """The name of the interface that holds the node's underlay address."""
    link = _underlay_link(local)
    return link.get_attr("IFLA_IFNAME") if link is not None else None


def peers(name: str) -> set[Peer]:
    """What the device has programmed now: (MAC, IP, VTEP) of each permanent entry pair."""
    with IPRoute() as ipr:
        index = links.link_index(name)
        if index is None:
            return set()
        vteps = {f.get_attr("NDA_LLADDR"): f.get_attr("NDA_DST") for f in ipr.fdb("dump", ifindex=index)
                 if f.get_attr("NDA_DST") and f["flags"] & NTF_SELF}  # fmt: skip
        found = set()
        for neighbour in ipr.get_neighbours(ifindex=index):
            mac = neighbour.get_attr("NDA_LLADDR")
            if neighbour["state"] & NUD_PERMANENT and mac in vteps:
                found.add(Peer(mac, neighbour.get_attr("NDA_DST"), vteps[mac]))
        return found


def add_peer(name: str, peer: Peer) -> None:
    with IPRoute() as ipr:
        index = links.link_index(name)
        if index is None:
            return
        ipr.fdb("replace", ifindex=index, lladdr=peer.mac, dst=peer.vtep, state=NUD_PERMANENT, flags=NTF_SELF)
        ipr.neigh("replace", dst=peer.ip, lladdr=peer.mac, ifindex=index, state=NUD_PERMANENT)


def remove_peer(name: str, peer: Peer) -> None:
    """Idempotent: an entry already gone is fine."""
    with IPRoute() as ipr:
        index = links.link_index(name)
        if index is None:
            return
        try:
            ipr.neigh("del", dst=peer.ip, lladdr=peer.mac, ifindex=index)
        except NetlinkError as exc:
            if exc.code not in (ENOENT, ENODEV):
                raise
        try:
            ipr.fdb("del", ifindex=index, lladdr=peer.mac, dst=peer.vtep, flags=NTF_SELF)
        except NetlinkError as exc:
            if exc.code not in (ENOENT, ENODEV):
                raise
