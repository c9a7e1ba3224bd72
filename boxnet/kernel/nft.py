"""libnftables through ctypes: one JSON transaction per call, in-process, no `nft` subprocess."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from typing import Any

from boxnet.errors import Internal

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


def run(commands: list[dict[str, Any]] | list[str] | str) -> dict[str, Any]:
    """Runs one atomic batch (JSON commands, or nft syntax lines) in the calling thread's network namespace.

    A context is made per call: its netlink socket belongs to the namespace the thread is in at that
    moment, which is what lets the same code serve the daemon's namespace and a container's.
    """
    lib = _library()
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if isinstance(commands, str):
            text = commands
        elif commands and isinstance(commands[0], str):
            text = "\n".join(commands) + "\n"  # type: ignore[arg-type]
        else:
            text = json.dumps({"nftables": commands})
        rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode().strip()
        if rc != 0:
            raise NftError(f"nftables: {error or 'transaction failed'}")
        return json.loads(output) if output.strip() else {}
    finally:
        lib.nft_ctx_free(ctx)



def list_text(what: str) -> str:
    """`nft list <what>` as nft prints it (counters included), in the calling thread's namespace; '' if the
    object does not exist."""
    lib = _library()
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_HANDLE)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if lib.nft_run_cmd_from_buffer(ctx, f"list {what}".encode()) != 0:
            return ""
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
    finally:
        lib.nft_ctx_free(ctx)
