"""`boxnet network ...`: create, ls, inspect, rm, connect, disconnect, prune."""

from __future__ import annotations

from boxnet.cli.client import Client, ref
from boxnet.cli.flags import Namespace
from boxnet.cli.format import print_inspected, render_template, table
from boxnet.cli.jsoncodec import dumps
from boxnet.errors import InvalidArgument

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "network"):
        return
    network = commands.add_parser("network", help="manage networks")
    sub = network.add_subparsers(dest="network_command", metavar="COMMAND")
    sub.required = True

    create = sub.add_parser("create", help="create a network")
    create.add_argument("name")
    create.add_argument("-d", "--driver", default="bridge")
    create.add_argument("--subnet", action="append", default=[])
    create.add_argument("--gateway", action="append", default=[])
    create.add_argument("--ip-range", action="append", default=[])
    create.add_argument("--internal", action="store_true")
    create.add_argument("--attachable", action="store_true")
    create.add_argument("--ingress", action="store_true", help="the swarm's routing mesh network (overlay)")
    create.add_argument("--ipv6", action="store_true")
    create.add_argument("-o", "--opt", action="append", default=[], help="driver option KEY=VALUE")
    create.add_argument("--label", action="append", default=[])
    create.set_defaults(func=create_network)

    ls = sub.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[])
    ls.add_argument("--format", default="")
    ls.add_argument("--no-trunc", action="store_true")
    ls.set_defaults(func=list_networks)

    inspect = sub.add_parser("inspect", help="show networks in detail")
    inspect.add_argument("names", nargs="+")
    inspect.add_argument("-f", "--format", default="")
    inspect.set_defaults(func=inspect_networks)

    rm = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=remove_networks)

    connect = sub.add_parser("connect", help="connect a container to a network")
    connect.add_argument("network")
    connect.add_argument("container")
    connect.add_argument("--ip", default="")
    connect.add_argument("--alias", action="append", default=[])
    connect.set_defaults(func=connect_container)

    disconnect = sub.add_parser("disconnect", help="disconnect a container from a network")
    disconnect.add_argument("network")
    disconnect.add_argument("container")
    disconnect.add_argument("-f", "--force", action="store_true")
    disconnect.set_defaults(func=disconnect_container)

    prune = sub.add_parser("prune", help="remove every network no container uses")
    prune.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")
    prune.set_defaults(func=prune_networks)


def key_values(items: list[str], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and what not in ("label", "option")):
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def filters_param(items: list[str]) -> str | None:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter {item!r} (expected name=value)")
        filters.setdefault(key, []).append(value)
    return dumps(filters) if filters else None


def create_network(client: Client, args: Namespace) -> int:
    if len(args.gateway) > len(args.subnet) or len(args.ip_range) > len(args.subnet):
        raise InvalidArgument("--gateway and --ip-range need a --subnet each")
    config = []
    for index, subnet in enumerate(args.subnet):
        entry = {"Subnet": subnet}
        if index < len(args.gateway):
            entry["Gateway"] = args.gateway[index]
        if index < len(args.ip_range):
            entry["IPRange"] = args.ip_range[index]
        config.append(entry)
    body = {
        "Name": args.name, "Driver": args.driver, "Internal": args.internal, "Attachable": args.attachable,
        "Ingress": args.ingress,
        "EnableIPv6": args.ipv6, "IPAM": {"Driver": "default", "Config": config},
        "Options": key_values(args.opt, "option"), "Labels": key_values(args.label, "label"),
    }  # fmt: skip
    print(client.post("/networks/create", body)["Id"])
    return 0


def list_networks(client: Client, args: Namespace) -> int:
    found = client.get("/networks", filters=filters_param(args.filter))
    if args.quiet:
        for network in found:
            print(network["Id"] if args.no_trunc else network["Id"][:12])
        return 0
    if args.format == "json":
        for network in found:
            print(dumps(network))
        return 0
    if args.format:
        for network in found:
            print(render_template(args.format, network))
        return 0
    rows = [[n["Id"] if args.no_trunc else n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in found]
    print(table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows))
    return 0


def inspect_networks(client: Client, args: Namespace) -> int:
    print_inspected([client.get(f"/networks/{ref(name)}") for name in args.names], args.format)
    return 0


def remove_networks(client: Client, args: Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            client.delete(f"/networks/{ref(name)}")
            print(name)
        except Exception as exc:  # docker goes on with the other names and fails at the end
            print(f"Error response from daemon: {getattr(exc, 'message', exc)}", file=__import__("sys").stderr)
            status = getattr(exc, "exit_code", 1)
    return status


def connect_container(client: Client, args: Namespace) -> int:
    endpoint: dict[str, Any] = {"Aliases": args.alias}
    if args.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
    client.post(f"/networks/{ref(args.network)}/connect", {"Container": args.container, "EndpointConfig": endpoint})
    return 0


def disconnect_container(client: Client, args: Namespace) -> int:
    client.post(f"/networks/{ref(args.network)}/disconnect", {"Container": args.container, "Force": args.force})
    return 0


def prune_networks(client: Client, args: Namespace) -> int:
    deleted = client.post("/networks/prune").get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        for name in deleted:
            print(name)
    return 0
