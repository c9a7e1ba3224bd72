"""libnftables through ctypes: one JSON transaction per call, in-process, no `nft` subprocess."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from typing import Any

from boxnet.errors import Internal
from boxnet.kernel.netlink import note_nft_committer

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            path = ctypes.util.find_library("nftables") or "libnftables.so.1"
            lib = ctypes.CDLL(path, use_errno=True)
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
        return _lib


class NftError(Internal):
    pass


NFT_CTX_OUTPUT_TERSE = 1 << 11  # sets and maps without their elements


def _execute(text: str, flags: int) -> tuple[int, str, str]:
    """One libnftables call: (return code, output, error). A context per call: its netlink socket belongs to
    the namespace the calling thread is in at that moment, which is what lets the same code serve the
    daemon's namespace and a container's."""
    lib = _library()
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        lib.nft_ctx_output_set_flags(ctx, flags)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        note_nft_committer()
        rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode().strip()
        return rc, output, error
    finally:
        lib.nft_ctx_free(ctx)


def run(commands: list[dict[str, Any]] | list[str] | str) -> dict[str, Any]:
    """Runs one atomic batch (JSON commands, or nft syntax lines) in the calling thread's network namespace."""
    if isinstance(commands, str):
        text = commands
    elif commands and isinstance(commands[0], str):
        text = "\n".join(commands) + "\n"  # type: ignore[arg-type]
    else:
        text = json.dumps({"nftables": commands})
    rc, output, error = _execute(text, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)
    if rc != 0:
        raise NftError(f"nftables: {error or 'transaction failed'}")
    return json.loads(output) if output.strip() else {}


def list_objects(what: str) -> list[dict[str, Any]]:
    """`nft -t -j list <what>`: the objects (tables, chains, rules, sets without their elements) as
    {kind: body} dicts; [] if it does not exist."""
    rc, output, _ = _execute(f"list {what}", NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_TERSE)
    if rc != 0 or not output.strip():
        return []
    return [item for item in json.loads(output)["nftables"] if "metainfo" not in item]


def list_text(what: str) -> str:
    """`nft list <what>` as nft prints it (counters included), in the calling thread's namespace; '' if the
    object does not exist."""
    rc, output, _ = _execute(f"list {what}", NFT_CTX_OUTPUT_HANDLE)
    return output if rc == 0 else ""
