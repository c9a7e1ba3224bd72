"""A container create request, checked whole before anything is recorded or made: every name, address,
mode, limit and path, against the ledger and this machine. What comes out is the Container record."""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
from dataclasses import dataclass, field, replace

from boxnet.drivers import registry as drivers
from boxnet.engine.networks import now
from boxnet.engine.registry import Registry
from boxnet.errors import Conflict, Forbidden, InvalidArgument
from boxnet.images.store import Image
from boxnet.model.container import (
    BUILTIN_IMAGE,
    Container,
    ContainerSettings,
    check_container_name,
    effective_capabilities,
)
from boxnet.model.mounts import Mount, check_mounts, check_target
from boxnet.model.names import new_id, parse_key_values
from boxnet.model.network import Network
from boxnet.model.ports import find_clash
from boxnet.model.process import (
    check_dns_name,
    check_group,
    check_hostname,
    check_mac,
    check_sysctls,
    check_text,
    check_user,
    parse_extra_host,
    sysctl_namespace,
)
from boxnet.model.service import TASK_LABEL
from boxnet.runtime.cgroups import Cgroups

NETNS_MODES = ("host", "none")


@dataclass(kw_only=True)
class ContainerRequest(ContainerSettings):
    """A create request, already out of the API's JSON, not yet validated."""

    name: str = ""
    networks: dict[str, dict] = field(default_factory=dict)  # name -> {"aliases", "ipv4", "ipv6", "mac"}
    mac_address: str = ""  # the first network's endpoint's, when its settings name none
    entrypoint: list[str] | None = None  # None: the image's; [] (Docker's [""]): none
    exposed_ports: list[str] = field(default_factory=list)


def uses_image_store(request: ContainerRequest) -> bool:
    """Whether the request's image is one of the image store's (not `host`, nor a root directory)."""
    return not request.rootfs and not request.image.startswith("/") and \
        request.image not in (BUILTIN_IMAGE, f"{BUILTIN_IMAGE}:latest")  # fmt: skip


def with_image_config(request: ContainerRequest, image: Image) -> ContainerRequest:
    """The request with what it leaves unsaid taken from the image's config, as Docker merges them: the
    image's Env under the request's, its Entrypoint unless the request gives one (which also drops the
    image's Cmd), its Cmd, WorkingDir, User and StopSignal unless the request gives them, its Labels and
    ExposedPorts with the request's added."""
    config = image.config.get("config") or {}
    env = {item.split("=", 1)[0]: item for item in config.get("Env") or []}
    env.update({item.split("=", 1)[0]: item for item in request.env})
    if request.entrypoint is None:
        entrypoint, cmd = list(config.get("Entrypoint") or []), request.cmd or list(config.get("Cmd") or [])
    else:
        entrypoint, cmd = request.entrypoint, request.cmd
    process = replace(request.process, user=request.process.user or config.get("User") or "")
    exposed = list(dict.fromkeys([*(config.get("ExposedPorts") or {}), *request.exposed_ports]))
    return replace(request, env=list(env.values()), entrypoint=entrypoint, cmd=cmd, process=process,
                   working_dir=request.working_dir or config.get("WorkingDir") or "",
                   labels={**(config.get("Labels") or {}), **request.labels}, exposed_ports=exposed,
                   stop_signal=request.stop_signal or config.get("StopSignal") or "")  # fmt: skip


def build_container(request: ContainerRequest, registry: Registry, cgroups: Cgroups,
                    image: Image | None = None) -> Container:  # fmt: skip
    """The record for a valid request, to run from image (from the image store) if given, else from the
    built-in image or a root directory; InvalidArgument, NotFound or Conflict naming what is wrong."""
    name = check_container_name(request.name) if request.name else _generate_name(registry)
    existing = registry.container_by_name(name)
    if existing:
        raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                       f'"{existing.id}". You have to remove (or rename) that container to be able to '
                       "reuse that name.")  # fmt: skip
    if image is not None:
        request = with_image_config(request, image)
    rootfs = _rootfs(request) if image is None else ""
    entrypoint, cmd = _command(request.entrypoint or []), _command(request.cmd)
    if not entrypoint and not cmd:
        if image is not None:
            raise InvalidArgument(f"no command specified: image {request.image} has no Cmd or Entrypoint")
        cmd = ["/bin/sh"]
    mounts = _mounts(request, image)
    effective_capabilities(request.cap_add, request.cap_drop)  # rejects unknown capability names
    mode, networks, hostname = _network_mode(request, registry)
    pid_mode = request.pid_mode
    if pid_mode.startswith("container:"):
        pid_mode = "container:" + registry.find_container(pid_mode.split(":", 1)[1]).id
    elif pid_mode not in ("", "host"):
        raise InvalidArgument(f"invalid --pid mode {pid_mode!r}: use host or container:NAME")
    ports = list(request.ports)
    clash = find_clash(ports, [])
    if clash:
        raise Conflict(f"port {clash[0].host_port}/{clash[0].protocol} is published twice")
    for port in ports:
        if port.host_ip and ipaddress.ip_address(port.host_ip).is_loopback and ":" in port.host_ip:
            raise InvalidArgument(f"publishing on [{port.host_ip}] is not supported: IPv6 has no route_localnet, "
                                  "so ::1 cannot be forwarded to a container; publish on 127.0.0.1")  # fmt: skip
    if mode == "host":
        ports = []  # Docker discards published ports in host mode: the ports are the host's already
    _check_process(request, mode)
    cgroups.check(request.resources, request.process.devices)
    if request.auto_remove and request.restart_policy.name != "no":
        raise InvalidArgument("conflicting options: --restart and --rm (AutoRemove)")
    if request.stop_signal:
        parse_signal(request.stop_signal)
    if request.stop_timeout is not None and request.stop_timeout < -1:
        raise InvalidArgument(f"StopTimeout {request.stop_timeout} must be -1 (wait forever) or more")
    container_id = new_id()
    return Container(
        id=container_id, name=name, created=now(), image=rootfs if rootfs else request.image,
        rootfs=rootfs, entrypoint=entrypoint, cmd=cmd, env=check_environment(request.env),
        image_id=image.id if image else "", exposed_ports=[_exposed(p) for p in request.exposed_ports],
        hostname=hostname or (socket.gethostname() if mode == "host" else container_id[:12]),
        network_mode=mode, ports=ports, cap_add=list(request.cap_add), cap_drop=list(request.cap_drop),
        pid_mode=pid_mode, labels=_labels(request.labels), auto_remove=request.auto_remove, tty=request.tty,
        open_stdin=request.open_stdin, stdin_once=request.stdin_once, console_size=list(request.console_size),
        working_dir=request.working_dir, requested_networks=networks, dns=_nameservers(request.dns),
        dns_search=_dns_words("search domain", request.dns_search),
        dns_options=_dns_words("option", request.dns_options), process=request.process,
        resources=request.resources, restart_policy=request.restart_policy,
        extra_hosts=[f"{h.name}:{h.address}" for h in map(parse_extra_host, request.extra_hosts)],
        stop_signal=request.stop_signal, stop_timeout=request.stop_timeout, mounts=mounts,
    )  # fmt: skip


def _mounts(request: ContainerRequest, image: Image | None) -> list[Mount]:
    """The request's mounts, with an anonymous volume for each of the image's VOLUMEs nothing else mounts;
    anonymous volumes named now. A --mount bind's source must exist (a -v one is made at start)."""
    mounts = [replace(m) for m in request.mounts]
    wanted = {m.target for m in mounts}
    image_volumes = (image.config.get("config") or {}).get("Volumes") or {} if image else {}
    for target in image_volumes:
        normal = check_target(target)
        if normal not in wanted:
            mounts.append(Mount("volume", normal, anonymous=True))
    for mount in mounts:
        if mount.type == "bind" and not mount.create_source and not os.path.exists(mount.source):
            raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: '
                                  f"{mount.source}")  # fmt: skip
        if mount.type == "volume" and not mount.source:
            mount.source = secrets.token_hex(32)
    return check_mounts(mounts)


def _rootfs(request: ContainerRequest) -> str:
    rootfs = request.rootfs
    if not rootfs and request.image.startswith("/"):
        rootfs = request.image
    if not rootfs:
        return ""
    check_text("rootfs", rootfs)
    rootfs = os.path.realpath(rootfs)
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"rootfs {request.rootfs!r} is not a directory")
    if rootfs == "/":
        raise InvalidArgument("--rootfs / would give the container the host's own root, writable: use the "
                              f"built-in image {BUILTIN_IMAGE!r}, which is the host's files read-only")  # fmt: skip
    return rootfs


def _network_mode(request: ContainerRequest, registry: Registry) -> tuple[str, dict[str, dict], str]:
    """(mode, the networks to join with their endpoint settings, the hostname)."""
    mode = request.network_mode or "bridge"
    networks = dict(request.networks)
    if mode == "default":  # what the docker CLI and SDK send when no network was asked for
        mode = "bridge"
        if "default" in networks:  # the CLI's endpoint settings for it, all at zero
            networks["bridge"] = networks.pop("default")
    hostname = request.hostname
    if hostname:
        check_hostname(hostname)
    if mode.startswith("container:"):
        target = registry.find_container(mode.split(":", 1)[1])
        if request.ports:
            raise InvalidArgument("conflicting options: port publishing and the container type network mode")
        if networks:
            raise InvalidArgument("conflicting options: networks and the container type network mode")
        if hostname:
            raise InvalidArgument("conflicting options: hostname and the container type network mode")
        if request.mac_address:
            raise InvalidArgument("conflicting options: mac-address and the container type network mode")
        return f"container:{target.id}", {}, target.hostname  # Docker: the network's owner's hostname
    if mode in NETNS_MODES:
        if networks and set(networks) != {mode}:
            raise InvalidArgument(f"container cannot be disconnected from {mode} and connected elsewhere")
        if request.mac_address:
            raise InvalidArgument(f"conflicting options: mac-address and network mode {mode}")
        return mode, {}, hostname
    primary = registry.find_network(mode)
    networks.setdefault(primary.name, networks.pop(mode, {}))
    if request.mac_address and not networks[primary.name].get("mac"):
        networks[primary.name] = {**networks[primary.name], "mac": request.mac_address}
    if request.ports and not drivers.of(primary).capabilities.publishes_ports:
        raise InvalidArgument(f"network {primary.name} ({primary.driver}) does not publish ports: reach the "
                              "container at its own address")  # fmt: skip
    checked = {}
    for net_name, settings in networks.items():
        network = registry.find_network(net_name)
        if network.ingress and TASK_LABEL not in request.labels:
            raise Forbidden(ingress_refusal(network))
        if not drivers.of(network).capabilities.endpoints:
            raise InvalidArgument(f"container cannot be attached to {network.name} and {primary.name} at once")
        checked[network.name] = check_endpoint_settings(settings, network.is_default_bridge)
    # The primary network first: it holds the default route.
    return primary.name, {primary.name: checked.pop(primary.name), **checked}, hostname


def ingress_refusal(network: Network) -> str:
    return f"network {network.name} is the swarm's routing mesh: only tasks of services that publish ports join it"


def check_endpoint_settings(settings: dict, default_bridge: bool) -> dict:
    """Aliases, requested addresses and MAC of one endpoint, as the API or the CLI gave them."""
    aliases = [check_dns_name("network alias", a) for a in settings.get("aliases", [])]
    for key in ("ipv4", "ipv6"):
        if settings.get(key):
            try:
                address = ipaddress.ip_address(settings[key])
            except ValueError:
                raise InvalidArgument(f"invalid {key} address {settings[key]!r}") from None
            if address.version != int(key[-1]):
                raise InvalidArgument(f"{settings[key]} is not an IPv{key[-1]} address")
    if default_bridge and (aliases or settings.get("ipv4") or settings.get("ipv6")):
        raise InvalidArgument("user specified IP address and network-scoped aliases are supported on user "
                              "defined networks only")  # fmt: skip
    mac = check_mac(settings["mac"]) if settings.get("mac") else ""
    return {"aliases": aliases, "ipv4": settings.get("ipv4", ""), "ipv6": settings.get("ipv6", ""), "mac": mac}


def _check_process(request: ContainerRequest, mode: str) -> None:
    process = request.process
    if process.user:
        check_user(process.user)
    for group in process.group_add:
        check_group(group)
    check_sysctls(process.sysctls)
    for key in process.sysctls:
        if sysctl_namespace(key) == "net" and (mode in NETNS_MODES or mode.startswith("container:")):
            raise InvalidArgument(f"sysctl {key} is not allowed with network mode {mode.split(':')[0]}: the "
                                  "container has no network namespace of its own")  # fmt: skip
    names = [u.name for u in process.ulimits]
    if len(names) != len(set(names)):
        raise InvalidArgument(f"a ulimit is given twice: {sorted(names)}")
    check_working_dir(request.working_dir)


def check_working_dir(path: str) -> str:
    if path and not path.startswith("/"):
        raise InvalidArgument(f"the working directory {path!r} is invalid: it needs to be an absolute path")
    return check_text("working directory", path)


def _command(cmd: list[str]) -> list[str]:
    for arg in cmd:
        if "\0" in arg:
            raise InvalidArgument(f"invalid command argument {arg!r}: NUL bytes cannot be passed to a program")
    return list(cmd)


def _exposed(port: str) -> str:
    number, _, protocol = port.partition("/")
    protocol = protocol or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535 or protocol not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid exposed port {port!r}: expected PORT[/tcp|udp|sctp]")
    return f"{int(number)}/{protocol}"


def check_environment(env: list[str]) -> list[str]:
    for item in env:
        key, sep, _ = item.partition("=")
        if not sep or not key or "\0" in item:
            raise InvalidArgument(f"invalid environment variable {item!r}: expected NAME=VALUE without NUL bytes")
    return list(env)


def _labels(labels: dict[str, str]) -> dict[str, str]:
    parsed = parse_key_values("label", labels)
    for key in parsed:
        check_text("label key", key, 1024)
    return parsed


def _generate_name(registry: Registry) -> str:
    adjectives = ("brave", "calm", "eager", "fancy", "jolly", "keen", "lucid", "merry", "quirky", "vivid")
    nouns = ("turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "liskov")
    while True:
        name = f"{secrets.choice(adjectives)}_{secrets.choice(nouns)}_{secrets.token_hex(2)}"
        if not registry.container_by_name(name):
            return name


def _nameservers(servers: list[str]) -> list[str]:
    for server in servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server!r} is not an IP address (--dns takes nameserver addresses)") from None
    return list(servers)


def _dns_words(what: str, words: list[str]) -> list[str]:
    for word in words:
        if not word or any(c.isspace() for c in word) or len(word) > 253:
            raise InvalidArgument(f"invalid DNS {what} {word!r}")
        check_text(f"DNS {what}", word, 253)
    return list(words)


def parse_signal(sig: str | int) -> int:
    """A signal by number or name (KILL, SIGKILL, RTMIN+3); anything else is an error naming it."""
    text = str(sig).strip()
    if isinstance(sig, int) or (text.isascii() and text.isdigit()):
        number = int(text)
    else:
        name = text.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        base, plus, offset = name.partition("+")
        member = signal.Signals.__members__.get(base)
        number = int(member) if member is not None else None
        if number is not None and plus:
            number = number + int(offset) if offset.isdigit() and base == "SIGRTMIN" else None
        if number is None:
            raise InvalidArgument(f"invalid signal: {sig!r} is not a signal name or number")
    if not 1 <= int(number) <= signal.SIGRTMAX:
        raise InvalidArgument(f"invalid signal: {sig!r} is out of range (1 to {int(signal.SIGRTMAX)})")
    return int(number)
