"""Containers, their endpoints and their state, as recorded in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from boxnet.errors import InvalidArgument
from boxnet.model.mounts import Mount
from boxnet.model.names import check_object_name
from boxnet.model.ports import PortMapping
from boxnet.model.process import Device, ProcessSettings, Resources, RestartPolicy, Ulimit

# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)  # fmt: skip

# Capability numbers from linux/capability.h.
CAPABILITY_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}  # fmt: skip

BUILTIN_IMAGE = "host"


def normalize_capability(raw: str) -> str:
    name = raw.strip().upper()
    name = name.removeprefix("CAP_")
    if name != "ALL" and name not in CAPABILITY_NUMBERS:
        raise InvalidArgument(f"unknown capability {raw!r}")
    return name


def effective_capabilities(cap_add: list[str], cap_drop: list[str]) -> list[str]:
    """Docker's rule: start from the default set, drop, then add; ALL stands for every capability."""
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    caps = set() if "ALL" in drops else set(DEFAULT_CAPABILITIES) - set(drops)
    caps |= set(CAPABILITY_NUMBERS) if "ALL" in adds else set(adds)
    return sorted(caps, key=CAPABILITY_NUMBERS.__getitem__)


@dataclass
class Endpoint:
    """One container's attachment to one network."""

    network_id: str
    endpoint_id: str
    ifname: str = ""
    host_veth: str = ""
    mac: str = ""
    ipv4: str = ""  # address/prefixlen
    ipv6: str = ""
    gateway4: str = ""
    gateway6: str = ""
    aliases: list[str] = field(default_factory=list)
    requested_ipv4: str = ""

    @property
    def addresses(self) -> list[str]:
        return [a for a in (self.ipv4, self.ipv6) if a]

    @property
    def gateways(self) -> list[str]:
        return [g for g in (self.gateway4, self.gateway6) if g]

    def address(self, version: int) -> str:
        """The IPv4 or IPv6 address without its prefix length ("" if none)."""
        cidr = self.ipv4 if version == 4 else self.ipv6
        return cidr.split("/", 1)[0]


@dataclass
class ContainerState:
    status: str = "created"  # created | starting | running | exited | removing
    pid: int = 0
    shim_pid: int = 0
    shim_start_time: int = 0  # /proc/<pid>/stat start time: guards against pid reuse
    exit_code: int = 0
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    error: str = ""
    # Stopped by stop or kill through the API: no restart policy brings it back (until started again).
    stopped_by_user: bool = False
    # Frozen by `pause` (its status stays "running", as Docker's State.Running does).
    paused: bool = False


@dataclass(kw_only=True)
class ContainerSettings:
    """What a create request asks for, kept by the container's record once validated."""

    image: str = BUILTIN_IMAGE  # as the client named it
    rootfs: str = ""
    # What runs is entrypoint + cmd (Docker's Config.Entrypoint and Config.Cmd, the image's where the
    # request gave none).
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    hostname: str = ""
    network_mode: str = "bridge"
    # Ports as asked for (host port 0: any free one).
    ports: list[PortMapping] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    pid_mode: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    auto_remove: bool = False
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    console_size: list[int] = field(default_factory=list)  # [rows, columns] of the TTY
    working_dir: str = ""
    # --dns, --dns-search, --dns-option: the embedded resolver's upstreams and resolv.conf's other lines.
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    resources: Resources = field(default_factory=Resources)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    extra_hosts: list[str] = field(default_factory=list)  # NAME:IP, or NAME:host-gateway
    stop_signal: str = ""  # what stop sends first; "" is SIGTERM
    stop_timeout: int | None = None  # seconds stop waits before SIGKILL; None is 10
    # Volumes, binds and tmpfs mounts, parents first (anonymous volumes named at create).
    mounts: list[Mount] = field(default_factory=list)


@dataclass(kw_only=True)
class Container(ContainerSettings):
    id: str
    name: str
    created: str
    # The ports as published while the container runs (free host ports chosen).
    published_ports: list[PortMapping] = field(default_factory=list)
    # Networks asked for at create time: name -> endpoint settings (aliases, requested ip).
    requested_networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Live attachments while the container runs, keyed by network id.
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # The network whose address the published ports lead to.
    port_network: str = ""
    # Its cgroups' directories while it runs (recorded before they are made).
    cgroups: list[str] = field(default_factory=list)
    # The namespace the container's network lives in, registered for `ip netns`.
    sandbox_key: str = ""
    netns_name: str = ""
    state: ContainerState = field(default_factory=ContainerState)
    restart_count: int = 0
    # The image's id (sha256:...) when it runs from one in the image store; "" for `host` and --rootfs.
    image_id: str = ""
    # Config.ExposedPorts: the image's and the request's ("80/tcp").
    exposed_ports: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]

    @property
    def shares_netns_with(self) -> str | None:
        return self.network_mode.split(":", 1)[1] if self.network_mode.startswith("container:") else None

    def to_json(self) -> str:
        # Every field is a plain value or a dataclass of them: vars() serialises them as asdict() would,
        # without its deep copy (which was a tenth of a container's start).
        return json.dumps(self, default=vars)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Container:
        data = dict(data)
        data["ports"] = [PortMapping.from_dict(p) for p in data.get("ports", [])]
        data["published_ports"] = [PortMapping.from_dict(p) for p in data.get("published_ports", [])]
        data["endpoints"] = {k: Endpoint(**v) for k, v in data.get("endpoints", {}).items()}
        data["state"] = ContainerState(**data.get("state", {}))
        process = dict(data.get("process", {}))
        process["ulimits"] = [Ulimit(**u) for u in process.get("ulimits", [])]
        process["devices"] = [Device(**d) for d in process.get("devices", [])]
        data["process"] = ProcessSettings(**process)
        data["resources"] = Resources(**data.get("resources", {}))
        data["restart_policy"] = RestartPolicy(**data.get("restart_policy", {}))
        data["mounts"] = [Mount.from_dict(m) for m in data.get("mounts", [])]
        return cls(**data)


def check_container_name(name: str) -> str:
    return check_object_name("container", name.lstrip("/"))
