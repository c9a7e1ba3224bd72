"""Watching the daemon and its containers: events, stats, top."""

from __future__ import annotations

import sys
import time

from boxnet.cli.client import Client
from boxnet.cli.flags import REMAINDER, Namespace
from boxnet.cli.format import render_template
from boxnet.cli.jsoncodec import dumps, loads
from boxnet.cli.networks import filters_param

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any

def register(commands: Any, wanted: str | None = None) -> None:
    if wanted in (None, "events"):
        events = commands.add_parser("events", help="show the daemon's events as they happen")
        events.add_argument("--since", default="", help="from this time: a timestamp, RFC 3339, or a duration ago")
        events.add_argument("--until", default="", help="up to this time (ends the stream)")
        events.add_argument("-f", "--filter", action="append", default=[])
        events.add_argument("--format", default="")
        events.set_defaults(func=show_events)
    if wanted in (None, "stats"):
        stats = commands.add_parser("stats", help="show containers' CPU, memory, network and block I/O use")
        stats.add_argument("-a", "--all", action="store_true", help="every container (default: the running ones)")
        stats.add_argument("--no-stream", action="store_true", help="one table, then exit")
        stats.add_argument("--format", default="")
        stats.add_argument("names", nargs="*")
        stats.set_defaults(func=show_stats)
    if wanted in (None, "top"):
        top = commands.add_parser("top", help="show a container's processes")
        top.add_argument("container")
        top.add_argument("ps_args", nargs=REMAINDER, help="ps options (default: -ef)")
        top.set_defaults(func=show_top)
    if wanted in (None, "system"):
        system = commands.add_parser("system", help="the daemon's disk use (df)")
        verbs = system.add_subparsers(dest="verb", metavar="COMMAND")
        verbs.required = True
        df = verbs.add_parser("df", help="show how much disk images, containers and volumes use")
        df.add_argument("-v", "--verbose", action="store_true")
        df.set_defaults(func=show_disk_usage)


def docker_time(raw: str, now: float | None = None) -> str:
    """--since/--until as docker takes them (seconds since the epoch, an RFC 3339 time, or a Go duration
    that far back: 10m, 1h30m), as the seconds the API wants."""
    from boxnet.model.times import point_in_time

    if not raw:
        return ""
    seconds, _, fraction = raw.partition(".")
    if seconds.isdigit() and (not fraction or fraction.isdigit()):
        return raw
    return f"{point_in_time(raw, now):.9f}"


def event_line(event: dict[str, Any]) -> str:
    """One event as `docker events` prints it: time, type, action, actor, (attributes)."""
    from datetime import datetime

    nanos = int(event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000)
    moment = datetime.fromtimestamp(nanos // 1_000_000_000).astimezone()
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos % 1_000_000_000:09d}" + moment.strftime("%z")
    stamp = stamp[:-2] + ":" + stamp[-2:]
    actor = event.get("Actor") or {}
    line = f"{stamp} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    attributes = actor.get("Attributes") or {}
    if attributes:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attributes.items())) + ")"
    return line


def show_events(client: Client, args: Namespace) -> int:
    query = {"since": docker_time(args.since) or None, "until": docker_time(args.until) or None,
             "filters": filters_param(args.filter)}  # fmt: skip
    response, sock = client.stream("GET", "/events", query)
    try:
        for raw in response.lines():
            event = loads(raw)
            if args.format == "json" or args.format == "{{json .}}":
                print(dumps(event))
            elif args.format:
                print(render_template(args.format, event))
            else:
                print(event_line(event))
            sys.stdout.flush()
    finally:
        sock.close()
    return 0


def cpu_percent(current: dict[str, Any], previous: dict[str, Any]) -> float:
    """The docker CLI's CPU %: the container's share of the host's CPU time between two samples, times the
    CPUs it may use."""
    now, before = current.get("cpu_stats") or {}, previous.get("cpu_stats") or {}
    used = (now.get("cpu_usage") or {}).get("total_usage", 0) - (before.get("cpu_usage") or {}).get("total_usage", 0)
    elapsed = now.get("system_cpu_usage", 0) - before.get("system_cpu_usage", 0)
    cpus = now.get("online_cpus") or len((now.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    return used / elapsed * cpus * 100.0 if used > 0 and elapsed > 0 else 0.0


def memory_in_use(stats: dict[str, Any]) -> int:
    """As the docker CLI counts it: usage less the page cache the kernel can drop (inactive files)."""
    memory = stats.get("memory_stats") or {}
    inactive = (memory.get("stats") or {}).get("total_inactive_file", 0)
    usage = memory.get("usage", 0)
    return usage - inactive if inactive < usage else usage


def binary_size(value: float) -> str:
    """docker's units.BytesSize: 1.5MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g}{unit}"
        value /= 1024
    return ""


def decimal_size(value: float) -> str:
    """docker's units.HumanSizeWithPrecision(value, 3): 1.5MB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return ""


def stats_row(stats: dict[str, Any], previous: dict[str, Any]) -> dict[str, str]:
    """One row of `docker stats`, with the names its --format templates use."""
    memory = stats.get("memory_stats") or {}
    used, limit = memory_in_use(stats), memory.get("limit", 0)
    networks = (stats.get("networks") or {}).values()
    received, sent = sum(n["rx_bytes"] for n in networks), sum(n["tx_bytes"] for n in networks)
    io = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e["value"] for e in io if e["op"].lower() == "read")
    written = sum(e["value"] for e in io if e["op"].lower() == "write")
    running = bool(memory)
    return {
        "ID": stats["id"][:12], "Container": stats["id"][:12], "Name": stats["name"].lstrip("/"),
        "CPUPerc": f"{cpu_percent(stats, previous):.2f}%" if running else "0.00%",
        "MemUsage": f"{binary_size(used)} / {binary_size(limit)}" if running else "0B / 0B",
        "MemPerc": f"{used / limit * 100:.2f}%" if running and limit else "0.00%",
        "NetIO": f"{decimal_size(received)} / {decimal_size(sent)}",
        "BlockIO": f"{decimal_size(read)} / {decimal_size(written)}",
        "PIDs": str((stats.get("pids_stats") or {}).get("current", 0)),
    }  # fmt: skip


STATS_COLUMNS = (("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"), ("MEM USAGE / LIMIT", "MemUsage"),
                 ("MEM %", "MemPerc"), ("NET I/O", "NetIO"), ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs"))  # fmt: skip


def show_stats(client: Client, args: Namespace) -> int:
    """`docker stats`: a sample of every container named (or running) each second, the CPU % between two."""
    from boxnet.cli.client import ref
    from boxnet.cli.format import table

    names = args.names or [c["Id"] for c in client.get("/containers/json", all=int(args.all))]
    previous = {name: client.get(f"/containers/{ref(name)}/stats", stream=0, **{"one-shot": 1}) for name in names}
    while True:
        time.sleep(1.0)
        current = {name: client.get(f"/containers/{ref(name)}/stats", stream=0, **{"one-shot": 1}) for name in names}
        rows = [stats_row(current[name], previous[name]) for name in names]
        previous = current
        if not args.no_stream:
            sys.stdout.write("\033[2J\033[H")  # as docker: the table redrawn in place
        if args.format:
            print("\n".join(render_template(args.format, row) for row in rows))
        else:
            print(table([h for h, _ in STATS_COLUMNS], [[row[k] for _, k in STATS_COLUMNS] for row in rows]))
        sys.stdout.flush()
        if args.no_stream:
            return 0


def show_top(client: Client, args: Namespace) -> int:
    from boxnet.cli.client import ref
    from boxnet.cli.format import table

    found = client.get(f"/containers/{ref(args.container)}/top", ps_args=" ".join(args.ps_args) or None)
    print(table(found["Titles"], found["Processes"]))
    return 0


def show_disk_usage(client: Client, args: Namespace) -> int:
    """`docker system df`: per type, how many, how many in use, their size and what removing the unused
    would reclaim."""
    from boxnet.cli.format import table

    usage = client.get("/system/df")
    images, containers, volumes = usage.get("Images") or [], usage.get("Containers") or [], usage.get("Volumes") or []
    unused_images = sum(i["Size"] - max(i.get("SharedSize", 0), 0) for i in images if not i.get("Containers"))
    stopped = sum(c.get("SizeRw", 0) for c in containers if c["State"] != "running" and c["State"] != "paused")
    unused_volumes = sum(v["UsageData"]["Size"] for v in volumes if not v["UsageData"]["RefCount"])

    def row(kind: str, items: list, active: int, size: int, reclaimable: int) -> list[str]:
        share = f" ({reclaimable * 100 // size}%)" if size else ""
        return [kind, str(len(items)), str(active), decimal_size(size), decimal_size(reclaimable) + share]

    rows = [row("Images", images, sum(1 for i in images if i.get("Containers")), usage.get("LayersSize", 0),
                unused_images),
            row("Containers", containers, sum(1 for c in containers if c["State"] in ("running", "paused")),
                sum(c.get("SizeRw", 0) for c in containers), stopped),
            row("Local Volumes", volumes, sum(1 for v in volumes if v["UsageData"]["RefCount"]),
                sum(v["UsageData"]["Size"] for v in volumes), unused_volumes),
            row("Build Cache", [], 0, 0, 0)]  # fmt: skip
    print(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows))
    return 0
