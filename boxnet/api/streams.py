"""Streamed responses: container logs (optionally followed) and exec sessions on a hijacked connection."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any

from boxnet.api.server import STDERR, STDOUT, Request, Stream, frame
from boxnet.engine import log_files
from boxnet.engine.controller import Engine
from boxnet.engine.execs import ExecSession
from boxnet.errors import InvalidArgument
from boxnet.kernel.readiness import readable
from boxnet.model.container import Container
from boxnet.runtime import tty
from boxnet.runtime.shim import short_unix_path

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def logs_stream(engine: Engine, container: Container, request: Request) -> Stream:
    want = {"stdout": request.flag("stdout"), "stderr": request.flag("stderr")}
    if not any(want.values()):
        raise InvalidArgument("you must choose at least one stream (stdout or stderr)")
    follow, timestamps = request.flag("follow"), request.flag("timestamps")
    tail = request.arg("tail") or "all"
    if tail != "all" and not tail.isdigit():
        raise InvalidArgument(f"invalid tail {tail!r}")
    path = os.path.join(engine.config.container_dir(container.id), "container.log")
    tty = container.tty

    def encode(entry: dict[str, Any]) -> bytes:
        return _encode(entry, tty, timestamps)

    def send(sock: socket.socket, entry: dict[str, Any]) -> None:
        if want.get(entry["stream"]):
            sock.sendall(encode(entry))

    def run(sock: socket.socket, rfile: Any) -> None:
        log = log_files.open_log(path)
        try:
            entries, offset = log_files.read_log_lines(log, 0)
            entries = [e for e in entries if want.get(e["stream"])]
            if tail != "all":
                entries = entries[-int(tail):] if int(tail) else []
            for entry in entries:
                sock.sendall(encode(entry))
            if follow:
                log_files.follow(engine, container, log, offset, lambda e: send(sock, e))
        finally:
            if log is not None:
                log.close()

    return Stream(run, upgrade=False, content_type=RAW if tty else MULTIPLEXED)


def _encode(entry: dict[str, Any], tty: bool, timestamps: bool = False) -> bytes:
    """A log entry as the client reads it: raw for a TTY, else framed by stream (Docker's multiplexing)."""
    payload = entry["log"].encode()
    if timestamps:
        payload = entry["time"].encode() + b" " + payload
    return payload if tty else frame(STDOUT if entry["stream"] == "stdout" else STDERR, payload)


def attach_stream(engine: Engine, container: Container, request: Request) -> Stream:
    """Docker's attach: the container's output from now on and, with stdin=1, the client's input to it."""
    want = {"stdout": request.flag("stdout"), "stderr": request.flag("stderr")}
    attach_stdin = request.flag("stdin") and container.open_stdin
    path = os.path.join(engine.config.container_dir(container.id), "container.log")
    stdin_socket = os.path.join(engine.config.container_dir(container.id), "stdin.sock")
    tty = container.tty
    # A container not started yet starts with an empty log; a running one shows only what comes next.
    offset = 0 if container.state.status == "created" else _log_end(path)
    log = log_files.open_log(path)  # now: a short --rm container may be gone, files and all, before run() reads

    def emit(sock: socket.socket, entry: dict[str, Any]) -> None:
        if want.get(entry["stream"]):
            sock.sendall(_encode(entry, tty))

    def run(sock: socket.socket, rfile: Any) -> None:
        if attach_stdin:
            threading.Thread(target=_deliver_input, args=(engine, container, rfile, stdin_socket),
                             daemon=True).start()  # fmt: skip
        try:
            log_files.follow(engine, container, log, offset, lambda e: emit(sock, e), until_started_and_ended=True,
                    interval=0.02)  # fmt: skip
        finally:
            if log is not None:
                log.close()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    return Stream(run, upgrade=True, content_type=RAW if tty else MULTIPLEXED)


def wait_stream(engine: Engine, container: Container, condition: str) -> Stream:
    """Docker's wait: the headers at once (the docker CLI waits for them before it starts the container),
    the status when the condition is met. A client that hangs up ends the wait."""
    from boxnet.engine.containers import WAIT_CONDITIONS

    if condition not in WAIT_CONDITIONS:
        raise InvalidArgument(f"invalid condition {condition!r}: one of {', '.join(WAIT_CONDITIONS)}")

    def run(sock: socket.socket, rfile: Any) -> None:
        def hung_up() -> bool:
            ready = readable([sock], 0)
            return bool(ready) and not sock.recv(1, socket.MSG_PEEK)

        code = engine.containers.wait(container.id, condition, abandoned=hung_up)
        sock.sendall(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")

    return Stream(run, upgrade=False, content_type="application/json")


def _log_end(path: str) -> int:
    """The offset just past the log's last complete line, reading back from the end (a long-running
    container's log can be large, and attach wants only what comes next)."""
    try:
        with open(path, "rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            while position > 0:
                start = max(0, position - 65536)
                handle.seek(start)
                newline = handle.read(position - start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                position = start
    except FileNotFoundError:
        pass
    return 0


def _deliver_input(engine: Engine, container: Container, rfile: Any, stdin_socket: str) -> None:
    """Client input to the shim's stdin socket, once the container runs; the client's end is the container's
    end of input (with StdinOnce, which the shim applies)."""
    deadline = time.monotonic() + 60
    while container.state.status != "running" or not os.path.exists(stdin_socket):
        if container.state.status in ("exited", "dead") or time.monotonic() > deadline:
            return
        time.sleep(0.01)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as shim:
        try:
            with short_unix_path(os.path.dirname(stdin_socket), os.path.basename(stdin_socket)) as path:
                shim.connect(path)
            while data := rfile.read1(65536):
                shim.sendall(data)
        except OSError:
            pass


def exec_stream(engine: Engine, session: ExecSession) -> Stream:
    def run(sock: socket.socket, rfile: Any) -> None:
        process = session.process
        assert process is not None
        if session.tty:
            outputs = {session.pty_master: STDOUT}
        else:
            outputs = {process.stdout.fileno(): STDOUT, process.stderr.fileno(): STDERR}  # type: ignore[union-attr]
        if session.attach_stdin and (session.tty or process.stdin):
            threading.Thread(target=_pump_input, args=(rfile, session), daemon=True).start()
        while outputs:
            ready = readable(outputs, 0.5)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # a pty reads EIO once its last writer is gone
                    data = b""
                if not data:
                    del outputs[fd]
                    continue
                sock.sendall(data if session.tty else frame(outputs[fd], data))
            if not ready and process.poll() is not None and session.tty:
                break
        engine.execs.finish(session)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    return Stream(run, upgrade=True, content_type=RAW if session.tty else MULTIPLEXED)


def _pump_input(rfile: Any, session: ExecSession) -> None:
    """Client input to the process; the client's half-close becomes EOF on the process's stdin."""
    process = session.process
    assert process is not None
    try:
        while data := rfile.read1(65536):
            if session.tty:
                os.write(session.pty_master, data)
            else:
                process.stdin.write(data)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
    except (OSError, ValueError):
        pass
    finally:
        if not session.tty and process.stdin:
            with contextlib.suppress(OSError):
                process.stdin.close()


def finish_in_background(engine: Engine, session: ExecSession) -> None:
    def drain() -> None:
        process = session.process
        assert process is not None
        process.communicate() if not session.tty else process.wait()
        engine.execs.finish(session)

    threading.Thread(target=drain, daemon=True).start()


def resize(session: ExecSession, height: str, width: str) -> None:
    if session.pty_master < 0:
        return
    try:
        rows, cols = int(height or 0), int(width or 0)
    except ValueError:
        rows = cols = -1
    if not (0 <= rows <= 65535 and 0 <= cols <= 65535):
        raise InvalidArgument(f"invalid terminal size h={height!r} w={width!r}: numbers from 0 to 65535")
    tty.set_size(session.pty_master, rows, cols)


PCAPNG = "application/x-pcapng"


def _number(body: dict[str, Any], key: str, kind: type = int) -> Any:
    value = body.get(key) or 0
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{key} must be a number, at least 0")
    return kind(value)


def capture_stream(engine: Engine, body: dict[str, Any]) -> Stream:
    """A capture as a pcapng byte stream on a hijacked connection. It ends with the count or the duration,
    or when the client closes its side (Ctrl-C), always with a statistics block per interface."""
    from boxnet.capture.filters import check_filter, check_snaplen, substitute_names
    from boxnet.capture.session import SNAPLEN, Capture, DirectCapture
    from boxnet.diag.capture_targets import CaptureTargets

    targets = body.get("Targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InvalidArgument("Targets must be a list of names")
    bpf = body.get("Filter") or ""
    if not isinstance(bpf, str):
        raise InvalidArgument("Filter must be a string")
    check_filter(bpf)
    resolver = CaptureTargets(engine.view)
    interface = str(body.get("Interface") or "")
    services = [t.split(":", 1)[1] for t in targets if t.startswith("service:")]
    others = [t for t in targets if not t.startswith("service:")]
    underlay = bool(body.get("Underlay"))
    points = resolver.points(others, interface) if others or not (services or underlay) else []
    arguments = (substitute_names(bpf, resolver.addresses()), _number(body, "Count"), _number(body, "Duration", float),
                 check_snaplen(_number(body, "Snaplen") or SNAPLEN))  # fmt: skip
    capture: Any
    if services or underlay:
        # Across the swarm: each node's part merged on one timeline (diag/cluster_capture.py).
        from boxnet.diag.cluster_capture import ClusterCapture, Settings

        settings = Settings(arguments[0], interface, arguments[3], arguments[1], arguments[2], underlay)
        capture = ClusterCapture(engine, services, points, settings)
    elif len(points) == 1:
        capture = DirectCapture(points[0], *arguments)  # dumpcap's pcapng passed through untouched
    else:
        capture = Capture(points, *arguments)  # tcpdumps merged on one timeline
    capture.start()
    to_passed_file = bool(body.get("PassFd"))

    def run(sock: socket.socket, rfile: Any) -> None:
        if not to_passed_file:
            _drive_capture(capture, sock, sock.sendall, sock.fileno())
            return
        out_fd = _receive_file(sock)
        if out_fd is None:
            capture.abort()
            return

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(out_fd, view) :]

        try:
            _drive_capture(capture, sock, write, out_fd)
        finally:
            os.close(out_fd)

    return Stream(run, upgrade=True, content_type=PCAPNG)


def _receive_file(sock: socket.socket) -> int | None:
    """`boxnet capture -w FILE` on this host: the client sends its open file (SCM_RIGHTS) and the daemon
    writes the capture into it itself, so no byte crosses the socket; the socket only says when to stop
    (the client shuts its side) and when it is over (the daemon closes its side)."""
    sock.settimeout(10)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    except (OSError, ValueError):
        return None
    finally:
        sock.settimeout(None)
    return fds[0] if len(fds) == 1 else None


def _drive_capture(capture: Any, sock: socket.socket, write: Any, out_fd: int) -> None:
    """Runs the capture into write (or out_fd, where the bytes can be spliced); the client shutting its
    side of the socket stops it, and shutting ours tells the client it is over."""
    from boxnet.capture.session import DirectCapture

    def watch_client() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(4096):
                pass
        capture.stopping.set()

    threading.Thread(target=watch_client, name="capture-client", daemon=True).start()
    with contextlib.suppress(OSError):
        if isinstance(capture, DirectCapture):
            capture.run(write, out_fd)
        else:
            capture.run(write)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
