"""Docker Engine API request bodies, turned into boxnet's requests, every field checked for its type.

Each field a client may send is either applied, accepted because it only tells the client what to do
(AttachStdout, ContainerIDFile) or is an output that clients echo back (endpoint IPAddress), or refused by
name with the reason when it carries more than its zero value. Unknown fields are refused when they carry a
value; clients newer than this server send their new fields at zero.
"""

from __future__ import annotations

import os
from typing import Any

from boxnet.api.fields import Fields
from boxnet.engine.container_requests import ContainerRequest
from boxnet.errors import InvalidArgument
from boxnet.model.mounts import Mount, check_mounts, check_target, from_api_mount, parse_bind, parse_tmpfs
from boxnet.model.network import NetworkRequest
from boxnet.model.ports import PROTOCOLS, PortMapping
from boxnet.model.process import Device, ProcessSettings, Resources, RestartPolicy, Ulimit

VOLUMES_FROM = "--volumes-from is not supported: name the volumes with -v NAME:PATH"
CGROUP_V1_ONLY = "boxnet sets memory, CPU and pids limits only"

# ---- networks ------------------------------------------------------------------------------------
NETWORK_FIELDS = frozenset({"Name", "Driver", "Scope", "EnableIPv4", "EnableIPv6", "IPAM", "Internal", "Attachable",
                            "Ingress", "ConfigOnly", "ConfigFrom", "Options", "Labels", "CheckDuplicate"})  # fmt: skip


def network_request(data: Any) -> NetworkRequest:
    body = Fields(data)
    body.refuse_unknown(NETWORK_FIELDS, unless_unset=False)
    name = body.str("Name")
    if not name:
        raise InvalidArgument("network name is required")
    scope = body.str("Scope")
    if scope not in ("", "local"):
        raise InvalidArgument(f"Scope {scope!r} is not supported: boxnet's networks are local to this host")
    body.refuse_set({
        "ConfigOnly": "configuration-only networks are not supported",
        "ConfigFrom": "configuration-only networks are not supported",
    })  # fmt: skip
    if body.data.get("EnableIPv4") is not None and not body.bool("EnableIPv4"):
        raise InvalidArgument("EnableIPv4=false is not supported: every boxnet network has IPv4 (IPv6-only "
                              "networks are not built yet)")  # fmt: skip
    ipam = body.object("IPAM")
    ipam.refuse_unknown({"Driver", "Config", "Options"}, unless_unset=False)
    if ipam.str("Driver") not in ("", "default"):
        raise InvalidArgument(f"unknown IPAM driver {ipam.str('Driver')!r}; only the default is supported")
    ipam.refuse_set({"Options": "the default IPAM driver takes no options"})
    subnets, gateways, ranges, auxiliary = [], [], [], []
    for entry in ipam.objects("Config"):
        entry.refuse_unknown({"Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"}, unless_unset=False)
        aux = entry.string_map("AuxiliaryAddresses")
        if not entry.str("Subnet"):
            if entry.str("Gateway") or entry.str("IPRange") or aux:
                raise InvalidArgument(f"{entry.path}: a gateway, IP range or auxiliary address needs a subnet")
            continue
        subnets.append(entry.str("Subnet"))
        gateways.append(entry.str("Gateway"))
        ranges.append(entry.str("IPRange"))
        auxiliary.append(aux)
    return NetworkRequest(
        name=name, driver=body.str("Driver") or "bridge", subnets=subnets, gateways=gateways, ip_ranges=ranges,
        auxiliary_addresses=auxiliary, enable_ipv6=body.bool("EnableIPv6"), internal=body.bool("Internal"),
        attachable=body.bool("Attachable"), options=body.string_map("Options"), labels=body.string_map("Labels"),
        ingress=body.bool("Ingress"),
    )  # fmt: skip


# ---- endpoints -----------------------------------------------------------------------------------
ENDPOINT_OUTPUTS = {"NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway",
                    "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames"}  # fmt: skip
ENDPOINT_FIELDS = frozenset({"IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "GwPriority"}
                            | ENDPOINT_OUTPUTS)  # fmt: skip


def endpoint_settings(data: Any, path: str) -> dict[str, Any]:
    settings = Fields(data, path)
    settings.refuse_unknown(ENDPOINT_FIELDS)
    settings.refuse_set({
        "Links": "legacy links are not supported: containers on a user-defined network find each other by name",
        "DriverOpts": "the bridge driver takes no endpoint options",
        "GwPriority": "the first network given holds the default route",
    })  # fmt: skip
    ipam = settings.object("IPAMConfig")
    ipam.refuse_unknown({"IPv4Address", "IPv6Address", "LinkLocalIPs"})
    ipam.refuse_set({"LinkLocalIPs": "link-local addresses are not assigned"})
    return {"aliases": settings.strings("Aliases"), "ipv4": ipam.str("IPv4Address"),
            "ipv6": ipam.str("IPv6Address"), "mac": settings.str("MacAddress")}  # fmt: skip


# ---- containers ----------------------------------------------------------------------------------
CONFIG_CLIENT_SIDE = {"AttachStdin", "AttachStdout", "AttachStderr", "ArgsEscaped"}
CONFIG_REFUSED = {
    "Domainname": "a container's NIS domain name cannot be set",
    "OnBuild": "images are not built here",
    "Shell": "images are not built here",
    "Healthcheck": "health checks are not supported yet",
}
CONFIG_APPLIED = {"Hostname", "User", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "WorkingDir",
                  "Entrypoint", "Labels", "HostConfig", "NetworkingConfig", "MacAddress", "NetworkDisabled",
                  "ExposedPorts", "StopSignal", "StopTimeout", "Rootfs", "Volumes"}  # fmt: skip

HOST_CLIENT_SIDE = {"ContainerIDFile", "ConsoleSize", "Isolation"}
HOST_REFUSED = {
    "VolumesFrom": VOLUMES_FROM, "Privileged": "a container is a tenant, never the host's equal",
    "Links": "legacy links are not supported: containers on a user-defined network find each other by name",
    "PublishAllPorts": "publish each port with -p", "UsernsMode": "user namespaces are not supported",
    "Cgroup": "cgroup namespaces are not supported", "CgroupParent": "containers' cgroups are boxnet's own",
    "BlkioWeight": CGROUP_V1_ONLY, "BlkioWeightDevice": CGROUP_V1_ONLY, "BlkioDeviceReadBps": CGROUP_V1_ONLY,
    "BlkioDeviceWriteBps": CGROUP_V1_ONLY, "BlkioDeviceReadIOps": CGROUP_V1_ONLY,
    "BlkioDeviceWriteIOps": CGROUP_V1_ONLY, "CpuRealtimePeriod": CGROUP_V1_ONLY,
    "CpuRealtimeRuntime": CGROUP_V1_ONLY, "CpusetCpus": CGROUP_V1_ONLY, "CpusetMems": CGROUP_V1_ONLY,
    "MemoryReservation": CGROUP_V1_ONLY, "KernelMemory": CGROUP_V1_ONLY, "KernelMemoryTCP": CGROUP_V1_ONLY,
    "OomKillDisable": "the kernel's OOM killer stays on", "DeviceCgroupRules": "give devices with --device",
    "DeviceRequests": "GPUs and other device requests are not supported", "CpuCount": "Windows only",
    "CpuPercent": "Windows only", "IOMaximumIOps": "Windows only", "IOMaximumBandwidth": "Windows only",
    "Init": "no init process is injected", "Runtime": "boxnet is its own runtime",
    "StorageOpt": "there is no storage driver", "Annotations": "OCI annotations are not supported",
}  # fmt: skip
HOST_APPLIED = {"NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "CapAdd", "CapDrop", "CgroupnsMode",
                "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode", "PidMode", "ReadonlyRootfs",
                "SecurityOpt", "UTSMode", "ShmSize", "CpuShares", "Memory", "NanoCpus", "CpuPeriod", "CpuQuota",
                "Devices", "MemorySwap", "MemorySwappiness", "PidsLimit", "Ulimits", "OomScoreAdj", "Sysctls",
                "MaskedPaths", "ReadonlyPaths", "LogConfig", "Binds", "Mounts", "Tmpfs", "VolumeDriver"}  # fmt: skip


def _port_key(key: str) -> tuple[int, str]:
    port, _, protocol = key.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {protocol!r} in port {key!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"invalid container port {port!r}")
    return int(port), protocol


def port_bindings(host: Fields) -> list[PortMapping]:
    mappings = []
    bindings = host.object("PortBindings")
    for key in bindings.data:
        container_port, protocol = _port_key(key)
        entries = bindings.objects(key) or [Fields({}, bindings.name(key))]
        for entry in entries:
            host_port = entry.str("HostPort")
            if host_port and (not host_port.isdigit() or not 1 <= int(host_port) <= 65535):
                raise InvalidArgument(f"invalid host port {host_port!r} for {key}")
            host_ip = entry.str("HostIp")
            mappings.append(PortMapping(container_port, protocol, "" if host_ip in ("0.0.0.0", "::") else host_ip,
                                        int(host_port) if host_port else 0))  # fmt: skip
    return mappings


def console_size(host: Fields) -> list[int]:
    raw = host.data.get("ConsoleSize")
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and 0 < v < 10000 for v in raw):
        return [raw[0], raw[1]]
    return []


def _security_options(host: Fields) -> tuple[bool, list[str] | None, list[str] | None]:
    """no-new-privileges, and the system paths' masking (None: the defaults)."""
    no_new_privileges = False
    masked = readonly = None
    for option in host.strings("SecurityOpt"):
        key, _, value = option.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            no_new_privileges = value != "false"
        elif key in ("seccomp", "apparmor") and value == "unconfined":
            continue  # what boxnet's containers are already: no profile of either kind is applied
        elif key == "label" and value == "disable":
            continue
        elif key == "systempaths" and value == "unconfined":
            masked, readonly = [], []
        else:
            raise InvalidArgument(f"security option {option!r} is not supported: boxnet applies "
                                  "no-new-privileges and systempaths=unconfined; it has no seccomp, AppArmor or "
                                  "SELinux profiles")  # fmt: skip
    return no_new_privileges, masked, readonly


def _paths(host: Fields, key: str, default: list[str] | None) -> list[str] | None:
    """MaskedPaths / ReadonlyPaths: null keeps the default; a list replaces it."""
    if host.data.get(key) is None:
        return default
    paths = host.strings(key)
    for path in paths:
        if not path.startswith("/") or "/../" in path + "/":
            raise InvalidArgument(f"{host.name(key)}: {path!r} is not an absolute path")
    return paths


def _process(body: Fields, host: Fields) -> ProcessSettings:
    no_new_privileges, masked, readonly = _security_options(host)
    ulimits = [Ulimit(u.str("Name"), u.int("Soft"), u.int("Hard")) for u in host.objects("Ulimits")]
    devices = [Device(d.str("PathOnHost"), d.str("PathInContainer") or d.str("PathOnHost"),
                      d.str("CgroupPermissions") or "rwm") for d in host.objects("Devices")]  # fmt: skip
    return ProcessSettings(
        user=body.str("User"), group_add=host.strings("GroupAdd"), read_only=host.bool("ReadonlyRootfs"),
        no_new_privileges=no_new_privileges, sysctls=host.string_map("Sysctls"), ulimits=ulimits, devices=devices,
        oom_score_adj=host.int("OomScoreAdj", low=-1000, high=1000), shm_size=host.int("ShmSize", low=0),
        masked_paths=_paths(host, "MaskedPaths", masked), readonly_paths=_paths(host, "ReadonlyPaths", readonly),
    )  # fmt: skip


def _resources(host: Fields) -> Resources:
    swap = host.int("MemorySwap")
    if swap not in (0, -1):
        raise InvalidArgument("HostConfig.MemorySwap is not supported: the swap limit is left to the kernel "
                              "(0 or -1 only)")  # fmt: skip
    swappiness = host.int("MemorySwappiness", default=-1)
    if swappiness != -1:
        raise InvalidArgument("HostConfig.MemorySwappiness is not supported (-1 only)")
    return Resources(
        memory=host.int("Memory", low=0), nano_cpus=host.int("NanoCpus", low=0),
        cpu_shares=host.int("CpuShares", low=0), cpu_period=host.int("CpuPeriod", low=0),
        cpu_quota=max(host.int("CpuQuota", low=-1), 0),  # -1, as 0: no quota
        pids_limit=host.int("PidsLimit", low=-1),
    ).validate(os.cpu_count() or 1)  # fmt: skip


def _namespace_mode(host: Fields, key: str) -> str:
    mode = host.str(key)
    allowed = {"IpcMode": ("", "private", "shareable"), "UTSMode": ("",), "CgroupnsMode": ("", "host")}[key]
    if mode not in allowed:
        raise InvalidArgument(f"HostConfig.{key} {mode!r} is not supported: "
                              + {"IpcMode": "each container has its own IPC namespace",
                                 "UTSMode": "each container has its own hostname",
                                 "CgroupnsMode": "containers share the host's cgroup namespace"}[key])  # fmt: skip
    return mode


def _log_config(host: Fields) -> None:
    log = host.object("LogConfig")
    if log.str("Type") not in ("", "json-file"):
        raise InvalidArgument(f"log driver {log.str('Type')!r} is not supported: boxnet writes json-file logs")
    log.refuse_set({"Config": "the json-file log takes no options here"})


def _mounts(body: Fields, host: Fields) -> list[Mount]:
    """Binds (-v), Mounts (--mount), Tmpfs (--tmpfs) and Config.Volumes (-v /path: an anonymous volume)."""
    if host.str("VolumeDriver") not in ("", "local"):
        raise InvalidArgument(f"volume driver {host.str('VolumeDriver')!r} is not supported: local only")
    mounts = [parse_bind(spec) for spec in host.strings("Binds")]
    for entry in host.objects("Mounts"):
        entry.refuse_unknown({"Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions", "VolumeOptions",
                              "TmpfsOptions"})  # fmt: skip
        mounts.append(from_api_mount(entry.data))
    for target, options in host.string_map("Tmpfs").items():
        mounts.append(parse_tmpfs(target, options))
    given = {m.target for m in mounts}
    for target in body.object("Volumes").data:
        if check_target(target) not in given:
            mounts.append(Mount("volume", check_target(target), anonymous=True))
    return check_mounts(mounts)


def _entrypoint(body: Fields) -> list[str] | None:
    """None: the image's; Docker's [""] (--entrypoint ""): none at all."""
    if body.data.get("Entrypoint") is None:
        return None
    entrypoint = body.strings("Entrypoint", or_string=True)
    return [] if entrypoint == [""] else entrypoint


def container_request(data: Any, name: str) -> ContainerRequest:
    body = Fields(data)
    body.refuse_set(CONFIG_REFUSED)
    body.refuse_unknown(CONFIG_APPLIED | CONFIG_CLIENT_SIDE | set(CONFIG_REFUSED))
    host = body.object("HostConfig")
    host.refuse_set(HOST_REFUSED)
    host.refuse_unknown(HOST_APPLIED | HOST_CLIENT_SIDE | set(HOST_REFUSED))
    for key in ("IpcMode", "UTSMode", "CgroupnsMode"):
        _namespace_mode(host, key)
    _log_config(host)
    networking = body.object("NetworkingConfig")
    # The docker SDK sends {"NETWORK": null} here when given a network without endpoint settings; dockerd
    # ignores what is not EndpointsConfig, and so does boxnet, as long as it carries nothing.
    networking.refuse_unknown({"EndpointsConfig"})
    endpoints = networking.object("EndpointsConfig")
    restart = host.object("RestartPolicy")
    network_mode = host.str("NetworkMode") or "bridge"
    if body.bool("NetworkDisabled"):
        network_mode = "none"
    return ContainerRequest(
        name=name, image=body.str("Image") or "host", rootfs=body.str("Rootfs"),
        entrypoint=_entrypoint(body), cmd=body.strings("Cmd", or_string=True),
        exposed_ports=list(body.object("ExposedPorts").data),
        env=body.strings("Env"), hostname=body.str("Hostname"), network_mode=network_mode,
        networks={key: endpoint_settings(endpoints.data[key], endpoints.name(key)) for key in endpoints.data},
        ports=port_bindings(host), cap_add=host.strings("CapAdd"), cap_drop=host.strings("CapDrop"),
        pid_mode=host.str("PidMode"), labels=body.string_map("Labels"), auto_remove=host.bool("AutoRemove"),
        tty=body.bool("Tty"), open_stdin=body.bool("OpenStdin"), stdin_once=body.bool("StdinOnce"),
        console_size=console_size(host), working_dir=body.str("WorkingDir"), dns=host.strings("Dns"),
        dns_search=host.strings("DnsSearch"), dns_options=host.strings("DnsOptions"),
        process=_process(body, host), resources=_resources(host),
        restart_policy=RestartPolicy(restart.str("Name"), restart.int("MaximumRetryCount", low=0)),
        extra_hosts=host.strings("ExtraHosts"), mac_address=body.str("MacAddress"),
        stop_signal=body.str("StopSignal"), mounts=_mounts(body, host),
        stop_timeout=body.int("StopTimeout", low=-1) if body.data.get("StopTimeout") is not None else None,
    )  # fmt: skip
