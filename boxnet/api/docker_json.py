"""Docker Engine API shapes for networks and containers, built from boxnet's records."""

from __future__ import annotations

import ipaddress
import os
import shlex
import time
from datetime import UTC, datetime
from typing import Any

from boxnet.drivers import registry as drivers
from boxnet.engine.view import EngineView
from boxnet.model.container import Container, Endpoint
from boxnet.model.network import Network
from boxnet.model.process import MASKED_PATHS, READONLY_PATHS


def _timestamp(iso: str) -> float:
    try:
        return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _ip(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


def _prefix(cidr: str) -> int:
    return ipaddress.ip_interface(cidr).network.prefixlen if cidr else 0


def network_json(network: Network, registry: EngineView, verbose: bool = True) -> dict[str, Any]:
    containers: dict[str, Any] = {}
    if verbose:
        for container in registry.containers_on(network.id):
            endpoint = container.endpoints[network.id]
            containers[container.id] = {
                "Name": container.name,
                "EndpointID": endpoint.endpoint_id,
                "MacAddress": endpoint.mac,
                "IPv4Address": endpoint.ipv4,
                "IPv6Address": endpoint.ipv6,
            }
    driver = drivers.of(network)
    config = []
    for subnet in network.subnets:
        entry = {"Subnet": subnet.subnet, "Gateway": subnet.gateway}
        if subnet.ip_range:
            entry["IPRange"] = subnet.ip_range
        config.append(entry)
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "swarm" if driver.capabilities.scope == "global" else "local",
        "Driver": network.driver,
        "EnableIPv4": bool(network.ipv4_subnets),
        "EnableIPv6": network.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": network.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {**network.options, **driver.inspect_options(network)},
        "Labels": dict(network.labels),
    }


def _ports_json(container: Container) -> dict[str, Any]:
    ports: dict[str, Any] = {}
    published = container.published_ports if container.state.status == "running" else []
    for mapping in container.ports:
        ports.setdefault(f"{mapping.container_port}/{mapping.protocol}", None)
    for mapping in published:
        ports.setdefault(f"{mapping.container_port}/{mapping.protocol}", None)
        bindings = ports[f"{mapping.container_port}/{mapping.protocol}"] or []
        bindings.append({"HostIp": mapping.host_ip or "0.0.0.0", "HostPort": str(mapping.host_port)})
        ports[f"{mapping.container_port}/{mapping.protocol}"] = bindings
    return ports


def _endpoint_json(network: Network | None, endpoint: Endpoint | None, settings: dict, name: str,
                   short_id: str) -> dict[str, Any]:  # fmt: skip
    aliases = list(settings.get("aliases", []))
    dns_names = [] if network is None or network.is_default_bridge else [name, short_id, *aliases]
    return {
        "IPAMConfig": {"IPv4Address": settings["ipv4"]} if settings.get("ipv4") else None,
        "Links": None,
        "Aliases": aliases or None,
        "MacAddress": endpoint.mac if endpoint else "",
        "DriverOpts": None,
        "NetworkID": network.id if network else "",
        "EndpointID": endpoint.endpoint_id if endpoint else "",
        "Gateway": endpoint.gateway4 if endpoint else "",
        "IPAddress": _ip(endpoint.ipv4) if endpoint else "",
        "IPPrefixLen": _prefix(endpoint.ipv4) if endpoint else 0,
        "IPv6Gateway": endpoint.gateway6 if endpoint else "",
        "GlobalIPv6Address": _ip(endpoint.ipv6) if endpoint else "",
        "GlobalIPv6PrefixLen": _prefix(endpoint.ipv6) if endpoint else 0,
        "DNSNames": dns_names or None,
    }


def _networks_json(container: Container, registry: EngineView) -> dict[str, Any]:
    networks: dict[str, Any] = {}
    if container.network_mode in ("host", "none"):
        network = registry.network_by_name(container.network_mode)
        networks[container.network_mode] = _endpoint_json(network, None, {}, container.name, container.short_id)
        return networks
    for name, settings in container.requested_networks.items():
        network = registry.network_by_name(name)
        endpoint = container.endpoints.get(network.id) if network else None
        networks[name] = _endpoint_json(network, endpoint, settings, container.name, container.short_id)
    return networks


def _state_json(container: Container, restarting: bool = False) -> dict[str, Any]:
    state = container.state
    # "starting" is boxnet's own record of a start in progress; Docker shows such a container as created.
    status = "restarting" if restarting else "created" if state.status == "starting" else state.status
    return {
        "Status": "paused" if state.paused else status,
        "Running": state.status == "running",
        "Paused": state.paused,
        "Restarting": restarting,
        "OOMKilled": False,
        "Dead": state.status == "dead",
        "Pid": state.pid,
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": state.started_at,
        "FinishedAt": state.finished_at,
    }


def container_json(container: Container, registry: EngineView, state_dir: str, restarting: bool = False,
                   volumes_root: str = "") -> dict[str, Any]:  # fmt: skip
    networks = _networks_json(container, registry)
    default = networks.get("bridge") or {}
    process, resources = container.process, container.resources
    ports = _ports_json(container)
    bindings = {
        f"{p.container_port}/{p.protocol}": [{"HostIp": p.host_ip, "HostPort": str(p.host_port or "")}]
        for p in container.ports
    }
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": container.argv[0] if container.argv else "",
        "Args": container.argv[1:],
        "State": _state_json(container, restarting),
        "Image": container.image_id or container.image,
        "ResolvConfPath": os.path.join(state_dir, "resolv.conf"),
        "HostnamePath": os.path.join(state_dir, "hostname"),
        "HostsPath": os.path.join(state_dir, "hosts"),
        "LogPath": os.path.join(state_dir, "container.log"),
        "Name": "/" + container.name,
        "RestartCount": container.restart_count,
        "Driver": "boxnet",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "NetworkMode": container.network_mode,
            "PortBindings": bindings,
            "AutoRemove": container.auto_remove,
            "CapAdd": container.cap_add or None,
            "CapDrop": container.cap_drop or None,
            "Dns": container.dns,
            "DnsSearch": container.dns_search,
            "DnsOptions": container.dns_options,
            "PidMode": container.pid_mode,
            "Privileged": False,
            "RestartPolicy": {"Name": container.restart_policy.name,
                              "MaximumRetryCount": container.restart_policy.maximum_retry_count},
            "LogConfig": {"Type": "json-file", "Config": {}},
            **_host_mounts(container),
            "ReadonlyRootfs": process.read_only,
            "SecurityOpt": ["no-new-privileges"] if process.no_new_privileges else None,
            "Sysctls": process.sysctls or None,
            "GroupAdd": process.group_add or None,
            "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in process.ulimits] or None,
            "Devices": [{"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container,
                         "CgroupPermissions": d.permissions} for d in process.devices] or None,
            "OomScoreAdj": process.oom_score_adj,
            "ShmSize": process.shm_size or 64 * 1024 * 1024,
            "ExtraHosts": container.extra_hosts or None,
            "Memory": resources.memory,
            "NanoCpus": resources.nano_cpus,
            "CpuShares": resources.cpu_shares,
            "CpuPeriod": resources.cpu_period,
            "CpuQuota": resources.cpu_quota,
            "PidsLimit": resources.pids_limit or None,
            "MaskedPaths": list(MASKED_PATHS) if process.masked_paths is None else process.masked_paths,
            "ReadonlyPaths": list(READONLY_PATHS) if process.readonly_paths is None else process.readonly_paths,
        },
        "Config": {
            "Hostname": container.hostname,
            "Domainname": "",
            "User": process.user,
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": {port: {} for port in exposed_ports(container)} or None,
            "Tty": container.tty,
            "OpenStdin": container.open_stdin,
            "StdinOnce": False,
            "Env": container.env,
            "Cmd": container.cmd,
            "Image": container.image,
            "WorkingDir": container.working_dir,
            "Entrypoint": container.entrypoint or None,
            "Labels": dict(container.labels),
            "StopSignal": container.stop_signal or None,
            "StopTimeout": container.stop_timeout,
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": container.sandbox_key and os.path.basename(container.sandbox_key),
            "SandboxKey": container.sandbox_key,
            "HairpinMode": False,
            "Ports": ports,
            "Gateway": default.get("Gateway", ""),
            "IPAddress": default.get("IPAddress", ""),
            "IPPrefixLen": default.get("IPPrefixLen", 0),
            "MacAddress": default.get("MacAddress", ""),
            "GlobalIPv6Address": default.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": default.get("GlobalIPv6PrefixLen", 0),
            "IPv6Gateway": default.get("IPv6Gateway", ""),
            "Networks": networks,
        },
        "Mounts": mounts_json(container, volumes_root),
    }


def mounts_json(container: Container, volumes_root: str) -> list[dict[str, Any]]:
    found = []
    for mount in container.mounts:
        entry: dict[str, Any] = {"Type": mount.type, "Source": mount.source, "Destination": mount.target,
                                 "Mode": "", "RW": not mount.read_only, "Propagation": ""}  # fmt: skip
        if mount.type == "volume":
            entry.update(Name=mount.source, Source=os.path.join(volumes_root, mount.source, "_data"), Driver="local",
                         Mode="z")  # fmt: skip
        elif mount.type == "bind":
            entry["Propagation"] = "rprivate"
        found.append(entry)
    return found


def _host_mounts(container: Container) -> dict[str, Any]:
    """HostConfig's Binds, Mounts and Tmpfs, as the request gave them (approximately: -v and --mount both
    show as Binds for binds and named volumes)."""
    binds = [f"{m.source}:{m.target}{':ro' if m.read_only else ''}" for m in container.mounts
             if m.type in ("bind", "volume") and not m.anonymous]  # fmt: skip
    tmpfs = {m.target: m.tmpfs_options for m in container.mounts if m.type == "tmpfs"}
    return {"Binds": binds or None, "Tmpfs": tmpfs or None}


def exposed_ports(container: Container) -> list[str]:
    """The image's exposed ports and the published ones, as docker lists them ("80/tcp")."""
    ports = dict.fromkeys(container.exposed_ports)
    ports.update(dict.fromkeys(f"{p.container_port}/{p.protocol}" for p in container.ports))
    return list(ports)


def _status_text(container: Container) -> str:
    state = container.state
    if state.status == "running":
        up = "Up " + _human_duration(time.time() - _timestamp(state.started_at))
        return up + " (Paused)" if state.paused else up
    if state.status == "created":
        return "Created"
    return f"Exited ({state.exit_code}) {_human_duration(time.time() - _timestamp(state.finished_at))} ago"


def _human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = seconds // 3600
    return f"{hours} hour{'s' if hours != 1 else ''}"


def container_summary(container: Container, registry: EngineView, volumes_root: str = "") -> dict[str, Any]:
    ports = []
    published = container.published_ports if container.state.status == "running" else []
    for mapping in published:
        ports.append({"IP": mapping.host_ip or "0.0.0.0", "PrivatePort": mapping.container_port,
                      "PublicPort": mapping.host_port, "Type": mapping.protocol})  # fmt: skip
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": container.image,
        "ImageID": container.image_id,
        "Command": shlex.join(container.argv),
        "Created": int(_timestamp(container.created)),
        "Ports": ports,
        "Labels": dict(container.labels),
        "State": "paused" if container.state.paused else container.state.status,
        "Status": _status_text(container),
        "HostConfig": {"NetworkMode": container.network_mode},
        "NetworkSettings": {"Networks": _networks_json(container, registry)},
        "Mounts": mounts_json(container, volumes_root),
    }
