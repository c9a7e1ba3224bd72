"""Container names in tcpdump filters: `host es02 and port 9300` becomes `host 172.18.0.3 and port 9300`."""

from __future__ import annotations

import re

from boxnet.errors import InvalidArgument

# Words of the pcap-filter language: a container that happens to be called `host` stays a keyword.
KEYWORDS = frozenset((
    "and", "or", "not", "host", "net", "port", "portrange", "src", "dst", "ether", "ip", "ip6", "arp", "rarp",
    "tcp", "udp", "icmp", "icmp6", "proto", "gateway", "broadcast", "multicast", "less", "greater", "len",
    "inbound", "outbound", "vlan", "mpls", "link", "sctp", "igmp", "pim", "vrrp", "carp", "ah", "esp", "decnet",
    "lat", "mopdl", "moprc", "iso", "stp", "ipx", "netbeui", "atalk", "aarp", "sca", "clnp", "esis", "isis", "l1",
    "l2", "iih", "lsp", "snp", "csnp", "psnp", "protochain", "type", "subtype", "wlan", "dir", "fc", "fddi", "tr",
    "ppp", "slip", "ifname", "on", "rnr", "reason", "rset", "srnr", "action",
))
TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


MAX_SNAPLEN = 262144


def check_filter(bpf: str) -> str:
    """A capture filter as the pcap-filter language writes one: never an option, never a second line."""
    if bpf.lstrip().startswith("-") or any(ord(c) < 32 for c in bpf):
        raise InvalidArgument(f"invalid capture filter {bpf!r}: a pcap-filter expression, such as 'tcp port 80'")
    return bpf


def check_snaplen(snaplen: int) -> int:
    if not 0 < snaplen <= MAX_SNAPLEN:
        raise InvalidArgument(f"invalid snaplen {snaplen}: between 1 and {MAX_SNAPLEN} bytes")
    return snaplen


def substitute_names(bpf: str, addresses: dict[str, list[str]]) -> str:
    """Replaces each word that is a container's name by its address, or `(a or b)` for several."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        found = addresses.get(word)
        if word in KEYWORDS or not found:
            return word
        return found[0] if len(found) == 1 else "(" + " or ".join(found) + ")"

    return TOKEN.sub(replace, bpf)
