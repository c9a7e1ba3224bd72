"""Each container's recent queries: kept raw on the hot path, decoded only when someone asks."""

from __future__ import annotations

import time
from collections import deque

from boxnet.dns import packet

KEEP = 1000


# (wall clock, "udp"|"tcp", query without its id, answer without its id, source, seconds taken).
# A plain tuple: the hot path appends one per query, and building anything richer would cost more than
# answering did. Source is "local", "upstream <address>", "refused" or "malformed".
Entry = tuple[float, str, bytes, bytes, str, float]


class QueryLog:
    def __init__(self, keep: int = KEEP) -> None:
        self.entries: deque[Entry] = deque(maxlen=keep)
        self.append = self.entries.append

    def record(self, protocol: str, query: bytes, answer: bytes, source: str, seconds: float) -> None:
        self.append((time.time(), protocol, query, answer, source, seconds))

    def decoded(self, tail: int) -> list[dict]:
        return [describe(*e) for e in list(self.entries)[-tail:]] if tail > 0 else []


def describe(when: float, protocol: str, query: bytes, answer: bytes, source: str, seconds: float) -> dict:
    name, qtype = "?", "?"
    try:
        parsed = packet.parse_query(b"\x00\x00" + query)
        name, qtype = parsed.name + ".", packet.TYPE_NAMES.get(parsed.qtype, f"TYPE{parsed.qtype}")
    except packet.FormatError:
        pass
    summary = packet.summarize(b"\x00\x00" + answer) if answer else None
    return {
        "time": when, "protocol": protocol, "name": name, "type": qtype,
        "rcode": packet.RCODE_NAMES.get(summary.rcode, str(summary.rcode)) if summary else "(no answer)",
        "truncated": bool(summary and summary.truncated), "answers": list(summary.answers) if summary else [],
        "source": source, "ms": round(seconds * 1000, 3),
    }  # fmt: skip
