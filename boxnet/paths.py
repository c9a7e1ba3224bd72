"""Where a daemon keeps its state and its socket, from BOXNET_ROOT and BOXNET_HOST."""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/boxnet"
DEFAULT_SOCKET = "/run/boxnet/boxnet.sock"


def state_root() -> str:
    return os.environ.get("BOXNET_ROOT") or DEFAULT_ROOT


def socket_path() -> str:
    """BOXNET_HOST=unix:///path wins; else $BOXNET_ROOT/boxnet.sock when BOXNET_ROOT is set; else the default."""
    host = os.environ.get("BOXNET_HOST", "")
    if host:
        if not host.startswith("unix://"):
            raise ValueError(f"BOXNET_HOST={host!r}: only unix:///path is supported")
        return host[len("unix://") :]
    if os.environ.get("BOXNET_ROOT"):
        return os.path.join(os.environ["BOXNET_ROOT"], "boxnet.sock")
    return DEFAULT_SOCKET


def trace_records(root: str) -> str:
    """Where a trace records the nft table it is about to make (boxnet.diag.trace)."""
    return os.path.join(root, "traces")
