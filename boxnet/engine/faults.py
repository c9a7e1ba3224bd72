"""Fault injection for tests: BOXNET_FAULTS=point[,point...] makes the engine fail at those points, and
BOXNET_CRASH=point[,...] kills the daemon there with SIGKILL, as a power cut or the OOM killer would.

They prove that a failure half-way through an operation leaves nothing behind, and that a daemon killed at
any step leaves a ledger that the next one settles. Unset, a check costs two set lookups.
"""

from __future__ import annotations

import os
import signal

from boxnet.errors import Internal

POINTS = frozenset(p for p in os.environ.get("BOXNET_FAULTS", "").split(",") if p)
CRASHES = frozenset(p for p in os.environ.get("BOXNET_CRASH", "").split(",") if p)


def check(point: str) -> None:
    if point in CRASHES:
        os.kill(os.getpid(), signal.SIGKILL)
    if point in POINTS:
        raise Internal(f"injected fault at {point}")
