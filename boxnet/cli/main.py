"""boxnet's command line: docker's verbs and flags, each a request to boxnetd's API."""

from __future__ import annotations

import sys

from boxnet.cli import containers
from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace, Parser
from boxnet.cli.jsoncodec import dumps
from boxnet.errors import BoxnetError

# Commands outside containers.py, and the module that registers each.
MODULES = {"network": "networks", "dns": "dns", "capture": "capture", "sniff": "capture", "debug": "debug",
           "topology": "topology", "trace": "trace", "swarm": "swarm", "node": "swarm", "lab": "lab",
           "service": "service", "overlay": "overlay", "volume": "volumes", "compose": "compose",
           **dict.fromkeys(("events", "stats", "top", "system"), "monitor"),
           **dict.fromkeys(("pause", "unpause", "rename", "container"), "container_admin"),
           **dict.fromkeys(("images", "image", "pull", "load", "save", "import", "tag", "rmi", "history"), "images")}


def requested_command(argv: list[str]) -> str | None:
    """The subcommand on the command line, so that only its parser is built; None builds them all."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-H", "--host"):
            skip = True
        elif arg.startswith("-"):
            if arg in ("-h", "--help"):
                return None
        else:
            known = (*containers.COMMANDS, *MODULES, "version")
            return arg if arg in known else None
    return None


def build_parser(wanted: str | None = None) -> Parser:
    parser = Parser(prog="boxnet", description="Container networking from Linux primitives.")
    parser.add_argument("-H", "--host", help="daemon socket, unix:///path (default: BOXNET_HOST or BOXNET_ROOT)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    containers.register(commands, wanted)
    # Only the module of the command asked for is imported: every import is start-up time of every command.
    for module in dict.fromkeys(MODULES.values()) if wanted is None else [MODULES.get(wanted)]:
        if module:
            import importlib  # here: `run` and the other container commands need none of it

            importlib.import_module(f"boxnet.cli.{module}").register(commands, wanted)
    if wanted in (None, "version"):
        version = commands.add_parser("version", help="show the client's and the daemon's versions")
        version.set_defaults(func=_version)
    return parser


def _version(client: Client, args: Namespace) -> int:
    from boxnet import __version__

    print(f"Client: boxnet {__version__}")
    server = client.get("/version")
    print(f"Server: boxnetd {server['Version']} (API {server['ApiVersion']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(requested_command(argv))
    args = parser.parse_args(argv)
    socket_path = None
    if args.host:
        if not args.host.startswith("unix://"):
            parser.error("--host: only unix:///path is supported")
        socket_path = args.host[len("unix://") :]
    try:
        client = Client(socket_path)
    except ValueError as exc:
        print(f"boxnet: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(client, args) or 0)
    except BoxnetError as exc:
        print(f"Error response from daemon: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        client.close()


def print_json(data: object) -> None:
    print(dumps(data, indent=4))


if __name__ == "__main__":
    sys.exit(main())
