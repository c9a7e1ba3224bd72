"""Network namespaces: made by a short-lived thread, pinned by a bind mount, entered only on threads.

setns(CLONE_NEWNET) changes the calling thread alone, so the daemon never calls it on a thread that serves
anything else: `run_in` starts a fresh thread, enters the namespace there, runs one function and lets the
thread end. Sockets made inside stay bound to that namespace wherever they are used afterwards.
"""

from __future__ import annotations

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


def create(setup: Callable[[], None] | None = None) -> int:
    """Makes a new network namespace and returns an fd that holds it.

    Nothing is mounted: the fd keeps the namespace alive until the container's first process is inside it,
    and from then on that process does (`/proc/<pid>/ns/net` names it). A daemon that dies before then takes
    the half-made namespace with it, and no mount table grows with the number of containers.
    `setup` runs inside the new namespace first (bringing lo up, say).
    """

    def make() -> int:
        libc.unshare(libc.CLONE_NEWNET)
        if setup is not None:
            setup()
        return os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    return _in_thread(make)


def fd_path(fd: int) -> str:
    """A path to the namespace an fd of this process holds, that another process (the shim) can open."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def process_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


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
