"""`boxnet overlay check NET`: the overlay doctor, one line per problem with its fix (exit 1 if any)."""

from __future__ import annotations

from boxnet.cli.client import Client
from boxnet.cli.flags import Namespace
from boxnet.cli.jsoncodec import dumps

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "overlay"):
        return
    overlay = commands.add_parser("overlay", help="overlay networks across the swarm")
    verbs = overlay.add_subparsers(dest="verb", metavar="COMMAND")
    verbs.required = True
    check = verbs.add_parser("check", help="MTU along the path, VXLAN entries against the control plane, "
                             "encryption per peer, on every node (a manager's command)")  # fmt: skip
    check.add_argument("network", metavar="NETWORK")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(func=check_command)


def check_command(client: Client, args: Namespace) -> int:
    found = client.get(f"/boxnet/overlay/{args.network}/check")
    if args.format == "json":
        print(dumps(found, indent=2))
        return 1 if found["Problems"] else 0
    print(render(found), end="")
    return 1 if found["Problems"] else 0


def render(found: dict) -> str:
    sealed = "encrypted (WireGuard)" if found["Encrypted"] else "not encrypted"
    mtu = "/".join(str(m) for m in found["Mtu"]) or "?"
    lines = [f"network {found['Network']}: VNI {found['Vni']}, {sealed}, MTU {mtu}, {found['Endpoints']} endpoints "
             f"on {len(found['Nodes'])} nodes ({', '.join(found['Nodes'])})"]  # fmt: skip
    for problem in found["Problems"]:
        lines.append(f"{problem['Node']}: {problem['Problem']}. Fix: {problem['Fix']}")
    if not found["Problems"]:
        lines.append("no problem found: every node's VXLAN entries match the control plane, full-size packets "
                     "cross every path" + (", every WireGuard peer is current" if found["Encrypted"] else ""))
    return "\n".join(lines) + "\n"
