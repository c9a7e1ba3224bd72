"""A container's stats as Docker's /containers/{id}/stats gives them (cgroup v1 layout)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from boxnet.model.container import Container
from boxnet.runtime import usage
from boxnet.runtime.cgroups import Cgroups

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def cpu_json(cgroups: Cgroups, paths: list[str]) -> dict[str, Any]:
    """cpu_stats from the container's cgroups; zeroes without them (a container that does not run)."""
    if not paths:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip
    cpu = usage.cpu_usage(cgroups.path_of(paths, "cpuacct"), cgroups.path_of(paths, "cpu"))
    return {
        "cpu_usage": {"total_usage": cpu.total_ns, "percpu_usage": cpu.per_cpu_ns,
                      "usage_in_kernelmode": cpu.system_ns, "usage_in_usermode": cpu.user_ns},
        "system_cpu_usage": usage.system_cpu_ns(), "online_cpus": len(os.sched_getaffinity(0)),
        "throttling_data": cpu.throttling,
    }  # fmt: skip


def stats_json(cgroups: Cgroups, container: Container, previous: dict[str, Any] | None) -> dict[str, Any]:
    """One sample; previous (the last one sent, or a first one taken a second ago) gives precpu_stats."""
    running = container.state.status == "running" and bool(container.cgroups)
    paths = container.cgroups if running else []
    memory = usage.memory_usage(cgroups.path_of(paths, "memory"))
    if running and (memory.limit >= usage.NO_MEMORY_LIMIT or not memory.limit):
        memory.limit = usage.host_memory()  # as Docker: no limit reads as the machine's memory
    current, limit = usage.pids_usage(cgroups.path_of(paths, "pids"))
    blkio = cgroups.path_of(paths, "blkio")
    result: dict[str, Any] = {
        "name": "/" + container.name, "id": container.id,
        "read": now_rfc3339() if running else ZERO_TIME,
        "preread": previous["read"] if previous else ZERO_TIME,
        "pids_stats": {"current": current, **({"limit": limit} if limit else {})},
        "blkio_stats": {"io_service_bytes_recursive": usage.block_io(blkio) or None,
                        "io_serviced_recursive": usage.block_io(blkio, "blkio.throttle.io_serviced") or None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu_json(cgroups, paths),
        "precpu_stats": previous["cpu_stats"] if previous else cpu_json(cgroups, []),
        "memory_stats": {"usage": memory.usage, "max_usage": memory.max_usage, "stats": memory.stats,
                         "failcnt": memory.failcnt, "limit": memory.limit} if running else {},
    }  # fmt: skip
    if running and container.sandbox_key:  # host mode has no interfaces of its own, as in Docker
        result["networks"] = usage.interface_counters(container.state.pid)
    return result

