"""Points in time as docker's flags give them (--since, --until, prune's until): seconds since the epoch
(with a fraction), an RFC 3339 time, or a Go duration that far back (10m, 1h30m)."""

from __future__ import annotations

import re
import time

from boxnet.errors import InvalidArgument

DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration(raw: str) -> float | None:
    """A Go duration ("1h30m", "90s", "1.5h"), in seconds; None if raw is not one."""
    parts = _DURATION_PART.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def point_in_time(raw: str, now: float | None = None) -> float:
    """raw as seconds since the epoch."""
    seconds, _, fraction = raw.partition(".")
    if seconds.isdigit() and (not fraction or fraction.isdigit()):
        return float(raw)
    ago = duration(raw)
    if ago is not None:
        return (time.time() if now is None else now) - ago
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid time {raw!r}: seconds since the epoch, RFC 3339, or a duration (10m)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # docker reads a time without a zone as local
    return moment.timestamp()
