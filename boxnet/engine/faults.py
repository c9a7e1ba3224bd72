"""Fault injection for tests: BOXNET_FAULTS=point[,point...] makes the engine fail at those points.

It proves that a failure half-way through an operation leaves nothing behind. Unset, it costs a set lookup.
"""

from __future__ import annotations

import os

from boxnet.errors import Internal

POINTS = frozenset(p for p in os.environ.get("BOXNET_FAULTS", "").split(",") if p)


def check(point: str) -> None:
    if point in POINTS:
        raise Internal(f"injected fault at {point}")
