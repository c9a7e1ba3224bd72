"""Links, addresses and routes over netlink (pyroute2), in the calling thread's network namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from boxnet.errors import Unsupported
from boxnet.kernel import rtnl

ENODEV = 19
EEXIST = 17
ESRCH = 3
EADDRNOTAVAIL = 99
EOPNOTSUPP = 95


@dataclass(frozen=True)
class Address:
    address: str
    prefixlen: int


def link_index(name: str) -> int | None:
    """One link by name (the kernel looks it up; no dump of every link)."""
    with rtnl.Rtnl() as nl:
        return nl.link_index(name)


def ensure_bridge(name: str, addresses: list[Address], mtu: int | None = None, mac: str | None = None,
                  group_fwd_mask: int = 0) -> int:  # fmt: skip
    """Creates the bridge if missing, adds the missing addresses, and brings it up. Returns its ifindex."""
    with IPRoute() as ipr:
        index = link_index(name)
        if index is None:
            kwargs: dict = {"ifname": name, "kind": "bridge", "br_stp_state": 0, "br_forward_delay": 0,
                            "br_group_fwd_mask": group_fwd_mask}  # fmt: skip
            if mtu:
                kwargs["mtu"] = mtu
            if mac:
                kwargs["address"] = mac
            ipr.link("add", **kwargs)
            index = link_index(name)
            assert index is not None
        # Before it comes up: the bridge's addresses are boxnet's own, so no duplicate address detection (a
        # tentative link-local holds back the neighbour solicitations for forwarded packets, ~1 s for the first
        # connection), and a network without IPv6 gets no IPv6 on its bridge at all.
        ipv6 = any(":" in addr.address for addr in addresses)
        _write_sysctl(f"net/ipv6/conf/{name}/accept_dad", "0")
        _write_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "0" if ipv6 else "1")
        present = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
        for addr in addresses:
            if (addr.address, addr.prefixlen) not in present:
                _add_address(ipr, index, addr)
        ipr.link("set", index=index, state="up")
        return index


def _add_address(ipr: IPRoute, index: int, addr: Address) -> None:
    kwargs: dict = {"index": index, "address": addr.address, "prefixlen": addr.prefixlen}
    if ":" in addr.address:
        kwargs["flags"] = rtnl.IFA_F_NODAD  # usable at once
    try:
        ipr.addr("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise


def create_veth(host_name: str, peer_name: str, peer_netns_path: str, bridge: str, mtu: int | None,
                peer_mac: str | None = None) -> None:  # fmt: skip
    """Makes a veth pair whose peer is born inside the container's namespace, with its MAC; the host end comes
    up attached to the bridge, in hairpin mode (with br_netfilter, a container reaching its own published
    port is DNATed at the bridge and must leave by the port it came in by; Docker does the same)."""
    with _namespace_fd(peer_netns_path) as fd, rtnl.Rtnl() as nl:
        master = nl.link_index(bridge)
        if master is None:
            raise rtnl.NetlinkError(ENODEV, f"bridge {bridge} does not exist")
        nl.add_veth(host_name, peer_name, fd, master, mtu, peer_mac)
        index = nl.link_index(host_name)
        assert index is not None
        # A bridge port needs no address of its own: no IPv6 link-local, no MLD, before it comes up.
        _write_sysctl(f"net/ipv6/conf/{host_name}/disable_ipv6", "1")
        nl.set_hairpin(index)
        nl.set_up(index)


@contextlib.contextmanager
def _namespace_fd(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def create_macvlan(name: str, parent: str, netns_path: str, mode: str, mac: str | None) -> None:
    """A macvlan device on the parent, born inside the container's namespace with its final name."""
    with _namespace_fd(netns_path) as fd, rtnl.Rtnl() as nl:
        index = nl.link_index(parent)
        if index is None:
            raise rtnl.NetlinkError(ENODEV, f"parent interface {parent} does not exist")
        nl.add_macvlan(name, index, fd, mode, mac)


def ensure_vlan(name: str, base: str, vlan_id: int) -> None:
    """An 802.1q sub-interface `name` of `base`, up (made if missing)."""
    with IPRoute() as ipr:
        index = link_index(name)
        if index is None:
            base_index = link_index(base)
            if base_index is None:
                raise rtnl.NetlinkError(ENODEV, f"interface {base} does not exist")
            try:
                ipr.link("add", ifname=name, kind="vlan", link=base_index, vlan_id=vlan_id)
            except NetlinkError as exc:
                if exc.code == EOPNOTSUPP:
                    raise Unsupported(f"cannot make {name}: this kernel has no 802.1q VLAN support (8021q)") from None
                raise
            index = link_index(name)
            assert index is not None
        ipr.link("set", index=index, state="up")


def ensure_master(name: str, bridge: str) -> bool:
    """Re-attaches an existing link to its bridge and brings it up; False when the link is missing."""
    with IPRoute() as ipr:
        index = link_index(name)
        master = link_index(bridge)
        if index is None or master is None:
            return False
        link = ipr.get_links(index)[0]
        if link.get_attr("IFLA_MASTER") != master:
            ipr.link("set", index=index, master=master)
            ipr.brport("set", index=index, mode=1)  # hairpin, as create_veth sets it
        ipr.link("set", index=index, state="up")
        return True


def configure_container_interface(ifname: str, addresses: list[str], gateways: list[str], default_route: bool) -> None:
    """Inside the container's namespace: addresses, up, default routes (the MAC came with the veth)."""
    with rtnl.Rtnl() as nl:
        index = nl.link_index(ifname)
        if index is None:
            raise rtnl.NetlinkError(ENODEV, f"{ifname} is missing in the container namespace")
        if any(":" in cidr for cidr in addresses):
            _write_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")
        for cidr in addresses:
            nl.add_address(index, cidr)
        nl.set_up(index)
        if default_route:
            for gateway in gateways:
                nl.add_default_route(index, gateway)


def route_from_address(ifname: str, cidr: str, gateway: str, table: int) -> None:
    """Inside a namespace: what leaves from this address goes out through ifname, on-link in its subnet and
    to gateway beyond it, whatever the main table routes elsewhere (a source rule and a table of its own)."""
    interface = ipaddress.ip_interface(cidr)
    with IPRoute() as ipr:
        index = link_index(ifname)
        if index is None:
            raise rtnl.NetlinkError(ENODEV, f"{ifname} is missing")
        ipr.route("replace", dst=str(interface.network), oif=index, table=table, scope=253)
        ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index, table=table)
        try:
            ipr.rule("add", src=str(interface.ip), src_len=32, table=table, priority=table)
        except NetlinkError as exc:
            if exc.code != EEXIST:
                raise


def delete_link(name: str) -> bool:
    """Deletes a link by name; False when it was already gone."""
    with rtnl.Rtnl() as nl:
        return nl.delete_link(name)


def link_exists(name: str) -> bool:
    with rtnl.Rtnl() as nl:
        return nl.link_index(name) is not None


def _write_sysctl(key: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{key}", "w") as handle:
            handle.write(value)
    except FileNotFoundError:
        pass  # no IPv6 in this kernel


def prepare_container_namespace() -> None:
    """lo up. Interfaces are born without IPv6, as Docker does for networks without it (no link-local
    address, no MLD reports for every bridge port to hear); an IPv6 network turns it on for its interface.
    No duplicate address detection: a hairpin port reflects a container's own probes back to it. No router
    advertisements taken (CVE-2020-13401): a container's routes are boxnet's, unless it asks otherwise
    with --sysctl net.ipv6.conf.eth0.accept_ra=1."""
    for key, value in (("all/accept_dad", "0"), ("default/accept_dad", "0"), ("default/disable_ipv6", "1"),
                       ("all/accept_ra", "0"), ("default/accept_ra", "0"),
                       # EUI-64 link-locals, whatever the host's defaults: the port guard knows them in advance
                       ("default/addr_gen_mode", "0")):
        _write_sysctl(f"net/ipv6/conf/{key}", value)
    with rtnl.Rtnl() as nl:
        nl.set_up(1)


def route_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations of the routes in this namespace (to keep new subnets clear of them)."""
    found = []
    with IPRoute() as ipr:
        for family in (2, 10):
            for route in ipr.get_routes(family=family, table=254):
                dst = route.get_attr("RTA_DST")
                if dst is None or route["dst_len"] == 0:
                    continue
                try:
                    found.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
                except ValueError:
                    continue
    return found



def interfaces() -> list[dict]:
    """Every link in this namespace: name, index, kind, MAC, state, MTU, master index, peer index (a veth's
    other end, or a macvlan's parent, as IFLA_LINK gives it) and addresses (CIDR)."""
    with IPRoute() as ipr:
        addresses: dict[int, list[str]] = {}
        for addr in ipr.get_addr():
            addresses.setdefault(addr["index"], []).append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        found = []
        for link in ipr.get_links():
            found.append({
                "name": link.get_attr("IFLA_IFNAME"), "index": link["index"], "mac": link.get_attr("IFLA_ADDRESS"),
                "kind": (link.get_attr("IFLA_LINKINFO") or {}).get_attr("IFLA_INFO_KIND") if link.get_attr(
                    "IFLA_LINKINFO") else "",
                "state": link.get_attr("IFLA_OPERSTATE"), "mtu": link.get_attr("IFLA_MTU"),
                "master": link.get_attr("IFLA_MASTER") or 0,
                "peer": link.get_attr("IFLA_LINK") or 0, "addresses": addresses.get(link["index"], []),
            })  # fmt: skip
        return found
