"""A container's own /etc/hosts, /etc/resolv.conf and /etc/hostname."""

from __future__ import annotations

import ipaddress
import os

HOSTS_HEADER = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts_file(hostname: str, addresses: list[str]) -> str:
    lines = [HOSTS_HEADER]
    for cidr in addresses:
        lines.append(f"{ipaddress.ip_interface(cidr).ip}\t{hostname}\n")
    return "".join(lines)


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver" and values:
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            search = values
        elif keyword == "options":
            options.extend(values)
    return nameservers, search, options


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def container_resolv_conf(host_text: str, dns: list[str] | None = None, search: list[str] | None = None,
                          options: list[str] | None = None) -> str:  # fmt: skip
    """The host's resolv.conf, as Docker copies it for the default bridge: loopback servers left out
    (they would mean the container itself); none left means none, not a guess. --dns, --dns-search and
    --dns-option replace the host's lines."""
    nameservers, host_search, host_options = parse_resolv_conf(host_text)
    servers = dns or [ns for ns in nameservers if not _is_loopback(ns)]
    return _render([f"nameserver {ns}" for ns in servers], search or host_search, options or host_options)


def embedded_resolv_conf(host_text: str, search: list[str] | None = None,
                         options: list[str] | None = None) -> str:  # fmt: skip
    """For a user-defined network: the embedded resolver, ndots:0 as Docker sets it, and the host's (or the
    container's own) search domains and other options."""
    _, host_search, host_options = parse_resolv_conf(host_text)
    chosen = [o for o in (options or host_options) if not o.startswith("ndots:")]
    return _render(["nameserver 127.0.0.11"], search or host_search, ["ndots:0", *chosen])


def _render(nameservers: list[str], search: list[str], options: list[str]) -> str:
    lines = list(nameservers)
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


def write_file(path: str, content: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
