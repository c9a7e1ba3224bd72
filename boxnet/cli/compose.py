"""`boxnet compose [-f FILE] [-p NAME] up|down|ps|logs`: a compose file run without docker-compose."""

from __future__ import annotations

import os

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.format import table

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "compose"):
        return
    compose = commands.add_parser("compose", help="run a compose file's services, networks and volumes")
    compose.add_argument("-f", "--file", default="", help="default: docker-compose.yml (or compose.yml) here")
    compose.add_argument("-p", "--project-name", default="", help="default: the directory's name")
    verbs = compose.add_subparsers(dest="verb", metavar="COMMAND")
    verbs.required = True
    up = verbs.add_parser("up", help="make and start everything (detached)")
    up.add_argument("-d", "--detach", action="store_true", help="(always: boxnet compose does not attach)")
    up.add_argument("services", nargs="*")
    up.set_defaults(func=up_command)
    down = verbs.add_parser("down", help="stop and remove the containers and networks (-v: volumes too)")
    down.add_argument("-v", "--volumes", action="store_true")
    down.set_defaults(func=down_command)
    ps = verbs.add_parser("ps", help="the project's containers")
    ps.set_defaults(func=ps_command)
    logs = verbs.add_parser("logs", help="the services' output")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("services", nargs="*")
    logs.set_defaults(func=logs_command)


def _project(args: Namespace) -> Any:
    from boxnet.compose import project

    path = args.file or project.find_file(os.getcwd())
    return project.load(path, args.project_name)


def up_command(client: Client, args: Namespace) -> int:
    from boxnet.compose import runner

    found = _project(args)
    if args.services:
        unknown = sorted(set(args.services) - set(found.services))
        if unknown:
            from boxnet.errors import InvalidArgument

            raise InvalidArgument(f"no such service: {', '.join(unknown)}")
        wanted: set[str] = set()
        pending = list(args.services)
        while pending:  # what the named services depend on comes along, however deep
            name = pending.pop()
            if name not in wanted:
                wanted.add(name)
                pending.extend(found.services[name].depends_on)
        found.services = {k: v for k, v in found.services.items() if k in wanted}
    runner.up(client, found)
    return 0


def down_command(client: Client, args: Namespace) -> int:
    from boxnet.compose import runner

    runner.down(client, _project(args), volumes=args.volumes)
    return 0


def ps_command(client: Client, args: Namespace) -> int:
    from boxnet.compose import runner

    print(table(["NAME", "COMMAND", "SERVICE", "STATUS", "PORTS"], runner.ps_rows(client, _project(args).name)), end="")
    return 0


def logs_command(client: Client, args: Namespace) -> int:
    from boxnet.cli.containers import _copy_logs
    from boxnet.compose import runner

    found = _project(args)
    for container in runner.containers(client, found.name):
        service = container["Labels"].get("com.docker.compose.service", "")
        if args.services and service not in args.services:
            continue
        _copy_logs(client, container["Id"], args.follow, False, "all")
    return 0
