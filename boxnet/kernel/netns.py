"""Network namespaces: made and entered on worker threads, held by an fd until a process is inside.

setns(CLONE_NEWNET) changes the calling thread alone, so the daemon never calls it on a thread that serves
anything else: `run_in` hands the function to a worker thread, which enters the namespace, runs it, and goes
back to the namespace it started in before it takes the next job. A worker that cannot go back ends instead.
Sockets made inside stay bound to that namespace wherever they are used afterwards.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from boxnet.kernel import libc

T = TypeVar("T")

_idle: list[_Worker] = []
_idle_lock = threading.Lock()


class _Worker:
    """A thread that runs jobs, each possibly in another network namespace, and comes home after each.
    Starting a thread per job cost ~0.2 ms, three or four times per container start."""

    def __init__(self) -> None:
        # Home: the main thread's namespace (/proc/self is the thread group), which is never changed.
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], queue.SimpleQueue]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="boxnet-netns", daemon=True).start()

    def run(self, target: Callable[[], T]) -> T:
        reply: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()
        self._jobs.put((target, reply))
        ok, value = reply.get()
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    def _serve(self) -> None:
        while True:
            target, reply = self._jobs.get()
            try:
                outcome: tuple[bool, object] = (True, target())
            except BaseException as exc:  # handed to the caller's thread
                outcome = (False, exc)
            try:
                libc.setns(self._home, libc.CLONE_NEWNET)
            except OSError:
                reply.put(outcome)
                os.close(self._home)
                return  # not safe to reuse: the thread ends
            reply.put(outcome)
            with _idle_lock:
                _idle.append(self)


def _in_thread(target: Callable[[], T]) -> T:
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    return (worker or _Worker()).run(target)


def run_in(path: str, fn: Callable[..., T], *args: object) -> T:
    """Runs fn(*args) on a worker thread that has entered the network namespace at path."""

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
