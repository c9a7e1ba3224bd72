"""`boxnet topology`: every network and container as the kernel has them right now, joined with the ledger.

Interfaces are read from the kernel inside each container's namespace; the host end of each veth is found
by the peer index the container's interface reports (IFLA_LINK), not taken on trust from the ledger, so the
answer to "which veth is this container's" (moby #17064) is the kernel's own. The rules listed for a
container are the ones boxnet owns that decide its traffic, with their packet counters (moby #781).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from boxnet.dns import redirect
from boxnet.drivers import registry as drivers
from boxnet.engine.view import EngineView
from boxnet.kernel import links, netns, nft
from boxnet.model.container import Container
from boxnet.model.network import Network

CHAIN = re.compile(r"^\s*chain (\S+) \{")
COUNTER = re.compile(r"counter packets (\d+) bytes (\d+)")
HANDLE = re.compile(r"\s*# handle \d+\s*$")


def parse_rules(listing: str, table: str) -> list[dict[str, Any]]:
    """The rules of an `nft list table` listing: chain, text (no handle), packets and bytes if counted."""
    rules: list[dict[str, Any]] = []
    chain = ""
    for line in listing.splitlines():
        match = CHAIN.match(line)
        if match:
            chain = match.group(1)
            continue
        text = line.strip()
        if not chain or not text or text == "}" or text.startswith(("type ", "policy ")):
            if text == "}":
                chain = ""
            continue
        text = HANDLE.sub("", text)
        counted = COUNTER.search(text)
        text = COUNTER.sub("counter", text)  # the numbers go in their own fields
        rules.append({"Table": table, "Chain": chain, "Rule": text,
                      "Packets": int(counted.group(1)) if counted else None,
                      "Bytes": int(counted.group(2)) if counted else None})  # fmt: skip
    return rules


class Topology:
    def __init__(self, view: EngineView) -> None:
        self.view = view
        self.registry = view

    def build(self) -> dict[str, Any]:
        with self.view.lock:
            host_links = {link["index"]: link for link in links.interfaces()}
            by_name = {link["name"]: link for link in host_links.values()}
            host_rules = parse_rules(nft.list_text("table inet boxnet"), "inet boxnet")
            host_rules += parse_rules(nft.list_text("table bridge boxnet"), "bridge boxnet")
            networks = [self._network(n, by_name) for n in self.registry.networks.values()]
            containers = [self._container(c, host_links, host_rules) for c in self.registry.containers.values()
                          if c.state.status == "running"]  # fmt: skip
            host = self._host(host_links)
        return {"Networks": networks, "Containers": containers, "Host": host}

    def _host(self, host_links: dict[int, dict]) -> dict[str, Any]:
        """The way out: the host's interfaces that are not boxnet's bridges and veths, with addresses."""
        ours = {name for n in self.registry.networks.values() for name in (n.bridge, *drivers.of(n).devices(n).values())
                if name}  # fmt: skip
        cluster = self.view.cluster_devices()
        uplinks = [{"Name": link["name"], "Ifindex": link["index"], "Addresses": link["addresses"]}
                   for link in host_links.values() if link["name"] != "lo" and link["addresses"]
                   and link["name"] not in ours | cluster
                   and not link["name"].startswith(("br-", "veth", "boxnet"))]  # fmt: skip
        redirect = self.view.connect_redirect
        redirected = [{"HostIp": host[0], "HostPort": host[1], "To": f"{to[0]}:{to[1]}"}
                      for host, to in sorted(redirect.published().items())]  # fmt: skip
        return {"Uplinks": uplinks,
                "ConnectRedirect": {"Enabled": redirect.enabled, "Reason": redirect.reason or redirect.held,
                                    "Ports": redirected}}  # fmt: skip

    def _network(self, network: Network, by_name: dict[str, dict]) -> dict[str, Any]:
        bridge = by_name.get(network.bridge or "")
        members = [c.name for c in self.registry.containers_on(network.id) if c.state.status == "running"]
        devices = drivers.of(network).devices(network)
        return {
            "Name": network.name, "Id": network.id, "Driver": network.driver, "Bridge": network.bridge or "",
            "Devices": {role: {"Name": name, "Ifindex": by_name[name]["index"] if name in by_name else 0}
                        for role, name in devices.items()},
            "BridgeIfindex": bridge["index"] if bridge else 0, "Subnets": [s.subnet for s in network.subnets],
            "Gateways": [s.gateway for s in network.subnets], "Internal": network.internal, "Icc": network.icc,
            "Containers": members,
        }  # fmt: skip

    def _container(self, container: Container, host_links: dict[int, dict],
                   host_rules: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        owner = self.registry.netns_owner(container)
        interfaces: list[dict[str, Any]] = []
        dns_rules: list[dict[str, Any]] = []
        if container.network_mode != "host" and owner.sandbox_key:
            inside, listing = netns.run_in(owner.sandbox_key, _inside_view)
            dns_rules = parse_rules(listing, f"ip {redirect.TABLE} (in the container)")
            interfaces = [self._interface(owner, link, host_links) for link in inside if link["name"] != "lo"]
        return {
            "Name": container.name, "Id": container.id, "Pid": container.state.pid,
            "Netns": owner.sandbox_key if container.network_mode != "host" else "(the host's)",
            "NetnsName": owner.netns_name, "NetworkMode": container.network_mode, "Interfaces": interfaces,
            "Ports": [{"HostIp": p.host_ip or "0.0.0.0", "HostPort": p.host_port,
                       "ContainerPort": p.container_port, "Protocol": p.protocol}
                      for p in owner.published_ports],
            "Rules": self._rules(owner, host_rules) + dns_rules,
        }  # fmt: skip

    def _interface(self, container: Container, link: dict, host_links: dict[int, dict]) -> dict[str, Any]:
        endpoint = next((e for e in container.endpoints.values() if e.ifname == link["name"]), None)
        network = self.registry.networks.get(endpoint.network_id) if endpoint else None
        # A veth's IFLA_LINK is its host end; a macvlan's, its parent on the host.
        other = host_links.get(link["peer"]) if link["peer"] else None
        veth = other if link["kind"] == "veth" else None
        bridge = host_links.get(veth["master"]) if veth and veth["master"] else None
        return {
            "Name": link["name"], "Ifindex": link["index"], "Kind": link["kind"], "Mac": link["mac"],
            "Addresses": link["addresses"], "Network": network.name if network else "",
            "HostVeth": veth["name"] if veth else "", "HostVethIfindex": veth["index"] if veth else 0,
            "Bridge": bridge["name"] if bridge else "", "LedgerHostVeth": endpoint.host_veth if endpoint else "",
            "Parent": other["name"] if other and link["kind"] == "macvlan" else "",
        }  # fmt: skip

    def _rules(self, container: Container, host_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Its networks' chains, and any other rule naming its address or its veths."""
        chains, needles = set(), set()
        for endpoint in container.endpoints.values():
            network = self.registry.networks.get(endpoint.network_id)
            rules = drivers.of(network).firewall_rules(network) if network is not None else None
            if rules is not None:
                chains.add(rules.chain)
            if endpoint.host_veth:
                needles.add(f'"{endpoint.host_veth}"')
            for cidr in (endpoint.ipv4, endpoint.ipv6):
                if cidr:
                    needles.add(str(ipaddress.ip_interface(cidr).ip))
        return [rule for rule in host_rules
                if rule["Chain"] in chains or any(_mentions(rule["Rule"], n) for n in needles)]  # fmt: skip


def _mentions(text: str, needle: str) -> bool:
    return re.search(r"(?<![\w.:])" + re.escape(needle) + r"(?![\w.])", text) is not None


def _inside_view() -> tuple[list[dict], str]:
    return links.interfaces(), nft.list_text(f"table ip {redirect.TABLE}")
