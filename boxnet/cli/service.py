"""`boxnet service ...`: create, ls, ps, inspect, scale, update, rm, with docker's flags."""

from __future__ import annotations

import re
import sys
import urllib.parse

from boxnet.cli.client import Client, demux, ref
from boxnet.cli.flags import Namespace
from boxnet.cli.format import print_inspected, table
from boxnet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, "service"):
        return
    service = commands.add_parser("service", help="manage the swarm's services")
    sub = service.add_subparsers(dest="service_command", metavar="COMMAND")
    sub.required = True
    create = sub.add_parser("create", help="create a service")
    create.add_argument("image")
    create.add_argument("command", nargs="...")
    create.add_argument("--name", default="")
    create.add_argument("--replicas", type=int, default=None)
    create.add_argument("--mode", default="replicated", choices=["replicated", "global"])
    create.add_argument("--network", action="append", default=[])
    create.add_argument("--endpoint-mode", default="vip", choices=["vip", "dnsrr"])
    create.add_argument("--constraint", action="append", default=[])
    create.add_argument("--label", action="append", default=[])
    create.add_argument("--container-label", action="append", default=[])
    create.add_argument("-e", "--env", action="append", default=[])
    create.add_argument("-p", "--publish", action="append", default=[])
    create.add_argument("-d", "--detach", action="store_true", help="(always: boxnet does not wait)")
    _rollout_flags(create)
    create.set_defaults(func=service_create)
    ls = sub.add_parser("ls", aliases=["list"], help="list services")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(func=service_ls)
    ps = sub.add_parser("ps", help="list a service's tasks")
    ps.add_argument("service")
    ps.set_defaults(func=service_ps)
    inspect = sub.add_parser("inspect", help="show services in detail")
    inspect.add_argument("names", nargs="+")
    inspect.add_argument("-f", "--format", default="")
    inspect.set_defaults(func=service_inspect)
    scale = sub.add_parser("scale", help="set the replicas of services: SERVICE=N ...")
    scale.add_argument("pairs", nargs="+", metavar="SERVICE=N")
    scale.set_defaults(func=service_scale)
    update = sub.add_parser("update", help="change a service (its tasks roll, one at a time)")
    update.add_argument("service")
    update.add_argument("--replicas", type=int, default=None)
    update.add_argument("--env-add", action="append", default=[])
    update.add_argument("--image", default="")
    update.add_argument("--constraint-add", action="append", default=[])
    update.add_argument("--publish-add", action="append", default=[])
    update.add_argument("--publish-rm", action="append", default=[], help="a published port or a TARGET[/PROTOCOL]")
    update.add_argument("--rollback", action="store_true", help="back to the spec before the last update")
    _rollout_flags(update)
    rollback = sub.add_parser("rollback", help="return a service to the spec before its last update")
    rollback.add_argument("service")
    rollback.set_defaults(func=service_rollback)
    update.set_defaults(func=service_update)
    logs = sub.add_parser("logs", help="show the logs of a service's tasks, wherever they run")
    logs.add_argument("service")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("-n", "--tail", default="all")
    logs.add_argument("--raw", action="store_true", help="the lines alone, without NAME.SLOT.ID@NODE")
    logs.set_defaults(func=service_logs)
    rm = sub.add_parser("rm", aliases=["remove"], help="remove services")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=service_rm)


def _rollout_flags(parser: Any) -> None:
    parser.add_argument("--update-parallelism", type=int, default=None, help="tasks replaced at once (0: all)")
    parser.add_argument("--update-delay", default=None, help="a duration between batches: 10s, 1m30s, 500ms")


def parse_duration(text: str) -> int:
    """Go's durations as the docker CLI takes them (1h2m3s, 500ms, 1.5s), in nanoseconds."""
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"invalid duration {text!r}: for example 10s, 1m30s or 500ms")
    return int(sum(float(number) * units[unit] for number, unit in parts))


def _rollout(args: Namespace, config: dict) -> dict:
    if args.update_parallelism is not None:
        config["Parallelism"] = args.update_parallelism
    if args.update_delay is not None:
        config["Delay"] = parse_duration(args.update_delay)
    return config


def _pairs(items: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        found[key] = value
    return found


def parse_publish(text: str) -> dict:
    """docker's two forms: PUBLISHED:TARGET[/PROTOCOL] (or TARGET alone: a port the swarm chooses), and
    published=P,target=T[,protocol=tcp|udp][,mode=ingress]."""
    if "=" in text:
        fields = _pairs(text.split(","), "--publish field")
        unknown = set(fields) - {"published", "target", "protocol", "mode"}
        if unknown:
            raise InvalidArgument(f"--publish {text!r}: unknown field {sorted(unknown)[0]!r}")
        published, target = fields.get("published", "0"), fields.get("target", "")
        protocol, mode = fields.get("protocol", "tcp"), fields.get("mode", "ingress")
    else:
        ports, _, protocol = text.partition("/")
        published, _, target = ports.rpartition(":")
        protocol, mode = protocol or "tcp", "ingress"
    if not target.isdigit() or not (published or "0").isdigit():
        raise InvalidArgument(f"--publish {text!r}: expected PUBLISHED:TARGET[/PROTOCOL]")
    return {"Protocol": protocol, "TargetPort": int(target), "PublishedPort": int(published or 0), "PublishMode": mode}


def service_create(client: Client, args: Namespace) -> int:
    if args.mode == "global" and args.replicas is not None:
        raise InvalidArgument("--replicas is for replicated services, not global ones")
    mode: dict = {"Global": {}} if args.mode == "global" else {"Replicated": {"Replicas": args.replicas or 1}}
    spec = {
        "Name": args.name, "Labels": _pairs(args.label, "label"), "Mode": mode,
        "TaskTemplate": {"ContainerSpec": {"Image": args.image, "Args": args.command, "Env": args.env,
                                           "Labels": _pairs(args.container_label, "container label")},
                         "Placement": {"Constraints": args.constraint},
                         "Networks": [{"Target": n} for n in args.network]},
        "EndpointSpec": {"Mode": args.endpoint_mode, "Ports": [parse_publish(p) for p in args.publish]},
        "UpdateConfig": _rollout(args, {"Parallelism": 1}),
    }  # fmt: skip
    print(client.post("/services/create", spec)["ID"])
    return 0


def service_ls(client: Client, args: Namespace) -> int:
    services = client.get("/services", status=1)
    if args.quiet:
        print("\n".join(s["ID"] for s in services))
        return 0
    rows = []
    for service in services:
        spec, status = service["Spec"], service.get("ServiceStatus", {})
        mode = "global" if "Global" in spec["Mode"] else "replicated"
        ports = ", ".join(f"*:{p['PublishedPort']}->{p['TargetPort']}/{p['Protocol']}"
                          for p in service.get("Endpoint", {}).get("Ports", []))  # fmt: skip
        replicas = f"{status.get('RunningTasks', 0)}/{status.get('DesiredTasks', 0)}"
        rows.append([service["ID"][:12], spec["Name"], mode, replicas, spec["TaskTemplate"]["ContainerSpec"]["Image"],
                     ports])  # fmt: skip
    print(table(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], rows))
    return 0


def service_ps(client: Client, args: Namespace) -> int:
    service = client.get(f"/services/{ref(args.service)}")
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in client.get("/nodes")}
    from boxnet.cli.jsoncodec import dumps

    tasks = client.get("/tasks", filters=dumps({"service": {service["ID"]: True}}))
    rows = []
    name = service["Spec"]["Name"]
    for task in sorted(tasks, key=lambda t: (t.get("Slot", 0), t["NodeID"])):
        label = f"{name}.{task.get('Slot') or task['NodeID']}"
        rows.append([task["ID"][:12], label, nodes.get(task["NodeID"], task["NodeID"]), task["DesiredState"],
                     task["Status"]["State"], task["Status"].get("Err", "")])  # fmt: skip
    print(table(["ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"], rows))
    return 0


def service_inspect(client: Client, args: Namespace) -> int:
    print_inspected([client.get(f"/services/{ref(name)}") for name in args.names], args.format)
    return 0


def _update(client: Client, name: str, change, rollback: bool = False) -> None:
    service = client.get(f"/services/{ref(name)}")
    spec = service["Spec"]
    change(spec)
    query = {"version": service["Version"]["Index"], **({"rollback": "previous"} if rollback else {})}
    client.post(f"/services/{service['ID']}/update", spec, **query)


def service_scale(client: Client, args: Namespace) -> int:
    for pair in args.pairs:
        name, _, count = pair.partition("=")
        if not count.isdigit():
            raise InvalidArgument(f"invalid scale {pair!r}: expected SERVICE=N")
        _update(client, name, lambda spec, n=int(count): spec.update({"Mode": {"Replicated": {"Replicas": n}}}))
        print(f"{name} scaled to {count}")
    return 0


def service_update(client: Client, args: Namespace) -> int:
    def change(spec: dict) -> None:
        container = spec["TaskTemplate"]["ContainerSpec"]
        if args.image:
            container["Image"] = args.image
        if args.env_add:
            container["Env"] = [*container.get("Env", []), *args.env_add]
        if args.constraint_add:
            placement = spec["TaskTemplate"].setdefault("Placement", {})
            placement["Constraints"] = [*placement.get("Constraints", []), *args.constraint_add]
        if args.replicas is not None:
            spec["Mode"] = {"Replicated": {"Replicas": args.replicas}}
        if args.publish_add or args.publish_rm:
            endpoint = spec.setdefault("EndpointSpec", {})
            gone = {(p.partition("/")[0], p.partition("/")[2] or "tcp") for p in args.publish_rm}
            endpoint["Ports"] = [p for p in endpoint.get("Ports", [])
                                 if (str(p["PublishedPort"]), p["Protocol"]) not in gone
                                 and (str(p["TargetPort"]), p["Protocol"]) not in gone]  # fmt: skip
            endpoint["Ports"] += [parse_publish(p) for p in args.publish_add]
        spec["UpdateConfig"] = _rollout(args, spec.get("UpdateConfig") or {"Parallelism": 1})

    _update(client, args.service, change, args.rollback)
    print(args.service)
    return 0


def service_rollback(client: Client, args: Namespace) -> int:
    _update(client, args.service, lambda spec: None, rollback=True)
    print(args.service)
    return 0


def service_rm(client: Client, args: Namespace) -> int:
    for name in args.names:
        client.delete(f"/services/{ref(name)}")
        print(name)
    return 0


def service_logs(client: Client, args: Namespace) -> int:
    """As `docker service logs`: each line prefixed with its task and node, from the details the daemon adds."""
    service = client.get(f"/services/{ref(args.service)}")
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in client.get("/nodes")}
    query = {"stdout": 1, "stderr": 1, "follow": int(args.follow), "timestamps": int(args.timestamps),
             "tail": args.tail, "details": int(not args.raw)}  # fmt: skip
    from boxnet.cli.jsoncodec import dumps

    tasks = client.get("/tasks", filters=dumps({"service": {service["ID"]: True}}))
    slots = {t["ID"]: t.get("Slot") or t["NodeID"] for t in tasks}
    response, _ = client.stream("GET", f"/services/{service['ID']}/logs", query)
    name = service["Spec"]["Name"]
    for stream, data in demux(response.fp.read):
        text = data.decode(errors="replace")
        if not args.raw:
            stamp, text = text.split(" ", 1) if args.timestamps else ("", text)
            context, _, text = text.partition(" ")
            fields = dict(pair.split("=", 1) for pair in context.split(",") if "=" in pair)
            task = urllib.parse.unquote(fields.get("com.docker.swarm.task.id", ""))
            node = urllib.parse.unquote(fields.get("com.docker.swarm.node.id", ""))
            label = f"{name}.{slots.get(task, '?')}.{task[:12]}@{nodes.get(node, node)}"
            text = (f"{stamp} " if stamp else "") + f"{label}    | {text}"
        out = sys.stderr if stream == 2 else sys.stdout
        out.write(text)
        out.flush()
    return 0
