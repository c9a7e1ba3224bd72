"""The per-container supervisor, run as `python -m boxnet.runtime.shim STATE_DIR READY_FD`.

It is started in its own session by the daemon and does not depend on it afterwards: killing boxnetd leaves
every container running. The shim enters the container's network namespace and a new PID namespace, forks
the container's init (which builds its mount, UTS and IPC namespaces, drops capabilities and execs the
command), copies the container's output into a JSON-lines log, and writes the exit status to `exit.json`
when the container ends. The daemon learns the container's PID, or why it failed to start, on READY_FD.

It imports nothing heavy so that it starts fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import sys
import termios
import time

from boxnet.kernel import libc
from boxnet.model.process import MASKED_PATHS, READONLY_PATHS
from boxnet.runtime import cgroups, identity, mounts, rootfs, tty
from boxnet.runtime.procs import proc_start_time

LOG_CHUNK = 65536
# The start of a failure that is the request's or the image's, not the machine's (a 400, not a 500).
INVALID_SETUP = "invalid container: "


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def _container_init(spec: dict, stdio: Stdio, status_w: int, alive: int) -> None:
    """Runs in the forked child, PID 1 of the container; never returns."""
    try:
        # Into its cgroups first, so that everything from here on counts against its limits.
        cgroups.join(spec.get("cgroups", []))
        os.setsid()
        for target, fd in enumerate(stdio.child_fds):
            os.dup2(fd, target)
        # Nothing of the shim's leaks into the container but its stdio, the exec-status pipe and the console
        # socket (with a TTY).
        _close_all_but({status_w, stdio.console_child, alive})
        libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC)
        # Private, as Docker's default: nothing the container mounts reaches the host, or the other way round.
        libc.mount("none", "/", None, libc.MS_REC | libc.MS_PRIVATE)
        if spec.get("image"):
            rootfs.image_root(spec)
        elif spec["rootfs"]:
            rootfs.root_directory(spec)
        else:
            rootfs.host_image(spec)
        identity.write_sysctls(spec.get("sysctls", {}))
        masked, readonly = spec.get("masked_paths"), spec.get("readonly_paths")
        rootfs.restrict_system_paths(MASKED_PATHS if masked is None else masked,
                                     READONLY_PATHS if readonly is None else readonly)  # fmt: skip
        if spec.get("hostname"):
            libc.sethostname(spec["hostname"])
        if stdio.tty:
            _open_console(stdio.console_child, spec.get("console_size") or [24, 80])
        identity.apply_limits(spec.get("ulimits", []), spec.get("oom_score_adj", 0))
        who = identity.resolve(spec.get("user", ""), spec.get("group_add", []))
        cwd = spec.get("cwd") or "/"
        if not os.path.isdir(cwd):
            try:
                os.makedirs(cwd, mode=0o755)  # as Docker: a working directory that is missing is made
            except OSError as exc:
                raise identity.IdentityError(f"working directory {cwd} is missing and cannot be made: "
                                             f"{exc.strerror}") from None  # fmt: skip
        env = dict(item.split("=", 1) for item in spec["env"])
        env.setdefault("HOME", who.home or "/")
        identity.become(who, spec["capabilities"], spec.get("no_new_privileges", False))
        # The container ends with its shim (after become: a change of uid clears this), so that no container
        # ever runs unsupervised; a shim gone already is checked for after setting it.
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([alive], [], [], 0)[0]:  # EOF: the shim's end of the pipe closed with it
            os._exit(137)
        os.chdir(cwd)
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    except (mounts.MountError, rootfs.RootError, identity.IdentityError) as exc:
        _report_and_exit(status_w, f"{INVALID_SETUP}{exc}")  # what the request or the image asked for
    except BaseException as exc:
        _report_and_exit(status_w, f"container setup failed: {exc}")
    try:
        os.execvpe(spec["argv"][0], spec["argv"], env)
    except OSError as exc:
        _report_and_exit(status_w, f"exec {spec['argv'][0]!r}: {exc.strerror}")


def _close_all_but(keep: set[int]) -> None:
    previous = 2
    for fd in sorted(fd for fd in keep if fd > 2):
        os.closerange(previous + 1, fd)
        previous = fd
    os.closerange(previous + 1, 1 << 16)


def _open_console(console_socket: int, size: list[int]) -> None:
    """The container's TTY, from its own devpts instance; its master goes to the shim over the console
    socket, as runc does."""
    master, slave = tty.open_pty("/dev/pts/ptmx", size)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    socket.send_fds(socket.socket(fileno=console_socket), [b"c"], [master])
    os.close(master)


def _report_and_exit(status_w: int, message: str) -> None:
    try:
        os.write(status_w, message.encode()[:4000])
    finally:
        os._exit(127)


def _log_line(log, stream: str, data: bytes) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
    log.write(json.dumps({"stream": stream, "log": data.decode("utf-8", "replace"), "time": stamp}) + "\n")
    log.flush()


def main() -> int:
    return run(sys.argv[1], int(sys.argv[2]))


@contextlib.contextmanager
def short_unix_path(directory: str, name: str):
    """A path to directory/name short enough for AF_UNIX (108 bytes), through an fd of the directory."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


class Stdio:
    """The container's standard streams: a pty (with a TTY) or pipes, and, with open stdin, a socket in the
    state directory where the daemon delivers an attached client's input."""

    def __init__(self, spec: dict, state_dir: str) -> None:
        self.tty = bool(spec.get("tty"))
        self.open_stdin = bool(spec.get("open_stdin"))
        self.stdin_once = bool(spec.get("stdin_once"))
        self.input_fd = -1
        self.console_child = -1
        self.outputs: dict[int, str] = {}
        if self.tty:
            # The container opens its TTY itself (see _open_console) and sends the master back on this pair.
            self.console_parent, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.console_child = child_end.detach()
            self.child_fds: tuple[int, ...] = ()
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if spec.get("open_stdin"):
                in_r, self.input_fd = os.pipe()
            else:
                in_r = os.open("/dev/null", os.O_RDONLY)
            self.child_fds = (in_r, out_w, err_w)
            self.outputs = {out_r: "stdout", err_r: "stderr"}
        self.listener: socket.socket | None = None
        if spec.get("open_stdin"):
            if os.path.exists(os.path.join(state_dir, "stdin.sock")):
                os.unlink(os.path.join(state_dir, "stdin.sock"))
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with short_unix_path(state_dir, "stdin.sock") as path:
                self.listener.bind(path)
            self.listener.listen(4)
        self.clients: dict[int, socket.socket] = {}

    def after_fork(self) -> None:
        for fd in {*self.child_fds, self.console_child} - {-1}:
            os.close(fd)

    def receive_console(self) -> bool:
        """The TTY's master from the container; False when the container failed before sending it."""
        _, fds, _, _ = socket.recv_fds(self.console_parent, 16, 1)
        self.console_parent.close()
        if not fds:
            return False
        self.outputs = {fds[0]: "stdout"}
        self.input_fd = fds[0] if self.open_stdin else -1
        return True

    def shim_fds(self) -> set[int]:
        fds = {*self.outputs, self.input_fd, *([self.listener.fileno()] if self.listener else [])}
        return fds | ({self.console_parent.fileno()} if self.tty else set())

    def watched(self) -> list[int]:
        return [*self.outputs, *([self.listener.fileno()] if self.listener else []), *self.clients]

    def handle_input(self, fd: int) -> bool:
        """A new client or a client's data; True when fd was one of these."""
        if self.listener is not None and fd == self.listener.fileno():
            client, _ = self.listener.accept()
            self.clients[client.fileno()] = client
            return True
        client = self.clients.get(fd)
        if client is None:
            return False
        data = client.recv(65536)
        if data and self.input_fd >= 0:
            with contextlib.suppress(OSError):  # the container closed its stdin: the input has nowhere to go
                os.write(self.input_fd, data)
        elif not data:
            client.close()
            del self.clients[fd]
            if self.stdin_once and not self.tty and self.input_fd >= 0:
                os.close(self.input_fd)  # the container reads EOF, as after `echo hi | docker run -i`
                self.input_fd = -1
        return True

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        if self.listener is not None:
            self.listener.close()


def run(state_dir: str, ready_fd: int) -> int:
    """The shim's whole life, from a fresh interpreter (main) or a fork of the fork-server."""
    log_fd = os.open(os.path.join(state_dir, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    # Before anything else: a daemon that dies before it learns this pid finds it here (engine/reconcile.py).
    _write_json(os.path.join(state_dir, "shim.json"),
                {"shim_pid": os.getpid(), "shim_start_time": proc_start_time(os.getpid())})  # fmt: skip
    with open(os.path.join(state_dir, "config.json")) as handle:
        spec = json.load(handle)
    spec["state_dir"] = state_dir
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    if spec["netns"]:
        fd = os.open(spec["netns"], os.O_RDONLY)
        libc.setns(fd, libc.CLONE_NEWNET)
        os.close(fd)
    if spec["pidns"] == "":
        libc.unshare(libc.CLONE_NEWPID)
    elif spec["pidns"] != "host":
        fd = os.open(spec["pidns"], os.O_RDONLY)
        libc.setns(fd, libc.CLONE_NEWPID)
        os.close(fd)

    stdio = Stdio(spec, state_dir)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    # Held open by the shim for its whole life: the container sees EOF on its end once the shim is gone.
    alive_r, alive_w = os.pipe2(os.O_CLOEXEC)

    child = os.fork()
    if child == 0:
        for fd in (*stdio.shim_fds(), status_r, ready_fd, alive_w):
            if fd >= 0 and fd not in stdio.child_fds and fd != stdio.console_child:
                os.close(fd)
        _container_init(spec, stdio, status_w, alive_r)
    stdio.after_fork()
    os.close(status_w)
    os.close(alive_r)
    if stdio.tty:
        stdio.receive_console()

    failure = b""
    while chunk := os.read(status_r, 4096):
        failure += chunk
    os.close(status_r)
    if failure:
        os.waitpid(child, 0)
        os.write(ready_fd, json.dumps({"error": failure.decode("utf-8", "replace")}).encode())
        os.close(ready_fd)
        _write_json(os.path.join(state_dir, "exit.json"), {"exit_code": 127, "error": failure.decode()})
        return 0
    try:
        os.write(ready_fd, json.dumps({"pid": child, "shim_pid": os.getpid()}).encode())
        os.close(ready_fd)
    except OSError:  # the daemon died before it heard of this container: it must not outlive the attempt
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        return 1
    try:
        return _supervise(state_dir, child, stdio)
    finally:
        stdio.close()


def _supervise(state_dir: str, child: int, stdio: Stdio) -> int:
    pidfd = os.pidfd_open(child)
    exit_code: int | None = None
    streams = stdio.outputs
    with open(os.path.join(state_dir, "container.log"), "a") as log:
        while streams or exit_code is None:
            watched = [*stdio.watched(), pidfd] if exit_code is None else list(streams)
            # Once the child is gone, give stragglers holding the pipes a moment, then stop waiting on them.
            ready, _, _ = select.select(watched, [], [], None if exit_code is None else 0.2)
            if not ready and exit_code is not None:
                break
            for fd in ready:
                if fd == pidfd:
                    _, status = os.waitpid(child, 0)
                    exit_code = os.waitstatus_to_exitcode(status)
                    if exit_code < 0:
                        exit_code = 128 - exit_code  # killed by a signal: 128+N, as a shell reports it
                    continue
                if stdio.handle_input(fd):
                    continue
                try:
                    data = os.read(fd, LOG_CHUNK)
                except OSError:  # a pty reads EIO once the last process holding its other end is gone
                    data = b""
                if data:
                    _log_line(log, streams[fd], data)
                else:
                    os.close(fd)
                    del streams[fd]
    _write_json(os.path.join(state_dir, "exit.json"), {"exit_code": exit_code, "finished_at": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
