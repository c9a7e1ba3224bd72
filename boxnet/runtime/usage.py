"""What a container uses, read where the kernel counts it: its cgroup v1 files, /proc/stat, and the
interface counters of its network namespace. Docker's stats JSON is made of these (api/stats_json.py).

Each reader takes a directory (or a pid) and returns plain numbers; a file that is not there reads as
nothing, as a container that ended while it was read has no cgroups left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# The kernel's USER_HZ: what cpuacct.stat and /proc/stat count in.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NANOS_PER_TICK = 1_000_000_000 // CLOCK_TICKS
# memory.limit_in_bytes with no limit set: the largest page-aligned value, not a real limit.
NO_MEMORY_LIMIT = 1 << 62


def _read(directory: str, name: str) -> str:
    if not directory:
        return ""
    try:
        with open(os.path.join(directory, name)) as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return ""


def _number(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


def _pairs(text: str) -> dict[str, int]:
    """`key value` lines (memory.stat, cpuacct.stat, cpu.stat)."""
    result = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


@dataclass
class CpuUsage:
    total_ns: int = 0
    per_cpu_ns: list[int] = field(default_factory=list)
    user_ns: int = 0
    system_ns: int = 0
    throttling: dict[str, int] = field(default_factory=dict)


def cpu_usage(cpuacct: str, cpu: str = "") -> CpuUsage:
    ticks = _pairs(_read(cpuacct, "cpuacct.stat"))
    throttled = _pairs(_read(cpu, "cpu.stat"))
    return CpuUsage(
        total_ns=_number(_read(cpuacct, "cpuacct.usage")),
        per_cpu_ns=[int(v) for v in _read(cpuacct, "cpuacct.usage_percpu").split()],
        user_ns=ticks.get("user", 0) * NANOS_PER_TICK, system_ns=ticks.get("system", 0) * NANOS_PER_TICK,
        throttling={"periods": throttled.get("nr_periods", 0), "throttled_periods": throttled.get("nr_throttled", 0),
                    "throttled_time": throttled.get("throttled_time", 0)},
    )  # fmt: skip


def system_cpu_ns(proc_stat: str = "/proc/stat") -> int:
    """The host's CPU time, as Docker counts it (the first seven fields of /proc/stat's cpu line)."""
    with open(proc_stat) as handle:
        fields = handle.readline().split()
    return sum(int(v) for v in fields[1:8]) * NANOS_PER_TICK


def host_memory(meminfo: str = "/proc/meminfo") -> int:
    with open(meminfo) as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class MemoryUsage:
    usage: int = 0
    max_usage: int = 0
    limit: int = 0
    failcnt: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def memory_usage(memory: str) -> MemoryUsage:
    return MemoryUsage(
        usage=_number(_read(memory, "memory.usage_in_bytes")),
        max_usage=_number(_read(memory, "memory.max_usage_in_bytes")),
        limit=_number(_read(memory, "memory.limit_in_bytes")),
        failcnt=_number(_read(memory, "memory.failcnt")),
        stats=_pairs(_read(memory, "memory.stat")),
    )


def pids_usage(pids: str) -> tuple[int, int]:
    """How many tasks are in the cgroup, and its limit (0: none)."""
    return _number(_read(pids, "pids.current")), _number(_read(pids, "pids.max"))


def block_io(blkio: str, name: str = "blkio.throttle.io_service_bytes") -> list[dict[str, int | str]]:
    """Per device and operation ("8:0 Read 4096"), as Docker's io_service_bytes_recursive lists it."""
    entries: list[dict[str, int | str]] = []
    for line in _read(blkio, name).splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0] or not parts[2].isdigit():
            continue  # the "Total" line has no device
        major, _, minor = parts[0].partition(":")
        entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return entries


def cgroup_pids(cgroup: str) -> list[int]:
    """Every process in the cgroup (its cgroup.procs)."""
    return [int(v) for v in _read(cgroup, "cgroup.procs").split()]


NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors",
              "tx_dropped")  # fmt: skip
# Columns of /proc/net/dev that hold NET_FIELDS (receive: bytes packets errs drop; transmit from the 9th).
NET_COLUMNS = (0, 1, 2, 3, 8, 9, 10, 11)


def interface_counters(pid: int, proc: str = "/proc") -> dict[str, dict[str, int]]:
    """The counters of every interface but lo in the network namespace of pid (its /proc/PID/net/dev)."""
    found: dict[str, dict[str, int]] = {}
    text = _read(os.path.join(proc, str(pid), "net"), "dev") if pid else ""
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        name = name.strip()
        values = numbers.split()
        if name == "lo" or len(values) < 16:
            continue
        found[name] = {key: int(values[column]) for key, column in zip(NET_FIELDS, NET_COLUMNS, strict=True)}
    return found
