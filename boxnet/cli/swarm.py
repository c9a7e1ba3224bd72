"""`boxnet swarm ...` (init, join, join-token, leave) and `boxnet node ...` (ls, inspect, update, rm)."""

from __future__ import annotations

from boxnet.cli.client import Client, ref
from boxnet.cli.flags import Namespace
from boxnet.cli.format import print_inspected, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted in (None, "swarm"):
        swarm = commands.add_parser("swarm", help="manage the swarm")
        sub = swarm.add_subparsers(dest="swarm_command", metavar="COMMAND")
        sub.required = True
        init = sub.add_parser("init", help="make this node the first manager of a new swarm")
        init.add_argument("--advertise-addr", default="")
        init.add_argument("--listen-addr", default="0.0.0.0:2377")
        init.set_defaults(func=swarm_init)
        join = sub.add_parser("join", help="join a swarm as a worker or a manager (by the token)")
        join.add_argument("remote", metavar="HOST:PORT")
        join.add_argument("--token", required=True)
        join.add_argument("--advertise-addr", default="")
        join.add_argument("--listen-addr", default="0.0.0.0:2377")
        join.add_argument("--availability", default="active")
        join.set_defaults(func=swarm_join)
        token = sub.add_parser("join-token", help="print the command that joins a worker or a manager")
        token.add_argument("role", choices=["worker", "manager"])
        token.add_argument("-q", "--quiet", action="store_true")
        token.set_defaults(func=swarm_join_token)
        leave = sub.add_parser("leave", help="leave the swarm")
        leave.add_argument("-f", "--force", action="store_true")
        leave.set_defaults(func=swarm_leave)
        rotate = sub.add_parser("rotate-keys", help="every node makes itself a new WireGuard key (encrypted "
                                "overlays; also every 12 h on its own)")  # fmt: skip
        rotate.set_defaults(func=swarm_rotate_keys)
    if wanted in (None, "node"):
        node = commands.add_parser("node", help="manage the swarm's nodes")
        sub = node.add_subparsers(dest="node_command", metavar="COMMAND")
        sub.required = True
        ls = sub.add_parser("ls", aliases=["list"], help="list nodes")
        ls.add_argument("-q", "--quiet", action="store_true")
        ls.set_defaults(func=node_ls)
        inspect = sub.add_parser("inspect", help="show nodes in detail")
        inspect.add_argument("names", nargs="+")
        inspect.add_argument("-f", "--format", default="")
        inspect.set_defaults(func=node_inspect)
        update = sub.add_parser("update", help="change a node's availability or labels")
        update.add_argument("name")
        update.add_argument("--availability", default="")
        update.add_argument("--label-add", action="append", default=[])
        update.add_argument("--label-rm", action="append", default=[])
        update.set_defaults(func=node_update)
        rm = sub.add_parser("rm", aliases=["remove"], help="remove nodes that are down")
        rm.add_argument("names", nargs="+")
        rm.add_argument("-f", "--force", action="store_true")
        rm.set_defaults(func=node_rm)


def swarm_init(client: Client, args: Namespace) -> int:
    node_id = client.post("/swarm/init", {"AdvertiseAddr": args.advertise_addr, "ListenAddr": args.listen_addr})
    print(f"Swarm initialized: current node ({node_id}) is now a manager.\n")
    _print_join(client, "worker")
    return 0


def _print_join(client: Client, role: str, quiet: bool = False) -> None:
    swarm = client.get("/swarm")
    token = swarm["JoinTokens"]["Worker" if role == "worker" else "Manager"]
    if quiet:
        print(token)
        return
    info = client.get("/info")["Swarm"]
    address = next((m["Addr"] for m in info.get("RemoteManagers") or [] if m["NodeID"] == info["NodeID"]), "")
    print(f"To add a {role} to this swarm, run the following command:\n\n    boxnet swarm join --token {token} "
          f"{address}\n")  # fmt: skip


def swarm_join(client: Client, args: Namespace) -> int:
    client.post("/swarm/join", {"RemoteAddrs": [args.remote], "JoinToken": args.token,
                                "AdvertiseAddr": args.advertise_addr, "ListenAddr": args.listen_addr,
                                "Availability": args.availability})  # fmt: skip
    role = "manager" if client.get("/info")["Swarm"]["ControlAvailable"] else "worker"
    print(f"This node joined a swarm as a {role}.")
    return 0


def swarm_join_token(client: Client, args: Namespace) -> int:
    _print_join(client, args.role, args.quiet)
    return 0


def swarm_leave(client: Client, args: Namespace) -> int:
    client.post("/swarm/leave", force=1 if args.force else None)
    print("Node left the swarm.")
    return 0


def node_ls(client: Client, args: Namespace) -> int:
    nodes = sorted(client.get("/nodes"), key=lambda n: n["Description"]["Hostname"])
    if args.quiet:
        print("\n".join(n["ID"] for n in nodes))
        return 0
    self_id = client.get("/info")["Swarm"]["NodeID"]
    rows = []
    for node in nodes:
        manager = node.get("ManagerStatus") or {}
        status = "Leader" if manager.get("Leader") else ("Reachable" if manager.get("Reachability") == "reachable"
                                                         else "Unreachable" if manager else "")  # fmt: skip
        rows.append([node["ID"] + (" *" if node["ID"] == self_id else ""), node["Description"]["Hostname"],
                     node["Status"]["State"].capitalize(), node["Spec"]["Availability"].capitalize(), status,
                     node["Description"]["Engine"]["EngineVersion"]])  # fmt: skip
    print(table(["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"], rows))
    return 0


def node_inspect(client: Client, args: Namespace) -> int:
    print_inspected([client.get(f"/nodes/{ref(name)}") for name in args.names], args.format)
    return 0


def node_update(client: Client, args: Namespace) -> int:
    from boxnet.cli.networks import key_values

    node = client.get(f"/nodes/{ref(args.name)}")
    spec = dict(node["Spec"])
    labels = dict(spec.get("Labels") or {})
    labels.update(key_values(args.label_add, "label"))
    for key in args.label_rm:
        labels.pop(key, None)
    spec["Labels"] = labels
    if args.availability:
        spec["Availability"] = args.availability
    client.post(f"/nodes/{node['ID']}/update", spec, version=node["Version"]["Index"])
    print(args.name)
    return 0


def node_rm(client: Client, args: Namespace) -> int:
    for name in args.names:
        client.delete(f"/nodes/{ref(name)}", force=1 if args.force else None)
        print(name)
    return 0


def swarm_rotate_keys(client: Client, args: Namespace) -> int:
    epoch = client.post("/boxnet/swarm/rotate-keys")["Epoch"]
    print(f"key epoch {epoch}: every node makes itself a new WireGuard key as it sees it")
    return 0
