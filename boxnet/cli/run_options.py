"""`boxnet run` and `create`: docker's options, and the Docker API create body they make.

Values are checked by the daemon, which names what is wrong; the CLI only turns docker's shorthand into the
API's fields (`-m 64m` into bytes, `--cpus 0.5` into NanoCpus, `--ulimit nofile=1024:2048` into an object).
"""

from __future__ import annotations

import os
import sys

from boxnet.cli.flags import REMAINDER, Namespace, Parser
from boxnet.cli.networks import key_values
from boxnet.errors import InvalidArgument

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(raw: str, what: str) -> int:
    """docker's sizes: 1024 (bytes), 512k, 64m, 1g, with an optional trailing b (64mb)."""
    text = raw.strip().lower()
    if text[-2:-1].isalpha() and text.endswith("b"):
        text = text[:-1]
    unit = 1
    if text and text[-1] in _UNITS:
        unit, text = _UNITS[text[-1]], text[:-1]
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidArgument(f"invalid {what} {raw!r}: expected a size such as 64m or 1g")
    return int(value * unit)


def add_options(parser: Parser) -> None:
    parser.add_argument("--name", default="")
    parser.add_argument("--network", "--net", default="")
    parser.add_argument("--network-alias", "--net-alias", action="append", default=[])
    parser.add_argument("--ip", default="")
    parser.add_argument("--ip6", default="")
    parser.add_argument("--mac-address", default="")
    parser.add_argument("-p", "--publish", action="append", default=[])
    parser.add_argument("-h", "--hostname", default="")
    parser.add_argument("--add-host", action="append", default=[], help="NAME:IP (or NAME:host-gateway)")
    parser.add_argument("--dns", action="append", default=[], help="upstream nameserver for this container")
    parser.add_argument("--dns-search", action="append", default=[])
    parser.add_argument("--dns-option", "--dns-opt", action="append", default=[])
    parser.add_argument("--cap-add", action="append", default=[])
    parser.add_argument("--cap-drop", action="append", default=[])
    parser.add_argument("--security-opt", action="append", default=[])
    parser.add_argument("--pid", default="")
    parser.add_argument("-u", "--user", default="")
    parser.add_argument("--group-add", action="append", default=[])
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--sysctl", action="append", default=[])
    parser.add_argument("-m", "--memory", default="")
    parser.add_argument("--cpus", default="")
    parser.add_argument("-c", "--cpu-shares", default="")
    parser.add_argument("--pids-limit", default="")
    parser.add_argument("--ulimit", action="append", default=[])
    parser.add_argument("--device", action="append", default=[])
    parser.add_argument("--shm-size", default="")
    parser.add_argument("--oom-score-adj", default="")
    parser.add_argument("--restart", default="")
    parser.add_argument("--stop-signal", default="")
    parser.add_argument("--stop-timeout", default="")
    parser.add_argument("-l", "--label", action="append", default=[])
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("-w", "--workdir", default="")
    parser.add_argument("--rootfs", default="", help="a root directory to run in, instead of the host image")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                        help="bind a host directory, or mount a named volume (made on first use)")
    parser.add_argument("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,...")
    parser.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    parser.add_argument("--rm", action="store_true")
    parser.add_argument("-i", "--interactive", action="store_true")
    parser.add_argument("-t", "--tty", action="store_true")
    parser.add_argument("rest", nargs=REMAINDER, metavar="[IMAGE] [--] COMMAND")


def split_image_and_command(rest: list[str], rootfs: str, is_image: Callable[[str], bool] = lambda _: False,
                            ) -> tuple[str, list[str]]:  # fmt: skip
    """`[IMAGE] [--] CMD...`, as docker reads it where it can be told apart from a command of the built-in
    `host` image: a word before `--`, a leading `host`/`host:TAG`, a first word that is_image (an image the
    daemon has), or one that only an image reference looks like (`name:tag`, `name@digest`,
    `registry/name`), is the image; otherwise the image is `host` and everything is the command."""
    if "--" in rest:
        index = rest.index("--")
        before, command = rest[:index], rest[index + 1 :]
        if len(before) > 1:
            raise InvalidArgument(f"expected at most one image before '--', got {before}")
        return (before[0] if before else "host"), command
    if not rest or rootfs:
        return "host", rest
    first = rest[0]
    if first == "host" or first.startswith("host:"):
        return first, rest[1:]
    looks_like_reference = not first.startswith(("/", ".", "-")) and (":" in first or "@" in first or "/" in first)
    if looks_like_reference or is_image(first):
        return first, rest[1:]
    return "host", rest


def _integer(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {raw!r}: not a number") from None


def _host_config_extras(args: Namespace) -> dict[str, Any]:
    """The HostConfig fields of the process and its limits, only those asked for."""
    extras: dict[str, Any] = {}
    if args.memory:
        extras["Memory"] = parse_size(args.memory, "memory")
    if args.cpus:
        try:
            extras["NanoCpus"] = round(float(args.cpus) * 1e9)
        except ValueError:
            raise InvalidArgument(f"invalid --cpus {args.cpus!r}: a number of CPUs such as 0.5") from None
    if args.cpu_shares:
        extras["CpuShares"] = _integer(args.cpu_shares, "--cpu-shares")
    if args.pids_limit:
        extras["PidsLimit"] = _integer(args.pids_limit, "--pids-limit")
    if args.shm_size:
        extras["ShmSize"] = parse_size(args.shm_size, "--shm-size")
    if args.oom_score_adj:
        extras["OomScoreAdj"] = _integer(args.oom_score_adj, "--oom-score-adj")
    if args.restart:
        name, _, count = args.restart.partition(":")
        extras["RestartPolicy"] = {"Name": name, "MaximumRetryCount": _integer(count, "restart count") if count else 0}
    if args.ulimit:
        from boxnet.model.process import parse_ulimit

        extras["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in map(parse_ulimit, args.ulimit)]
    if args.device:
        from boxnet.model.process import parse_device

        extras["Devices"] = [{"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container,
                              "CgroupPermissions": d.permissions} for d in map(parse_device, args.device)]  # fmt: skip
    if args.sysctl:
        extras["Sysctls"] = key_values(args.sysctl, "sysctl")
    return extras


def create_body(args: Namespace, is_image: Callable[[str], bool] = lambda _: False) -> dict[str, Any]:
    if args.rm and args.restart not in ("", "no"):
        raise InvalidArgument("conflicting options: --restart and --rm")
    image, command = split_image_and_command(args.rest, args.rootfs, is_image)
    bindings: dict[str, list[dict[str, str]]] = {}
    if args.publish:
        from boxnet.model.ports import parse_port_spec  # only when needed: it costs the CLI's start-up
    for spec in args.publish:
        mapping = parse_port_spec(spec)
        bindings.setdefault(f"{mapping.container_port}/{mapping.protocol}", []).append(
            {"HostIp": mapping.host_ip, "HostPort": str(mapping.host_port) if mapping.host_port else ""}
        )
    network = args.network or "bridge"
    endpoints: dict[str, Any] = {}
    if args.ip or args.ip6 or args.network_alias or args.mac_address:
        if network in ("host", "none") or network.startswith("container:"):
            raise InvalidArgument("--ip, --ip6, --mac-address and --network-alias need a bridge network")
        endpoint: dict[str, Any] = {"Aliases": args.network_alias, "MacAddress": args.mac_address}
        if args.ip or args.ip6:
            endpoint["IPAMConfig"] = {"IPv4Address": args.ip, "IPv6Address": args.ip6}
        endpoints[network] = endpoint
    for item in args.env:
        if "=" not in item and item in os.environ:
            args.env[args.env.index(item)] = f"{item}={os.environ[item]}"
    body: dict[str, Any] = {
        "Image": image, "Cmd": command, "Env": args.env, "Hostname": args.hostname, "User": args.user,
        "Labels": key_values(args.label, "label"), "WorkingDir": args.workdir, "Rootfs": args.rootfs,
        # As docker: stdin closes with the attached client only when `run` attaches (not with -d).
        "Tty": args.tty, "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and not getattr(args, "detach", False),
        "AttachStdin": args.interactive, "AttachStdout": True, "AttachStderr": True,
        "StopSignal": args.stop_signal,
        "HostConfig": {
            "NetworkMode": network, "PortBindings": bindings, "CapAdd": args.cap_add, "CapDrop": args.cap_drop,
            "Dns": args.dns, "DnsSearch": args.dns_search, "DnsOptions": args.dns_option,
            "PidMode": args.pid, "AutoRemove": bool(args.rm and getattr(args, "detach", True)),
            "ConsoleSize": terminal_size() if args.tty else None, "ExtraHosts": args.add_host,
            "GroupAdd": args.group_add, "ReadonlyRootfs": args.read_only, "SecurityOpt": args.security_opt,
            **_host_config_extras(args),
        },
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }  # fmt: skip
    if args.stop_timeout:
        body["StopTimeout"] = _integer(args.stop_timeout, "--stop-timeout")
    _add_mounts(args, body)
    return body


def _add_mounts(args: Namespace, body: dict[str, Any]) -> None:
    """-v, --mount and --tmpfs as the docker CLI sends them: Binds (a lone path: Config.Volumes), Mounts, Tmpfs.
    A relative -v source is made absolute here, as docker's CLI does."""
    if not (args.volume or args.mount or args.tmpfs):
        return
    from boxnet.model.mounts import parse_mount_flag  # only runs that mount something pay for it

    binds, volumes = [], {}
    for spec in args.volume:
        source, sep, rest = spec.partition(":")
        if not sep:
            volumes[spec] = {}
            continue
        if source.startswith("."):
            source = os.path.abspath(source)
        binds.append(f"{source}:{rest}")
    host = body["HostConfig"]
    if binds:
        host["Binds"] = binds
    if volumes:
        body["Volumes"] = volumes
    if args.mount:
        host["Mounts"] = [parse_mount_flag(spec) for spec in args.mount]
    if args.tmpfs:
        host["Tmpfs"] = {spec.partition(":")[0]: spec.partition(":")[2] for spec in args.tmpfs}


def terminal_size() -> list[int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return [size.lines, size.columns]
