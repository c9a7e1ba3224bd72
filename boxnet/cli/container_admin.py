"""Container commands that change a container without starting or ending it: pause, unpause, rename, and
container prune."""

from __future__ import annotations

import sys

from boxnet.cli.client import Client, ref
from boxnet.cli.flags import Namespace
from boxnet.cli.networks import filters_param

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    from boxnet.cli.containers import each

    for verb in ("pause", "unpause"):
        if wanted in (None, verb):
            command = commands.add_parser(verb, help=f"{verb} every process of containers")
            command.add_argument("names", nargs="+")
            command.set_defaults(func=lambda c, a, verb=verb: each(c, a.names, lambda n: c.post(
                f"/containers/{ref(n)}/{verb}")))  # fmt: skip
    if wanted in (None, "rename"):
        rename = commands.add_parser("rename", help="rename a container (its DNS names follow at once)")
        rename.add_argument("container")
        rename.add_argument("new_name")
        rename.set_defaults(func=lambda c, a: c.post(f"/containers/{ref(a.container)}/rename", name=a.new_name))
    if wanted in (None, "container"):
        container = commands.add_parser("container", help="manage containers (prune)")
        verbs = container.add_subparsers(dest="verb", metavar="COMMAND")
        verbs.required = True
        prune = verbs.add_parser("prune", help="remove every stopped container")
        prune.add_argument("-f", "--force", action="store_true", help="do not ask")
        prune.add_argument("--filter", action="append", default=[], help="until=24h, label=KEY[=VALUE]")
        prune.set_defaults(func=prune_containers)


def prune_containers(client: Client, args: Namespace) -> int:
    from boxnet.cli.monitor import decimal_size

    if not args.force:
        answer = input("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    result = client.post("/containers/prune", filters=filters_param(args.filter))
    deleted = result.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:\n" + "\n".join(deleted) + "\n")
    print(f"Total reclaimed space: {decimal_size(result.get('SpaceReclaimed', 0))}")
    sys.stdout.flush()
    return 0
