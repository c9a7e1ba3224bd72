"""The few libc calls Python 3.11 does not wrap: setns, unshare, mount, umount2, sethostname, prctl."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

PR_CAPBSET_DROP = 24
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None,
            ctypes.c_ulong(flags), data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )  # fmt: skip


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0), f"prctl {option}")


def drop_bounding_capabilities(keep: set[int] | list[int]) -> None:
    """Removes every capability not in keep from the bounding set: what an exec'd root process can hold."""
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last_cap = int(handle.read())
    for cap in range(last_cap + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)


def pivot_root(new_root: str, put_old: str) -> None:
    SYS_pivot_root = 155  # x86_64
    _check(_libc.syscall(SYS_pivot_root, new_root.encode(), put_old.encode()), "pivot_root")


MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip


def mount_setattr(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = False) -> None:
    """Changes a mount's flags, or a whole tree's with recursive (mount_setattr, Linux 5.12+)."""
    SYS_mount_setattr = 442  # x86_64
    AT_FDCWD = -100
    AT_RECURSIVE = 0x8000
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(
        _libc.syscall(SYS_mount_setattr, AT_FDCWD, path.encode(), AT_RECURSIVE if recursive else 0,
                      ctypes.byref(attr), ctypes.sizeof(attr)),
        f"mount_setattr {path}",
    )  # fmt: skip


def mount_setattr_readonly_recursive(path: str) -> None:
    """Makes a whole mount tree read-only."""
    mount_setattr(path, MOUNT_ATTR_RDONLY, recursive=True)


PR_SET_NO_NEW_PRIVS = 38


def set_no_new_privileges() -> None:
    """From here on, exec cannot grant privileges (setuid bits and file capabilities are ignored)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), "prctl(PR_SET_NO_NEW_PRIVS)")  # fmt: skip


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2) (Linux 5.6+): path resolved under dirfd with the resolve rules; the new descriptor."""
    SYS_openat2 = 437  # the same number on every architecture
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    result = _libc.syscall(SYS_openat2, dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return result


AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40


def clone_tree(source_fd: int) -> int:
    """open_tree(2) (Linux 5.2+): a detached copy of the mount tree at source_fd (a recursive bind, not yet
    attached anywhere); its descriptor."""
    SYS_open_tree = 428  # the same number on every architecture
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE
    return _check(_libc.syscall(SYS_open_tree, source_fd, b"", ctypes.c_uint(flags)), "open_tree")


def set_tree_attributes(tree_fd: int, attr_set: int) -> None:
    """mount_setattr(2) on a detached tree's descriptor, recursively: before it is visible anywhere."""
    SYS_mount_setattr = 442
    attr = _MountAttr(attr_set, 0, 0, 0)
    _check(_libc.syscall(SYS_mount_setattr, tree_fd, b"", ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
                         ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")  # fmt: skip


def attach_tree(tree_fd: int, target_fd: int) -> None:
    """move_mount(2): the detached tree onto the directory (or file) target_fd refers to."""
    SYS_move_mount = 429
    _check(_libc.syscall(SYS_move_mount, tree_fd, b"", target_fd, b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)), "move_mount")  # fmt: skip
