"""The stats readers on files laid out as the kernel writes them, and the CLI's arithmetic on them."""

from __future__ import annotations

from pathlib import Path

from boxnet.cli.monitor import binary_size, cpu_percent, decimal_size, memory_in_use, stats_row
from boxnet.runtime import usage


def test_cgroup_v1_files(tmp_path: Path) -> None:
    (tmp_path / "cpuacct.usage").write_text("123456789\n")
    (tmp_path / "cpuacct.usage_percpu").write_text("100000000 23456789 \n")
    (tmp_path / "cpuacct.stat").write_text("user 7\nsystem 3\n")
    (tmp_path / "cpu.stat").write_text("nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n")
    cpu = usage.cpu_usage(str(tmp_path), str(tmp_path))
    assert (cpu.total_ns, cpu.per_cpu_ns) == (123456789, [100000000, 23456789])
    assert cpu.user_ns == 7 * usage.NANOS_PER_TICK and cpu.system_ns == 3 * usage.NANOS_PER_TICK
    assert cpu.throttling == {"periods": 10, "throttled_periods": 2, "throttled_time": 5000}
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory.stat").write_text("cache 0\ntotal_inactive_file 1024\n")
    memory = usage.memory_usage(str(tmp_path))
    assert memory.usage == 4096 and memory.limit >= usage.NO_MEMORY_LIMIT
    assert memory.stats["total_inactive_file"] == 1024
    (tmp_path / "pids.current").write_text("3\n")
    (tmp_path / "pids.max").write_text("max\n")
    assert usage.pids_usage(str(tmp_path)) == (3, 0)
    (tmp_path / "blkio.throttle.io_service_bytes").write_text("8:0 Read 512\n8:0 Write 1024\n8:0 Total 1536\n"
                                                              "Total 1536\n")  # fmt: skip
    assert usage.block_io(str(tmp_path)) == [{"major": 8, "minor": 0, "op": "Read", "value": 512},
                                            {"major": 8, "minor": 0, "op": "Write", "value": 1024},
                                            {"major": 8, "minor": 0, "op": "Total", "value": 1536}]  # fmt: skip
    # a container that ended while it was read: its files are gone, and so are the numbers
    assert usage.cpu_usage(str(tmp_path / "gone")).total_ns == 0 and usage.pids_usage("") == (0, 0)


def test_interface_counters_skip_lo(tmp_path: Path) -> None:
    (tmp_path / "42" / "net").mkdir(parents=True)
    (tmp_path / "42" / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
        "carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0 "
        "      0          0\n"
        "  eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0 "
        "      0          0\n")  # fmt: skip
    assert usage.interface_counters(42, str(tmp_path)) == {"eth0": {
        "rx_bytes": 2000, "rx_packets": 20, "rx_errors": 1, "rx_dropped": 2, "tx_bytes": 3000, "tx_packets": 30,
        "tx_errors": 3, "tx_dropped": 4}}  # fmt: skip


def test_the_docker_cli_arithmetic() -> None:
    previous = {"cpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000}, "system_cpu_usage": 10_000_000_000}}
    current = {"id": "a" * 64, "name": "/web", "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000},
               "system_cpu_usage": 14_000_000_000, "online_cpus": 4},
               "memory_stats": {"usage": 10 << 20, "limit": 100 << 20, "stats": {"total_inactive_file": 2 << 20}},
               "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 250}},
               "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096},
                                                              {"op": "Write", "value": 2_000_000}]},
               "pids_stats": {"current": 3}}  # fmt: skip
    assert cpu_percent(current, previous) == 50.0  # half a second of 4 s of host time, on 4 CPUs
    assert memory_in_use(current) == 8 << 20
    assert (binary_size(8 << 20), binary_size(1536), decimal_size(1500), decimal_size(250)) == \
        ("8MiB", "1.5KiB", "1.5kB", "250B")  # fmt: skip
    row = stats_row(current, previous)
    assert row == {"ID": "a" * 12, "Container": "a" * 12, "Name": "web", "CPUPerc": "50.00%",
                   "MemUsage": "8MiB / 100MiB", "MemPerc": "8.00%", "NetIO": "1.5kB / 250B",
                   "BlockIO": "4.1kB / 2MB", "PIDs": "3"}  # fmt: skip
