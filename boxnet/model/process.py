"""How a container's process runs: its user, limits, devices, kernel settings and restart policy, as asked
for and validated. Pure: nothing here touches the system (engine/ and runtime/ apply it)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from boxnet.errors import InvalidArgument

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(what: str, value: str, limit: int = 4096) -> str:
    """Free text that ends up in files, logs or the kernel: no control characters, a sane length."""
    if _CONTROL.search(value):
        raise InvalidArgument(f"invalid {what} {value!r}: control characters are not allowed")
    if len(value) > limit:
        raise InvalidArgument(f"invalid {what}: longer than {limit} characters")
    return value


# ---- names a container answers to -----------------------------------------------------------------
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")


def check_hostname(name: str) -> str:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, each at most 63, all at most 253."""
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise InvalidArgument(f"invalid hostname {name!r}: use letters, digits, '-' and '.' (RFC 1123), "
                              "at most 63 characters a label")  # fmt: skip
    return name


def check_dns_name(what: str, name: str) -> str:
    """A name the embedded DNS answers (aliases): what DNS and Docker's names allow."""
    if not _DNS_NAME.match(name) or ".." in name:
        raise InvalidArgument(f"invalid {what} {name!r}: use letters, digits, '_', '-' and '.'")
    return name


# ---- user ------------------------------------------------------------------------------------------
_USER_PART = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$")


def check_user(spec: str) -> str:
    """`name|uid[:group|gid]`, resolved against the container's own /etc/passwd and /etc/group at start."""
    parts = spec.split(":")
    if len(parts) > 2 or not all(_USER_PART.match(part) for part in parts):
        raise InvalidArgument(f"invalid user {spec!r}: expected NAME|UID[:GROUP|GID]")
    for part in parts:
        if part.isdigit() and int(part) > 0xFFFFFFFE:
            raise InvalidArgument(f"invalid user {spec!r}: {part} is out of range")
    return spec


def check_group(spec: str) -> str:
    if not _USER_PART.match(spec) or (spec.isdigit() and int(spec) > 0xFFFFFFFE):
        raise InvalidArgument(f"invalid group {spec!r}: expected NAME or GID")
    return spec


# ---- limits ----------------------------------------------------------------------------------------
# Docker's ulimit names (moby/pkg/ulimit) and their RLIMIT_ numbers.
ULIMITS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
}  # fmt: skip
UNLIMITED = -1


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if self.name not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit {self.name!r}: known are {', '.join(sorted(ULIMITS))}")
        for value in (self.soft, self.hard):
            if value < UNLIMITED:
                raise InvalidArgument(f"invalid ulimit {self.name}: {value} (-1 stands for unlimited)")
        if self.hard != UNLIMITED and (self.soft == UNLIMITED or self.soft > self.hard):
            raise InvalidArgument(f"invalid ulimit {self.name}: soft limit {self.soft} above the hard {self.hard}")


def parse_ulimit(spec: str) -> Ulimit:
    """docker's `--ulimit NAME=SOFT[:HARD]`."""
    name, sep, values = spec.partition("=")
    soft, _, hard = values.partition(":")
    if not sep:
        raise InvalidArgument(f"invalid ulimit {spec!r}: expected NAME=SOFT[:HARD]")
    try:
        return Ulimit(name, int(soft), int(hard or soft))
    except ValueError:
        raise InvalidArgument(f"invalid ulimit {spec!r}: expected NAME=SOFT[:HARD]") from None


@dataclass
class Resources:
    """cgroup limits: 0 means not limited."""

    memory: int = 0  # bytes
    nano_cpus: int = 0  # CPUs x 1e9
    cpu_shares: int = 0
    cpu_period: int = 0  # microseconds
    cpu_quota: int = 0  # microseconds per period
    pids_limit: int = 0  # 0 and -1: unlimited

    MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum

    def validate(self, cpus: int) -> Resources:
        if self.memory and self.memory < self.MIN_MEMORY:
            raise InvalidArgument(f"Memory {self.memory} is below the minimum of 6 MiB")
        if self.nano_cpus and not 10_000_000 <= self.nano_cpus <= cpus * 1_000_000_000:
            raise InvalidArgument(f"NanoCpus: the range of CPUs is from 0.01 to {cpus}")
        if self.nano_cpus and (self.cpu_period or self.cpu_quota):
            raise InvalidArgument("conflicting options: NanoCpus and CpuPeriod/CpuQuota cannot both be set")
        if self.cpu_shares and self.cpu_shares < 2:
            raise InvalidArgument(f"CpuShares {self.cpu_shares} is below the minimum of 2")
        if self.cpu_period and not 1000 <= self.cpu_period <= 1_000_000:
            raise InvalidArgument(f"CpuPeriod {self.cpu_period} must be from 1000 to 1000000 microseconds")
        if self.cpu_quota and self.cpu_quota < 1000:
            raise InvalidArgument(f"CpuQuota {self.cpu_quota} is below the minimum of 1000 microseconds")
        if self.pids_limit < -1:
            raise InvalidArgument(f"PidsLimit {self.pids_limit} must be -1 (unlimited), 0 or positive")
        return self

    def any(self) -> bool:
        return any((self.memory, self.nano_cpus, self.cpu_shares, self.cpu_period, self.cpu_quota,
                    self.pids_limit > 0))  # fmt: skip


# ---- devices ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    path_on_host: str
    path_in_container: str
    permissions: str = "rwm"

    def __post_init__(self) -> None:
        for path in (self.path_on_host, self.path_in_container):
            check_text("device path", path, 4096)
            if not path.startswith("/") or "/../" in path + "/":
                raise InvalidArgument(f"invalid device path {path!r}: an absolute path without '..'")
        if not self.path_in_container.startswith("/dev/"):
            raise InvalidArgument(f"invalid device path {self.path_in_container!r} in the container: under /dev/")
        if not self.permissions or set(self.permissions) - set("rwm") or len(set(self.permissions)) < len(
            self.permissions
        ):
            raise InvalidArgument(f"invalid device permissions {self.permissions!r}: a combination of r, w and m")


def parse_device(spec: str) -> Device:
    """docker's `--device HOST[:CONTAINER][:PERMISSIONS]`."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgument(f"invalid device {spec!r}: expected HOST[:CONTAINER][:PERMISSIONS]")
    if len(parts) == 2 and not parts[1].startswith("/"):
        return Device(parts[0], parts[0], parts[1])
    return Device(parts[0], parts[1] if len(parts) > 1 else parts[0], parts[2] if len(parts) > 2 else "rwm")


# ---- kernel settings -------------------------------------------------------------------------------
# What a container may set in its own namespaces, as Docker allows (moby/daemon/oci_linux.go): the IPC
# namespace's kernel.* and fs.mqueue.*, and the network namespace's net.*.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip
_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+([./][A-Za-z0-9_@:.-]+)+$")


def sysctl_namespace(key: str) -> str:
    """"net" or "ipc": the namespace a sysctl belongs to; an error for one that is the host's."""
    if not _SYSCTL_KEY.match(key) or "/../" in f"/{key}/" or "/./" in f"/{key}/":
        raise InvalidArgument(f"invalid sysctl {key!r}")
    if key.startswith(("net.", "net/")):
        return "net"
    if key.replace("/", ".") in IPC_SYSCTLS or key.startswith(("fs.mqueue.", "fs/mqueue/")):
        return "ipc"
    raise InvalidArgument(f"sysctl {key!r} is not allowed: it is not in the container's own namespaces "
                          "(allowed: net.*, fs.mqueue.*, and the IPC kernel.* ones)")  # fmt: skip


def check_sysctls(sysctls: dict[str, str]) -> dict[str, str]:
    for key, value in sysctls.items():
        sysctl_namespace(key)
        check_text(f"value of sysctl {key}", value, 1024)
    return dict(sysctls)


# ---- restart ---------------------------------------------------------------------------------------
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


@dataclass
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0

    def __post_init__(self) -> None:
        if self.name == "":
            self.name = "no"
        if self.name not in RESTART_POLICIES:
            raise InvalidArgument(f"invalid restart policy {self.name!r}: one of {', '.join(RESTART_POLICIES)}")
        if self.maximum_retry_count < 0:
            raise InvalidArgument("the maximum retry count of a restart policy cannot be negative")
        if self.maximum_retry_count and self.name != "on-failure":
            raise InvalidArgument(f"a maximum retry count cannot be used with restart policy {self.name!r}")

    def restarts_after(self, exit_code: int, restarts: int, stopped_by_user: bool) -> bool:
        """Whether a container that just ended starts again (Docker's rules)."""
        if stopped_by_user or self.name == "no":
            return False
        if self.name == "on-failure":
            return exit_code != 0 and (not self.maximum_retry_count or restarts < self.maximum_retry_count)
        return True


def parse_restart(spec: str) -> RestartPolicy:
    """docker's `--restart no|always|unless-stopped|on-failure[:MAX]`."""
    name, sep, count = spec.partition(":")
    if sep and (name != "on-failure" or not count.isdigit()):
        raise InvalidArgument(f"invalid restart policy {spec!r}")
    return RestartPolicy(name, int(count) if sep else 0)


# ---- /etc/hosts and the MAC address ----------------------------------------------------------------
HOST_GATEWAY = "host-gateway"


@dataclass(frozen=True)
class ExtraHost:
    name: str
    address: str  # an IP address, or host-gateway (the host, seen from the container)


def parse_extra_host(spec: str) -> ExtraHost:
    """`NAME:IP` (or `NAME=IP`, as newer docker writes it); IPv6 addresses may be bracketed."""
    separator = "=" if "=" in spec else ":"
    name, sep, address = spec.partition(separator)
    if not sep:
        raise InvalidArgument(f"invalid extra host {spec!r}: expected NAME:IP")
    check_hostname(name)
    address = address.strip("[]")
    if address != HOST_GATEWAY:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise InvalidArgument(f"invalid extra host {spec!r}: {address!r} is not an IP address") from None
    return ExtraHost(name, address)


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def check_mac(mac: str) -> str:
    """A unicast MAC address that is not all zeros, in lower case."""
    if not _MAC.match(mac):
        raise InvalidArgument(f"invalid MAC address {mac!r}: expected six hex bytes separated by ':'")
    octets = bytes(int(part, 16) for part in mac.split(":"))
    if octets[0] & 1:
        raise InvalidArgument(f"invalid MAC address {mac}: a multicast address cannot be an interface's")
    if not any(octets):
        raise InvalidArgument(f"invalid MAC address {mac}: all zeros")
    return mac.lower()


# ---- what a container may see of the host's /proc ----------------------------------------------------
# Docker's defaults (moby/oci/defaults.go): hidden, and read-only.
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass
class ProcessSettings:
    """The validated process settings a container record keeps."""

    user: str = ""
    group_add: list[str] = field(default_factory=list)
    read_only: bool = False
    no_new_privileges: bool = False
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: list[Ulimit] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    oom_score_adj: int = 0
    shm_size: int = 0  # bytes; 0: Docker's 64 MiB
    masked_paths: list[str] | None = None  # None: the defaults
    readonly_paths: list[str] | None = None
