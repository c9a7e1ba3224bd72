"""Network namespaces: made by a short-lived thread, pinned by a bind mount, entered only on threads.

setns(CLONE_NEWNET) changes the calling thread alone, so the daemon never calls it on a thread that serves
anything else: `run_in` starts a fresh thread, enters the namespace there, runs one function and lets the
thread end. Sockets made inside stay bound to that namespace wherever they are used afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from boxnet.kernel import libc

T = TypeVar("T")


def _in_thread(target: Callable[[], T]) -> T:
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(target())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=body, name="boxnet-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def run_in(path: str, fn: Callable[..., T], *args: object) -> T:
    """Runs fn(*args) on a fresh thread that has entered the network namespace pinned at path."""

    def enter_and_run() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(fd, libc.CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn(*args)

    return _in_thread(enter_and_run)


def create(path: str, setup: Callable[[], None] | None = None) -> None:
    """Makes a new network namespace and pins it at path (a bind mount of its nsfs file).

    `setup` runs inside the new namespace before the thread ends (bringing lo up, say).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def make() -> None:
        libc.unshare(libc.CLONE_NEWNET)
        libc.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, libc.MS_BIND)
        if setup is not None:
            setup()

    try:
        _in_thread(make)
    except BaseException:
        remove(path)
        raise


def remove(path: str) -> None:
    """Unpins and deletes a namespace file; a missing one is not an error (teardown is idempotent)."""
    with contextlib.suppress(OSError):
        libc.umount(path, libc.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_pinned(path: str) -> bool:
    """True when path is a live namespace mount (after a reboot the file may remain without one)."""
    try:
        with open("/proc/self/mountinfo") as mounts:
            return any(line.split()[4] == path for line in mounts)
    except OSError:
        return False


def register(name: str, target: str, directory: str = "/run/netns") -> bool:
    """Makes `ip netns exec <name>` find target, unless the name is taken by something else."""
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, name)
    if os.path.lexists(link):
        return os.path.islink(link) and os.readlink(link) == target
    os.symlink(target, link)
    return True


def unregister(name: str, target: str, directory: str = "/run/netns") -> None:
    """Removes the registration only if it still points at boxnet's namespace file."""
    link = os.path.join(directory, name)
    try:
        if os.path.islink(link) and os.readlink(link) == target:
            os.unlink(link)
    except FileNotFoundError:
        pass
