"""Container commands: run, create, start, ps, inspect, exec, logs, stop, kill, restart, rm, wait."""

from __future__ import annotations

import contextlib
import os
import sys

from boxnet.cli import run_options
from boxnet.cli.client import SHUT_WR, Client, demux, quote, ref
from boxnet.cli.flags import REMAINDER, Namespace
from boxnet.cli.format import ports_text, print_inspected, render_template, table
from boxnet.cli.jsoncodec import dumps
from boxnet.cli.networks import filters_param
from boxnet.errors import InvalidArgument, NotFound

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any

COMMANDS = ("run", "create", "start", "ps", "inspect", "exec", "logs", "stop", "restart", "kill", "rm", "wait")


def register(commands: Any, wanted: str | None = None) -> None:
    """Adds the container commands; only `wanted` when given (building every parser costs the CLI ~15 ms)."""

    def want(name: str) -> bool:
        return wanted is None or wanted == name

    for name in ("run", "create"):
        if not want(name):
            continue
        # No -h for help: docker's -h is --hostname.
        run = commands.add_parser(name, help=f"{name} a container", add_help=False,
                                  usage=f"boxnet {name} [OPTIONS] [IMAGE] [--] [COMMAND...]")  # fmt: skip
        run.add_argument("--help", action="help")
        run_options.add_options(run)
        if name == "run":
            run.add_argument("-d", "--detach", action="store_true")
        run.set_defaults(func=run_container if name == "run" else create_container)

    if want("start"):
        start = commands.add_parser("start", help="start containers")
        start.add_argument("names", nargs="+")
        start.set_defaults(func=lambda c, a: each(c, a.names, lambda n: c.post(f"/containers/{ref(n)}/start")))

    if want("ps"):
        ps = commands.add_parser("ps", help="list containers")
        ps.add_argument("-a", "--all", action="store_true")
        ps.add_argument("-q", "--quiet", action="store_true")
        ps.add_argument("-f", "--filter", action="append", default=[])
        ps.add_argument("--format", default="")
        ps.add_argument("--no-trunc", action="store_true")
        ps.set_defaults(func=list_containers)

    if want("inspect"):
        inspect = commands.add_parser("inspect", help="show containers (or networks) in detail")
        inspect.add_argument("names", nargs="+")
        inspect.add_argument("-f", "--format", default="")
        inspect.add_argument("--type", choices=("container", "network"), default=None)
        inspect.set_defaults(func=inspect_objects)

    if want("exec"):
        exec_ = commands.add_parser("exec", help="run a command in a running container")
        exec_.add_argument("-i", "--interactive", action="store_true")
        exec_.add_argument("-t", "--tty", action="store_true")
        exec_.add_argument("-d", "--detach", action="store_true")
        exec_.add_argument("-e", "--env", action="append", default=[])
        exec_.add_argument("-w", "--workdir", default="")
        exec_.add_argument("-u", "--user", default="")
        exec_.add_argument("container")
        exec_.add_argument("cmd", nargs=REMAINDER)
        exec_.set_defaults(func=exec_command)

    if want("logs"):
        logs = commands.add_parser("logs", help="show a container's output")
        logs.add_argument("-f", "--follow", action="store_true")
        logs.add_argument("-t", "--timestamps", action="store_true")
        logs.add_argument("-n", "--tail", default="all")
        logs.add_argument("container")
        logs.set_defaults(func=show_logs)

    for verb in ("stop", "restart"):
        if not want(verb):
            continue
        command = commands.add_parser(verb, help=f"{verb} containers")
        command.add_argument("-t", "--time", type=int, default=None, help="seconds to wait (default: the "
                             "container's stop timeout, 10 s unless --stop-timeout set it)")  # fmt: skip
        if verb == "stop":
            command.add_argument("-s", "--signal", default="")
        command.add_argument("names", nargs="+")
        command.set_defaults(func=stop_containers if verb == "stop" else restart_containers)

    if want("kill"):
        kill = commands.add_parser("kill", help="send a signal to containers")
        kill.add_argument("-s", "--signal", default="SIGKILL")
        kill.add_argument("names", nargs="+")
        kill.set_defaults(func=lambda c, a: each(c, a.names, lambda n: c.post(f"/containers/{ref(n)}/kill",
                                                                                signal=a.signal)))  # fmt: skip

    if want("rm"):
        rm = commands.add_parser("rm", help="remove containers")
        rm.add_argument("-f", "--force", action="store_true")
        rm.add_argument("-v", "--volumes", action="store_true", help="remove the anonymous volumes it made too")
        rm.add_argument("names", nargs="+")
        rm.set_defaults(func=lambda c, a: each(c, a.names, lambda n: c.delete(
            f"/containers/{ref(n)}", force=int(a.force), v=1 if a.volumes else None)))  # fmt: skip

    if want("wait"):
        wait = commands.add_parser("wait", help="wait for containers to stop; print their exit codes")
        wait.add_argument("names", nargs="+")
        wait.set_defaults(func=wait_containers)


def _create(client: Client, args: Namespace) -> str:
    """Creates the container; an image the daemon lacks is pulled first, as docker run does."""

    def is_image(name: str) -> bool:
        try:
            client.get(f"/images/{quote(name, '/:@')}/json")
        except NotFound:
            return False
        return True

    body = run_options.create_body(args, is_image)
    try:
        return client.post("/containers/create", body, name=args.name or None)["Id"]
    except NotFound as exc:
        if not exc.message.startswith("No such image"):
            raise
    print(f"Unable to find image '{body['Image']}' locally", file=sys.stderr)
    from boxnet.cli.images import pull  # only runs that pull pay for it

    if pull(client, body["Image"], sys.stderr) != 0:
        return ""
    return client.post("/containers/create", body, name=args.name or None)["Id"]


def create_container(client: Client, args: Namespace) -> int:
    container_id = _create(client, args)
    if container_id:
        print(container_id)
    return 0 if container_id else 125


def run_container(client: Client, args: Namespace) -> int:
    container_id = _create(client, args)
    if not container_id:
        return 125
    attached = None
    if not args.detach:
        # As docker does: attach first, so that not a byte of output is missed, then start.
        query = {"stream": 1, "stdin": int(args.interactive), "stdout": 1, "stderr": 1}
        attached = client.stream("POST", f"/containers/{container_id}/attach", query, upgrade=True)
    try:
        client.post(f"/containers/{container_id}/start")
    except Exception:
        if not args.detach or args.rm:
            with contextlib.suppress(NotFound):  # removed by the daemon already (--rm)
                client.delete(f"/containers/{container_id}", force=1, v=1)
        raise
    if attached is not None:
        if not args.tty:
            _proxy_signals(client, container_id)
        _relay_exec(attached[0], attached[1], args.interactive, args.tty)
    if args.detach:
        print(container_id)
        return 0
    code = int(client.post(f"/containers/{container_id}/wait")["StatusCode"])
    if args.rm:
        client.delete(f"/containers/{container_id}", force=1, v=1)
    return code


def _proxy_signals(client: Client, container_id: str) -> None:
    """As the docker CLI does without a TTY: Ctrl-C and SIGTERM go to the container, which decides."""
    import signal

    def forward(signum: int, frame: object) -> None:
        try:
            Client(client.socket_path).post(f"/containers/{container_id}/kill", signal=signal.Signals(signum).name)
        except Exception as exc:  # the container may have ended meanwhile
            print(f"boxnet: could not forward {signal.Signals(signum).name}: {exc}", file=sys.stderr)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)


def _copy_logs(client: Client, container: str, follow: bool, timestamps: bool, tail: str) -> None:
    query = {"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": int(timestamps), "tail": tail}
    response, _ = client.stream("GET", f"/containers/{ref(container)}/logs", query)
    copy_output(response.fp, raw=response.getheader("Content-Type") == "application/vnd.docker.raw-stream")


def copy_output(reader: Any, raw: bool) -> None:
    """A container's output to ours: raw (a TTY's) to stdout, or multiplexed into stdout and stderr."""
    if raw:
        while chunk := reader.read1(65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return
    for stream, data in demux(reader.read):
        out = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        out.write(data)
        out.flush()


def show_logs(client: Client, args: Namespace) -> int:
    _copy_logs(client, args.container, args.follow, args.timestamps, args.tail)
    return 0


def list_containers(client: Client, args: Namespace) -> int:
    found = client.get("/containers/json", all=int(args.all), filters=filters_param(args.filter))
    if args.quiet:
        for c in found:
            print(c["Id"] if args.no_trunc else c["Id"][:12])
        return 0
    if args.format:
        for c in found:
            print(dumps(c) if args.format == "json" else render_template(args.format, c))
        return 0
    rows = []
    for c in found:
        command = c["Command"] if args.no_trunc or len(c["Command"]) <= 20 else c["Command"][:17] + "..."
        rows.append([c["Id"] if args.no_trunc else c["Id"][:12], c["Image"], f'"{command}"',
                     c["Status"], ports_text(c["Ports"]), c["Names"][0].lstrip("/")])  # fmt: skip
    print(table(["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES"], rows))
    return 0


def inspect_objects(client: Client, args: Namespace) -> int:
    found = []
    for name in args.names:
        if args.type in (None, "container"):
            try:
                found.append(client.get(f"/containers/{ref(name)}/json"))
                continue
            except NotFound:
                if args.type == "container":
                    raise
        try:
            found.append(client.get(f"/networks/{ref(name)}"))
        except NotFound:
            raise NotFound(f"No such object: {name}") from None
    print_inspected(found, args.format)
    return 0


def each(client: Client, names: list[str], action: Any) -> int:
    status = 0
    for name in names:
        try:
            action(name)
            print(name)
        except Exception as exc:  # docker goes on with the other names and fails at the end
            print(f"Error response from daemon: {getattr(exc, 'message', exc)}", file=sys.stderr)
            status = getattr(exc, "exit_code", 1)
    return status


def stop_containers(client: Client, args: Namespace) -> int:
    return each(client, args.names, lambda n: client.post(f"/containers/{ref(n)}/stop", t=args.time,
                                                            signal=args.signal or None))  # fmt: skip


def restart_containers(client: Client, args: Namespace) -> int:
    return each(client, args.names, lambda n: client.post(f"/containers/{ref(n)}/restart", t=args.time))


def wait_containers(client: Client, args: Namespace) -> int:
    for name in args.names:
        print(client.post(f"/containers/{ref(name)}/wait")["StatusCode"])
    return 0


def exec_command(client: Client, args: Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise InvalidArgument("exec needs a command")
    interactive = args.interactive and not args.detach
    body = {"Cmd": command, "Env": args.env, "WorkingDir": args.workdir, "Tty": args.tty, "User": args.user,
            "AttachStdin": interactive, "AttachStdout": True, "AttachStderr": True,
            "ConsoleSize": run_options.terminal_size() if args.tty else None}  # fmt: skip
    exec_id = client.post(f"/containers/{ref(args.container)}/exec", body)["Id"]
    if args.detach:
        client.post(f"/exec/{exec_id}/start", {"Detach": True, "Tty": args.tty})
        return 0
    response, sock = client.stream("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": args.tty},
                                   upgrade=True)  # fmt: skip
    _relay_exec(response, sock, interactive, args.tty)
    return int(client.get(f"/exec/{exec_id}/json")["ExitCode"] or 0)


def _relay_exec(response: Any, sock: Any, interactive: bool, use_tty: bool) -> None:
    """Output from the upgraded connection (exec or attach) to stdout/stderr; with -i, stdin to it."""
    import termios
    import tty

    saved = None
    if use_tty and sys.stdin.isatty():
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
    try:
        if interactive:
            import threading

            threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
        copy_output(response.fp, raw=use_tty)  # whatever follows the response headers is the stream
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def _pump_stdin(sock: Any) -> None:
    try:
        while data := os.read(sys.stdin.fileno(), 65536):
            sock.sendall(data)
        sock.shutdown(SHUT_WR)
    except OSError:
        pass
