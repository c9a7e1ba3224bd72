"""`boxnet volume create|ls|inspect|rm|prune`: named volumes, with docker's verbs."""

from __future__ import annotations

from boxnet.cli.client import Client, quote
from boxnet.cli.containers import each
from boxnet.cli.flags import Namespace
from boxnet.cli.format import print_each_inspected, render_template, table
from boxnet.cli.jsoncodec import dumps
from boxnet.cli.networks import filters_param, key_values

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "volume"):
        return
    volume = commands.add_parser("volume", help="manage volumes")
    verbs = volume.add_subparsers(dest="verb", metavar="COMMAND")
    verbs.required = True
    create = verbs.add_parser("create", help="make a volume")
    create.add_argument("name", nargs="?", default="")
    create.add_argument("-d", "--driver", default="local")
    create.add_argument("-o", "--opt", action="append", default=[])
    create.add_argument("--label", action="append", default=[])
    create.set_defaults(func=create_command)
    listing = verbs.add_parser("ls", help="list volumes")
    listing.add_argument("-q", "--quiet", action="store_true")
    listing.add_argument("-f", "--filter", action="append", default=[])
    listing.add_argument("--format", default="")
    listing.set_defaults(func=list_command)
    inspect = verbs.add_parser("inspect", help="a volume's details")
    inspect.add_argument("names", nargs="+")
    inspect.add_argument("-f", "--format", default="")
    inspect.set_defaults(func=inspect_command)
    remove = verbs.add_parser("rm", help="remove volumes no container uses")
    remove.add_argument("names", nargs="+")
    remove.add_argument("-f", "--force", action="store_true")
    remove.set_defaults(func=remove_command)
    prune = verbs.add_parser("prune", help="remove unused anonymous volumes (with -a: every unused volume)")
    prune.add_argument("-a", "--all", action="store_true")
    prune.add_argument("-f", "--force", action="store_true", help="(no prompt is asked either way)")
    prune.add_argument("--filter", action="append", default=[])
    prune.set_defaults(func=prune_command)


def create_command(client: Client, args: Namespace) -> int:
    volume = client.post("/volumes/create", {"Name": args.name, "Driver": args.driver,
                                             "DriverOpts": key_values(args.opt, "option"),
                                             "Labels": key_values(args.label, "label")})  # fmt: skip
    print(volume["Name"])
    return 0


def list_command(client: Client, args: Namespace) -> int:
    volumes = client.get("/volumes", filters=filters_param(args.filter))["Volumes"]
    if args.format:
        for volume in volumes:
            print(dumps(volume) if args.format == "json" else render_template(args.format, volume))
    elif args.quiet:
        for volume in volumes:
            print(volume["Name"])
    else:
        print(table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in volumes]), end="")
    return 0


def inspect_command(client: Client, args: Namespace) -> int:
    return print_each_inspected(lambda name: client.get(f"/volumes/{quote(name)}"), args.names, args.format)


def remove_command(client: Client, args: Namespace) -> int:
    return each(client, args.names, lambda name: client.delete(f"/volumes/{quote(name)}",
                                                               force=1 if args.force else None))  # fmt: skip


def prune_command(client: Client, args: Namespace) -> int:
    filters = list(args.filter) + (["all=true"] if args.all else [])
    answer = client.post("/volumes/prune", filters=filters_param(filters))
    deleted = answer.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        print("\n".join(deleted))
        print()
    print(f"Total reclaimed space: {answer.get('SpaceReclaimed', 0)}B")
    return 0
