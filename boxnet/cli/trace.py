"""`boxnet trace SRC DST[:PORT][/tcp|udp]`: the path, the deciding rule, a real probe; exit 0 if delivered."""

from __future__ import annotations

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.jsoncodec import dumps

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "trace"):
        return
    trace = commands.add_parser("trace", help="the path a packet takes from SRC to DST, and where it is dropped")
    trace.add_argument("source", metavar="SRC", help="a container, host, or an address of either")
    trace.add_argument("destination", metavar="DST[:PORT][/tcp|udp]",
                       help="a container, host, or an address; no port: ICMP echo")  # fmt: skip
    trace.add_argument("--format", choices=("text", "json"), default="text")
    trace.set_defaults(func=trace_command)


def trace_command(client: Client, args: Namespace) -> int:
    result = client.post("/boxnet/trace", {"Source": args.source, "Destination": args.destination})
    if args.format == "json":
        print(dumps(result, indent=2))
    else:
        for step in result["Steps"]:
            print(step)
        print(("DELIVERED: " if result["Delivered"] else "DROPPED: ") + result["Reason"])
    return 0 if result["Delivered"] else 1
