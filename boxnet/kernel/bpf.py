"""The bpf(2) system call, through ctypes: maps, program loading, cgroup links, and listing what is loaded.

Only what boxnet uses. Every object is an fd; closing the last fd of a link detaches its program, which is
how boxnet's programs end with the daemon that attached them (see engine/connect_redirect.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_BPF = 321  # x86_64

MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY, PROG_LOAD = 0, 1, 2, 3, 4, 5
PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, LINK_CREATE = 11, 13, 15, 28

MAP_TYPE_HASH, MAP_TYPE_LRU_HASH = 1, 9
MAP_F_NO_PREALLOC = 1
PROG_TYPE_CGROUP_SOCK_ADDR = 18
CGROUP_INET4_CONNECT, CGROUP_INET4_GETPEERNAME = 10, 29

_ATTR_SIZE = 144  # sizeof(union bpf_attr) in the 6.1 uapi; the kernel accepts any size with zeroed tail
_SO_NETNS_COOKIE = 71
_OBJ_NAME_LEN = 16


class BpfError(OSError):
    pass


def _bpf(command: int, attr: ctypes.Array, what: str) -> int:
    result = _libc.syscall(_SYS_BPF, command, attr, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf {what}: {os.strerror(err)}")
    return result


def _bpf_unless_missing(command: int, attr: ctypes.Array, what: str) -> bool:
    """False, instead of an error, when what was asked for is not there (ENOENT)."""
    try:
        _bpf(command, attr, what)
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def _attr() -> ctypes.Array:
    return ctypes.create_string_buffer(_ATTR_SIZE)


def _address(buffer: ctypes.Array | None) -> int:
    return ctypes.addressof(buffer) if buffer is not None else 0


def _name(name: str) -> bytes:
    return name.encode()[: _OBJ_NAME_LEN - 1]


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int, name: str, flags: int = 0) -> int:
    attr = _attr()
    struct.pack_into("<IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    attr[28 : 28 + len(_name(name))] = _name(name)
    return _bpf(MAP_CREATE, attr, f"map create {name}")


def update(map_fd: int, key: bytes, value: bytes) -> None:
    key_buffer = ctypes.create_string_buffer(key, len(key))
    value_buffer = ctypes.create_string_buffer(value, len(value))
    attr = _attr()
    struct.pack_into("<IxxxxQQQ", attr, 0, map_fd, _address(key_buffer), _address(value_buffer), 0)
    _bpf(MAP_UPDATE_ELEM, attr, "map update")


def delete(map_fd: int, key: bytes) -> bool:
    """True when the key was there; a missing key is not an error (teardown is idempotent)."""
    key_buffer = ctypes.create_string_buffer(key, len(key))
    attr = _attr()
    struct.pack_into("<IxxxxQ", attr, 0, map_fd, _address(key_buffer))
    return _bpf_unless_missing(MAP_DELETE_ELEM, attr, "map delete")


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    key_buffer = ctypes.create_string_buffer(key, len(key))
    value_buffer = ctypes.create_string_buffer(value_size)
    attr = _attr()
    struct.pack_into("<IxxxxQQ", attr, 0, map_fd, _address(key_buffer), _address(value_buffer))
    return value_buffer.raw if _bpf_unless_missing(MAP_LOOKUP_ELEM, attr, "map lookup") else None


def keys(map_fd: int, key_size: int) -> Iterator[bytes]:
    current: ctypes.Array | None = None
    while True:
        following = ctypes.create_string_buffer(key_size)
        attr = _attr()
        struct.pack_into("<IxxxxQQ", attr, 0, map_fd, _address(current), _address(following))
        if not _bpf_unless_missing(MAP_GET_NEXT_KEY, attr, "map next key"):
            return
        yield following.raw
        current = following


def load_program(prog_type: int, code: bytes, name: str, expected_attach_type: int = 0) -> int:
    """Loads a program; a refusal carries the verifier's log in its message."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(b"GPL")

    def attempt(log: ctypes.Array | None) -> int:
        attr = _attr()
        struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(code) // 8, _address(insns), _address(license_text),
                         1 if log is not None else 0, len(log) if log is not None else 0, _address(log))  # fmt: skip
        attr[48 : 48 + len(_name(name))] = _name(name)
        struct.pack_into("<I", attr, 68, expected_attach_type)
        return _bpf(PROG_LOAD, attr, f"load {name}")

    try:
        return attempt(None)  # the log costs verification time: only asked for to explain a refusal
    except BpfError as refusal:
        log = ctypes.create_string_buffer(1 << 20)
        with contextlib.suppress(BpfError):
            os.close(attempt(log))  # refused again, as expected; a program that passes now is not kept
        verifier = log.value.decode(errors="replace").strip()
        raise BpfError(refusal.errno, f"{refusal.strerror}\n{verifier}") from None


def link_cgroup(prog_fd: int, cgroup_fd: int, attach_type: int) -> int:
    """Attaches a program to a cgroup (with others beside it); it stays attached while the link fd is open."""
    attr = _attr()
    struct.pack_into("<IIII", attr, 0, prog_fd, cgroup_fd, attach_type, 0)
    return _bpf(LINK_CREATE, attr, "link create")


@dataclass(frozen=True)
class ProgramInfo:
    id: int
    name: str
    type: int


def programs() -> list[ProgramInfo]:
    """Every program loaded in the kernel (ids, names, types): what the leak checks compare."""
    found = []
    next_id = 0
    while True:
        attr = _attr()
        struct.pack_into("<I", attr, 0, next_id)
        if not _bpf_unless_missing(PROG_GET_NEXT_ID, attr, "next program id"):
            return found
        next_id = struct.unpack_from("<I", attr, 4)[0]
        attr = _attr()
        struct.pack_into("<I", attr, 0, next_id)
        try:
            fd = _bpf(PROG_GET_FD_BY_ID, attr, "program by id")
        except BpfError:
            continue  # gone in between
        try:
            info = ctypes.create_string_buffer(232)
            attr = _attr()
            struct.pack_into("<IIQ", attr, 0, fd, len(info), _address(info))
            _bpf(OBJ_GET_INFO_BY_FD, attr, "program info")
            prog_type, prog_id = struct.unpack_from("<II", info, 0)
            name = info.raw[64 : 64 + _OBJ_NAME_LEN].split(b"\0", 1)[0].decode()
            found.append(ProgramInfo(prog_id, name, prog_type))
        finally:
            os.close(fd)


def netns_cookie() -> int:
    """The cookie of the calling thread's network namespace, as bpf_get_netns_cookie() sees it (Linux 5.14+)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return struct.unpack("<Q", sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8))[0]
