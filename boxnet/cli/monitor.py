"""Watching the daemon: events."""

from __future__ import annotations

import sys
import time

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.format import render_template
from boxnet.cli.jsoncodec import dumps, loads
from boxnet.cli.networks import filters_param
from boxnet.errors import InvalidArgument

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any

DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted in (None, "events"):
        events = commands.add_parser("events", help="show the daemon's events as they happen")
        events.add_argument("--since", default="", help="from this time: a timestamp, RFC 3339, or a duration ago")
        events.add_argument("--until", default="", help="up to this time (ends the stream)")
        events.add_argument("-f", "--filter", action="append", default=[])
        events.add_argument("--format", default="")
        events.set_defaults(func=show_events)


def docker_time(raw: str, now: float | None = None) -> str:
    """--since/--until as docker takes them (seconds since the epoch, an RFC 3339 time, or a Go duration
    that far back: 10m, 1h30m), as the seconds the API wants."""
    if not raw:
        return ""
    now = time.time() if now is None else now
    seconds, _, fraction = raw.partition(".")
    if seconds.isdigit() and (not fraction or fraction.isdigit()):
        return raw
    ago = _duration(raw)
    if ago is not None:
        return f"{now - ago:.9f}"
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid time {raw!r}: seconds since the epoch, RFC 3339, or a duration (10m)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # docker reads a time without a zone as local
    return f"{moment.timestamp():.9f}"


def _duration(raw: str) -> float | None:
    """A Go duration ("1h30m", "90s", "1.5h"), in seconds; None if raw is not one."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


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
