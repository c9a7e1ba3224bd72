"""`boxnet dns log NAME`: the questions one container asked 127.0.0.11, what it got back, from where, how fast."""

from __future__ import annotations

import time

from boxnet.cli.client import Client, ref
from boxnet.cli.flags import Namespace
from boxnet.cli.jsoncodec import dumps

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "dns"):
        return
    dns = commands.add_parser("dns", help="the embedded DNS (127.0.0.11)")
    sub = dns.add_subparsers(dest="dns_command", metavar="COMMAND")
    sub.required = True
    log = sub.add_parser("log", help="the DNS queries a container made, with answers and where they came from")
    log.add_argument("container")
    log.add_argument("-n", "--tail", type=int, default=100, help="how many of the latest queries (default 100)")
    log.add_argument("--format", choices=("text", "json"), default="text")
    log.set_defaults(func=show_log)


def show_log(client: Client, args: Namespace) -> int:
    entries = client.get(f"/boxnet/containers/{ref(args.container)}/dns-log", tail=args.tail)
    if args.format == "json":
        print(dumps(entries, indent=2))
        return 0
    print(f"{'TIME':<12}  {'PROTO':<5}  {'QUESTION':<32}  {'TYPE':<5}  {'RCODE':<8}  {'MS':>8}  {'FROM':<24}  ANSWER")
    for entry in entries:
        clock = time.strftime("%H:%M:%S", time.localtime(entry["time"])) + f".{int(entry['time'] * 1000) % 1000:03d}"
        answer = ", ".join(entry["answers"]) + (" (truncated: retry over TCP)" if entry["truncated"] else "")
        print(f"{clock:<12}  {entry['protocol']:<5}  {entry['name']:<32}  {entry['type']:<5}  {entry['rcode']:<8}  "
              f"{entry['ms']:>8.3f}  {entry['source']:<24}  {answer}")  # fmt: skip
    return 0
