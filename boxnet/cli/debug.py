"""`boxnet debug NAME [CMD...]`: the host's tools inside a container's network namespace (netshoot's
`--net container:NAME`, without an image): tcpdump, ss, dig, curl, a shell."""

from __future__ import annotations

import sys

from boxnet.cli.client import Client, ref
from boxnet.cli.containers import _relay_exec
from boxnet.cli.flags import REMAINDER, Namespace

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "debug"):
        return
    debug = commands.add_parser("debug", help="run a host tool (default: a shell) in a container's network")
    debug.add_argument("container")
    debug.add_argument("--pid", action="store_true", help="its PID namespace too, with a /proc of its own")
    debug.add_argument("cmd", nargs=REMAINDER, metavar="CMD")
    debug.set_defaults(func=debug_command)


def debug_command(client: Client, args: Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    interactive = sys.stdin.isatty() or not command
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    body = {"Cmd": command or ["sh"], "Tty": tty, "AttachStdin": interactive, "AttachStdout": True,
            "AttachStderr": True, "BoxnetDebug": "net,pid" if args.pid else "net"}  # fmt: skip
    exec_id = client.post(f"/containers/{ref(args.container)}/exec", body)["Id"]
    response, sock = client.stream("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty},
                                   upgrade=True)  # fmt: skip
    _relay_exec(response, sock, interactive, tty)
    return int(client.get(f"/exec/{exec_id}/json")["ExitCode"] or 0)
