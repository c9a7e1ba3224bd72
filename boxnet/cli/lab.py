"""`boxnet lab ...`: many hosts on this machine (up, ls, env, exec, down). Runs here, as root; no daemon."""

from __future__ import annotations

import os
import sys

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.format import table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "lab"):
        return
    lab = commands.add_parser("lab", help="run several hosts, each with its own boxnetd, as namespaces here")
    sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    sub.required = True
    up = sub.add_parser("up", help="make a lab and form its swarm; returns when every node is ready")
    up.add_argument("name")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--managers", type=int, default=1)
    up.add_argument("--node-ttl", type=int, default=10, help="seconds until a silent node counts as gone")
    up.add_argument("--store", choices=["managed", "external"], default="managed",
                    help="managed: managers run etcd (swarm init/join); external: one etcd on the underlay and "
                         "every daemon on --cluster-store")  # fmt: skip
    up.set_defaults(func=lab_up)
    ls = sub.add_parser("ls", aliases=["list"], help="list the labs on this machine")
    ls.set_defaults(func=lab_ls)
    env = sub.add_parser("env", help="print the exports that point boxnet and docker at a lab host")
    env.add_argument("name")
    env.add_argument("lab_host", metavar="HOST", help="h1, h2, ... or the host's full name")
    env.set_defaults(func=lab_env)
    run = sub.add_parser("exec", help="run a command in a lab host's network namespace, with its env")
    run.add_argument("name")
    run.add_argument("lab_host", metavar="HOST")
    run.add_argument("argv", nargs="...", metavar="CMD")
    run.set_defaults(func=lab_exec)
    down = sub.add_parser("down", help="remove a lab: containers, daemons, namespaces, files")
    down.add_argument("name")
    down.set_defaults(func=lab_down)


def _need_root() -> None:
    if os.geteuid() != 0:
        from boxnet.errors import Forbidden

        raise Forbidden("labs make network namespaces: run as root")


def lab_up(client: Client, args: Namespace) -> int:
    from boxnet.lab import Lab

    _need_root()
    lab = Lab(args.name, args.hosts, args.managers, args.node_ttl, store=args.store).up()
    for host in lab.hosts:
        print(f"{host.name}  {host.address}  {host.record.role}  {host.socket}")
    print(f'\nPoint the CLIs at a host: eval "$(boxnet lab env {lab.name} h1)"')
    return 0


def lab_ls(client: Client, args: Namespace) -> int:
    from boxnet.lab.lab import labs

    rows = [[lab["Name"], lab["Phase"], str(len(lab["Hosts"])),
             str(sum(h["Role"] == "manager" for h in lab["Hosts"])),
             f"{sum(h['Daemon'] for h in lab['Hosts'])}/{len(lab['Hosts'])}"] for lab in labs()]  # fmt: skip
    print(table(["NAME", "PHASE", "HOSTS", "MANAGERS", "DAEMONS UP"], rows))
    return 0


def lab_env(client: Client, args: Namespace) -> int:
    from boxnet.lab import Lab

    host = Lab.load(args.name).host(args.lab_host)
    print(" ".join(f"export {k}={v}" for k, v in host.env.items()))
    return 0


def lab_exec(client: Client, args: Namespace) -> int:
    from boxnet.errors import InvalidArgument
    from boxnet.lab import Lab

    _need_root()
    if not args.argv:
        raise InvalidArgument("name a command to run")
    host = Lab.load(args.name).host(args.lab_host)
    os.environ.update(host.env)
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", host.name, *args.argv])


def lab_down(client: Client, args: Namespace) -> int:
    from boxnet.lab import Lab

    _need_root()
    Lab.load(args.name).down()
    print(f"lab {args.name} removed")
    return 0
