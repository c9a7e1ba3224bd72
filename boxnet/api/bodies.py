"""Docker Engine API request bodies, turned into boxnet's requests (and validated on the way)."""

from __future__ import annotations

from typing import Any

from boxnet.engine.containers import ContainerRequest
from boxnet.errors import InvalidArgument
from boxnet.model.network import NetworkRequest
from boxnet.model.ports import PROTOCOLS, PortMapping


def _dict(body: Any, key: str) -> dict:
    value = body.get(key) if isinstance(body, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{key} must be an object")
    return value


def network_request(body: dict[str, Any]) -> NetworkRequest:
    if not isinstance(body, dict) or not body.get("Name"):
        raise InvalidArgument("network name is required")
    ipam = _dict(body, "IPAM")
    if ipam.get("Driver") not in (None, "", "default"):
        raise InvalidArgument(f"unknown IPAM driver {ipam.get('Driver')!r}; only the default is supported")
    subnets, gateways, ranges = [], [], []
    for entry in ipam.get("Config") or []:
        if entry.get("AuxiliaryAddresses"):
            raise InvalidArgument("auxiliary addresses are not supported")
        if not entry.get("Subnet"):
            if entry.get("Gateway") or entry.get("IPRange"):
                raise InvalidArgument("a gateway or IP range needs a subnet")
            continue
        subnets.append(entry["Subnet"])
        gateways.append(entry.get("Gateway") or "")
        ranges.append(entry.get("IPRange") or "")
    return NetworkRequest(
        name=body["Name"], driver=body.get("Driver") or "bridge", subnets=subnets, gateways=gateways,
        ip_ranges=ranges, enable_ipv6=bool(body.get("EnableIPv6")), internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")), options=dict(body.get("Options") or {}),
        labels=dict(body.get("Labels") or {}),
    )  # fmt: skip


def _port_key(key: str) -> tuple[int, str]:
    port, _, protocol = key.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {protocol!r} in port {key!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"invalid container port {port!r}")
    return int(port), protocol


def port_bindings(bindings: dict[str, Any] | None) -> list[PortMapping]:
    mappings = []
    for key, entries in (bindings or {}).items():
        container_port, protocol = _port_key(key)
        for entry in entries or [{}]:
            host_port = str(entry.get("HostPort") or "")
            if host_port and (not host_port.isdigit() or not 1 <= int(host_port) <= 65535):
                raise InvalidArgument(f"invalid host port {host_port!r} for {key}")
            host_ip = entry.get("HostIp") or ""
            mappings.append(PortMapping(container_port, protocol, "" if host_ip in ("0.0.0.0", "::") else host_ip,
                                        int(host_port) if host_port else 0))  # fmt: skip
    return mappings


def _endpoint_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    settings = settings or {}
    ipam = settings.get("IPAMConfig") or {}
    return {"aliases": list(settings.get("Aliases") or []), "ipv4": ipam.get("IPv4Address") or "",
            "ipv6": ipam.get("IPv6Address") or ""}  # fmt: skip


def _console_size(raw: Any) -> list[int]:
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and 0 < v < 10000 for v in raw):
        return [raw[0], raw[1]]
    return []


def container_request(body: dict[str, Any], name: str) -> ContainerRequest:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    host = _dict(body, "HostConfig")
    endpoints = _dict(_dict(body, "NetworkingConfig"), "EndpointsConfig")
    entrypoint = body.get("Entrypoint") or []
    cmd = body.get("Cmd") or []
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if isinstance(cmd, str):
        cmd = [cmd]
    if host.get("Binds") or host.get("Mounts"):
        raise InvalidArgument("volumes and bind mounts are not supported yet")
    if host.get("Privileged"):
        raise InvalidArgument("--privileged is not supported")
    return ContainerRequest(
        name=name, image=body.get("Image") or "host", rootfs=str(body.get("Rootfs") or ""),
        cmd=[*entrypoint, *cmd], env=list(body.get("Env") or []), hostname=body.get("Hostname") or "",
        network_mode=host.get("NetworkMode") or "bridge",
        networks={k: _endpoint_settings(v) for k, v in endpoints.items()},
        ports=port_bindings(host.get("PortBindings")), cap_add=list(host.get("CapAdd") or []),
        cap_drop=list(host.get("CapDrop") or []), pid_mode=host.get("PidMode") or "",
        labels=dict(body.get("Labels") or {}), auto_remove=bool(host.get("AutoRemove")),
        tty=bool(body.get("Tty")), open_stdin=bool(body.get("OpenStdin")), stdin_once=bool(body.get("StdinOnce")),
        console_size=_console_size(host.get("ConsoleSize")),
        working_dir=body.get("WorkingDir") or "", dns=_strings(host, "Dns"),
        dns_search=_strings(host, "DnsSearch"), dns_options=_strings(host, "DnsOptions"),
    )  # fmt: skip


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{key} must be a list of strings")
    return list(value)
