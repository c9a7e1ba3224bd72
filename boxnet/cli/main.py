"""boxnet's command line: docker's verbs and flags, each a request to boxnetd's API."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from boxnet.cli import containers
from boxnet.cli.client import Client
from boxnet.errors import BoxnetError

# Commands outside containers.py, and the module that registers each.
MODULES = {"network": "networks", "dns": "dns", "capture": "capture", "sniff": "capture", "debug": "debug",
           "topology": "topology", "trace": "trace"}


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


class _Formatter(argparse.HelpFormatter):
    """argparse builds a formatter for every add_argument and, without a width, imports shutil to measure the
    terminal: ~3 ms of every command. The width comes from COLUMNS, or 100."""

    def __init__(self, prog: str) -> None:
        columns = os.environ.get("COLUMNS", "")
        super().__init__(prog, width=int(columns) - 2 if columns.isdigit() else 100)


def _subparser(**kwargs: object) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(formatter_class=_Formatter, **kwargs)  # type: ignore[arg-type]


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxnet", description="Container networking from Linux primitives.",
                                     formatter_class=_Formatter)
    parser.add_argument("-H", "--host", help="daemon socket, unix:///path (default: BOXNET_HOST or BOXNET_ROOT)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_subparser)
    commands.required = True
    containers.register(commands, wanted)
    # Only the module of the command asked for is imported: every import is start-up time of every command.
    for module in dict.fromkeys(MODULES.values()) if wanted is None else [MODULES.get(wanted)]:
        if module:
            importlib.import_module(f"boxnet.cli.{module}").register(commands, wanted)
    if wanted in (None, "version"):
        version = commands.add_parser("version", help="show the client's and the daemon's versions")
        version.set_defaults(func=_version)
    return parser


def _version(client: Client, args: argparse.Namespace) -> int:
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
    print(json.dumps(data, indent=4))


if __name__ == "__main__":
    sys.exit(main())
