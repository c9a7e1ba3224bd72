"""Container lifecycle: create, start, stop, kill, restart, remove, wait; connect and disconnect."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from boxnet.engine import faults
from boxnet.engine.attach import Attacher
from boxnet.engine.context import EngineContext
from boxnet.engine.networks import now
from boxnet.engine.undo import UndoStack
from boxnet.errors import Conflict, ErrorList, Forbidden, InvalidArgument, NotFound
from boxnet.kernel import links, netns
from boxnet.model.container import (
    BUILTIN_IMAGE,
    CAPABILITY_NUMBERS,
    Container,
    ContainerSettings,
    check_container_name,
    effective_capabilities,
)
from boxnet.model.names import new_id, parse_key_values
from boxnet.model.network import Network
from boxnet.model.ports import find_clash
from boxnet.runtime import files, launcher
from boxnet.runtime.monitor import Monitor, read_exit_status

log = logging.getLogger(__name__)

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS_MODES = ("host", "none")


@dataclass(kw_only=True)
class ContainerRequest(ContainerSettings):
    """A create request, already out of the API's JSON, not yet validated."""

    name: str = ""
    networks: dict[str, dict] = field(default_factory=dict)  # name -> {"aliases": [...], "ipv4": ""}


class ContainerService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.attacher = Attacher(ctx)
        self.changed = threading.Condition(ctx.lock)
        self.monitor = Monitor(self._on_shim_exit)
        self.launcher = launcher.ShimLauncher()

    # ---- create ------------------------------------------------------------------------------------
    def create(self, request: ContainerRequest) -> Container:
        with self.ctx.lock:
            container = self._validate(request)
            os.makedirs(self.ctx.config.container_dir(container.id), exist_ok=True)
            self.registry.save_container(container)
            return container

    def _validate(self, request: ContainerRequest) -> Container:
        name = check_container_name(request.name) if request.name else self._generate_name()
        if self.registry.container_by_name(name):
            existing = self.registry.container_by_name(name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                           f'"{existing.id}". You have to remove (or rename) that container to be able to '
                           "reuse that name.")  # fmt: skip
        rootfs = request.rootfs
        if not rootfs and request.image.startswith("/"):
            rootfs = request.image
        if rootfs:
            rootfs = os.path.realpath(rootfs)
            if not os.path.isdir(rootfs):
                raise InvalidArgument(f"rootfs {request.rootfs!r} is not a directory")
        elif request.image not in (BUILTIN_IMAGE, f"{BUILTIN_IMAGE}:latest"):
            raise NotFound(f"No such image: {request.image} (boxnet knows the built-in image "
                           f"{BUILTIN_IMAGE!r} and --rootfs DIR)")  # fmt: skip
        effective_capabilities(request.cap_add, request.cap_drop)  # rejects unknown capability names
        mode = request.network_mode or "bridge"
        if mode == "default":
            mode = "bridge"
        networks = dict(request.networks)
        if mode.startswith("container:"):
            target = self.registry.find_container(mode.split(":", 1)[1])
            mode = f"container:{target.id}"
            if request.ports:
                raise InvalidArgument("conflicting options: port publishing and the container type network mode")
            if networks:
                raise InvalidArgument("conflicting options: networks and the container type network mode")
            if request.hostname:
                raise InvalidArgument("conflicting options: hostname and the container type network mode")
        elif mode not in NETNS_MODES:
            primary = self.registry.find_network(mode)
            mode = primary.name
            networks.setdefault(primary.name, {})
            for net_name, settings in networks.items():
                network = self.registry.find_network(net_name)
                if network.driver != "bridge":
                    raise InvalidArgument(f"container cannot be attached to {network.name} and {mode} at once")
                if network.is_default_bridge and (settings.get("aliases") or settings.get("ipv4")):
                    raise InvalidArgument("user specified IP address and network-scoped aliases are "
                                          "supported on user defined networks only")  # fmt: skip
            # Keep the primary network first: it holds the default route.
            networks = {mode: networks.pop(mode), **networks}
        else:
            if networks and set(networks) != {mode}:
                raise InvalidArgument(f"container cannot be disconnected from {mode} and connected elsewhere")
            networks = {}
        pid_mode = request.pid_mode
        if pid_mode.startswith("container:"):
            pid_mode = "container:" + self.registry.find_container(pid_mode.split(":", 1)[1]).id
        elif pid_mode not in ("", "host"):
            raise InvalidArgument(f"invalid --pid mode {pid_mode!r}: use host or container:NAME")
        ports = list(request.ports)
        clash = find_clash(ports, [])
        if clash:
            raise Conflict(f"port {clash[0].host_port}/{clash[0].protocol} is published twice")
        if mode == "host":
            ports = []  # Docker discards published ports in host mode: the ports are the host's already
        container_id = new_id()
        return Container(
            id=container_id, name=name, created=now(), image=rootfs if rootfs else request.image,
            rootfs=rootfs, cmd=list(request.cmd) or ["/bin/sh"], env=list(request.env),
            hostname=request.hostname or (socket.gethostname() if mode == "host" else container_id[:12]),
            network_mode=mode, ports=ports, cap_add=list(request.cap_add), cap_drop=list(request.cap_drop),
            pid_mode=pid_mode, labels=parse_key_values("label", request.labels),
            auto_remove=request.auto_remove, tty=request.tty, open_stdin=request.open_stdin,
            stdin_once=request.stdin_once, console_size=list(request.console_size),
            working_dir=request.working_dir, requested_networks=networks, dns=_nameservers(request.dns),
            dns_search=_dns_words("search domain", request.dns_search),
            dns_options=_dns_words("option", request.dns_options),
        )  # fmt: skip

    def _generate_name(self) -> str:
        import secrets

        adjectives = ("brave", "calm", "eager", "fancy", "jolly", "keen", "lucid", "merry", "quirky", "vivid")
        nouns = ("turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "liskov")
        while True:
            name = f"{secrets.choice(adjectives)}_{secrets.choice(nouns)}_{secrets.token_hex(2)}"
            if not self.registry.container_by_name(name):
                return name

    # ---- start -------------------------------------------------------------------------------------
    def start(self, ref: str) -> Container:
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status == "running":
                return container
            undo = UndoStack()
            try:
                self._start(container, undo)
            except BaseException as exc:
                failures = undo.unwind()
                # What the undo stack had no step for (the `ip netns` registration) and the record's fields.
                failures += self.release_network(container).errors
                container.state.status = "created" if container.state.status == "created" else "exited"
                container.state.error = str(exc) + (f" (clean-up: {'; '.join(failures)})" if failures else "")
                self.registry.save_container(container)
                raise
            return container

    def _start(self, container: Container, undo: UndoStack) -> None:
        config = self.ctx.config
        state_dir = config.container_dir(container.id)
        os.makedirs(state_dir, exist_ok=True)
        for stale in ("exit.json", "container.log") if container.state.status == "created" else ("exit.json",):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(state_dir, stale))
        mode = container.network_mode
        shared = container.shares_netns_with
        holder: _Fd | None = None
        if shared:
            target = self.registry.find_container(shared)
            if target.state.status != "running":
                raise Conflict(f"cannot join the network namespace of {target.name}: it is not running")
            container.sandbox_key = target.sandbox_key
        elif mode == "host":
            container.sandbox_key = ""
        else:
            holder = _Fd(netns.create(setup=links.prepare_container_namespace))
            undo.push("network namespace", holder.close)
            container.sandbox_key = netns.fd_path(holder.fd)
            faults.check("start:after-netns")
        if mode not in NETNS_MODES and not shared:
            self.attacher.assign_host_ports(container)
            for index, (net_name, settings) in enumerate(container.requested_networks.items()):
                network = self.registry.find_network(net_name)
                self.attacher.attach(container, network, settings, default_route=index == 0, undo=undo)
                faults.check("start:after-attach")
                if index == 0:
                    container.port_network = network.id
            self.attacher.publish(container, undo)
            faults.check("start:after-publish")
            if self.ctx.dns.embedded(container):
                self.ctx.dns.serve(container)
                undo.push("embedded DNS", lambda: self.ctx.dns.unserve(container))
                faults.check("start:after-dns")
        spec = self._shim_spec(container, state_dir)
        shim_pid, shim_start, pid = self.launcher.spawn(state_dir, spec)
        undo.push("container process", lambda: _kill_quietly(pid))
        faults.check("start:after-process")
        if holder is not None:
            # The container's init is inside now (the shim entered before forking it): it holds the namespace.
            container.sandbox_key = netns.process_path(pid)
            holder.close()
        if container.sandbox_key and not shared:
            container.netns_name = container.name
            if not netns.register(container.name, container.sandbox_key, config.netns_registry):
                container.netns_name = ""
                log.warning("/run/netns/%s exists and is not boxnet's: not registering", container.name)
        state = container.state
        state.status, state.pid, state.shim_pid, state.shim_start_time = "running", pid, shim_pid, shim_start
        state.exit_code, state.error, state.started_at = 0, "", now()
        self.registry.save_container(container)
        if not self.monitor.watch(container.id, shim_pid):
            threading.Thread(target=self._on_shim_exit, args=(container.id,), daemon=True).start()

    def _shim_spec(self, container: Container, state_dir: str) -> dict:
        container_files = self._write_files(container, state_dir)
        env = [DEFAULT_PATH, f"HOSTNAME={container.hostname}"]
        if container.tty:
            env.append("TERM=xterm")
        env += container.env
        pidns = ""
        if container.pid_mode == "host":
            pidns = "host"
        elif container.pid_mode.startswith("container:"):
            target = self.registry.find_container(container.pid_mode.split(":", 1)[1])
            if target.state.status != "running":
                raise Conflict(f"cannot join the PID namespace of {target.name}: it is not running")
            pidns = f"/proc/{target.state.pid}/ns/pid"
        caps = effective_capabilities(container.cap_add, container.cap_drop)
        return {
            "argv": container.cmd, "env": env, "cwd": container.working_dir or "/",
            "hostname": container.hostname, "netns": container.sandbox_key, "pidns": pidns,
            "rootfs": container.rootfs, "files": container_files, "tty": container.tty,
            "open_stdin": container.open_stdin, "stdin_once": container.stdin_once,
            "console_size": container.console_size,
            "capabilities": [CAPABILITY_NUMBERS[c] for c in caps],
        }  # fmt: skip

    def _write_files(self, container: Container, state_dir: str) -> dict[str, str]:
        shared = container.shares_netns_with
        if shared:
            # Docker's container:X mode shares X's hosts and resolv.conf along with its network.
            source_dir = self.ctx.config.container_dir(shared)
            return {p: os.path.join(source_dir, n) for p, n in (("/etc/hosts", "hosts"),
                    ("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname"))}  # fmt: skip
        addresses = [a for e in container.endpoints.values() for a in (e.ipv4, e.ipv6) if a]
        paths = {}
        for target, name, content in (
            ("/etc/hosts", "hosts", files.hosts_file(container.hostname, addresses)),
            ("/etc/resolv.conf", "resolv.conf", self.ctx.dns.resolv_conf(container)),
            ("/etc/hostname", "hostname", container.hostname + "\n"),
        ):
            path = os.path.join(state_dir, name)
            files.write_file(path, content)
            paths[target] = path
        if container.network_mode == "host":
            del paths["/etc/hosts"], paths["/etc/resolv.conf"]  # the host's own, as in Docker
        return paths

    # ---- the end of a container --------------------------------------------------------------------
    def _on_shim_exit(self, container_id: str) -> None:
        with self.ctx.lock:
            container = self.registry.containers.get(container_id)
            if container is None or container.state.status != "running":
                return
            self.mark_exited(container)

    def mark_exited(self, container: Container) -> None:
        """A container whose shim has ended, noticed now or found so at start-up: its exit status as the shim
        recorded it, its network released, waiters woken, and the container gone if it was --rm."""
        with self.ctx.lock:
            exit_code, error = read_exit_status(self.ctx.config.container_dir(container.id))
            errors = self.release_network(container)
            state = container.state
            state.status, state.exit_code, state.pid, state.shim_pid = "exited", exit_code, 0, 0
            state.finished_at = now()
            state.error = error or ("; ".join(errors.errors) if errors else "")
            self.registry.save_container(container)
            log.info("container %s exited with %d", container.name, exit_code)
            if container.auto_remove:
                self._forget(container)
            self.changed.notify_all()

    def release_network(self, container: Container) -> ErrorList:
        """Undoes what start did to the network, best effort; the record keeps nothing half-made."""
        errors = ErrorList()
        if container.sandbox_key and self.ctx.dns.embedded(container):
            errors.attempt("embedded DNS", self.ctx.dns.unserve, container)
        self.attacher.unpublish(container, errors)
        for network_id in list(container.endpoints):
            self.attacher.detach(container, network_id, errors)
        if container.netns_name:  # set only for a namespace of its own, registered for `ip netns`
            errors.attempt("unregister netns", netns.unregister, container.netns_name,
                           container.sandbox_key, self.ctx.config.netns_registry)  # fmt: skip
        container.sandbox_key = container.netns_name = container.port_network = ""
        container.published_ports = []
        return errors

    def _forget(self, container: Container) -> None:
        self.ctx.dns.forget(container)
        self.registry.drop_container(container)
        shutil.rmtree(self.ctx.config.container_dir(container.id), ignore_errors=True)

    # ---- signals, stop, wait, remove ---------------------------------------------------------------
    def wait(self, ref: str, timeout: float | None = None) -> int:
        with self.changed:
            container = self.registry.find_container(ref)
            deadline = None if timeout is None else time.monotonic() + timeout
            while container.state.status == "running" and container.id in self.registry.containers:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self.changed.wait(remaining)
            return container.state.exit_code

    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        number = parse_signal(sig)
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status != "running":
                raise Conflict(f"Container {container.id} is not running")
            pid = container.state.pid
        _signal(pid, number)

    def stop(self, ref: str, timeout: float = 10, sig: str | int = "SIGTERM") -> None:
        number = parse_signal(sig)
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status != "running":
                return
            pid = container.state.pid
        _signal(pid, number)
        if not self._wait_stopped(container, timeout):
            _signal(pid, signal.SIGKILL)
            self._wait_stopped(container, 30)

    def _wait_stopped(self, container: Container, timeout: float) -> bool:
        self.wait(container.id, timeout)
        return container.state.status != "running"

    def restart(self, ref: str, timeout: float = 10) -> Container:
        self.stop(ref, timeout)
        return self.start(ref)

    def remove(self, ref: str, force: bool = False) -> None:
        container = self.registry.find_container(ref)
        if container.state.status == "running":
            if not force:
                raise Conflict(f"You cannot remove a running container {container.id}. Stop the container "
                               "before attempting removal or force remove")  # fmt: skip
            self.stop(container.id, timeout=0, sig="SIGKILL")
        with self.ctx.lock:
            dependants = [c.name for c in self.registry.containers.values()
                          if c.shares_netns_with == container.id and c.state.status == "running"]  # fmt: skip
            if dependants:
                raise Conflict(f"container {container.name} shares its network with running containers: "
                               + ", ".join(dependants))  # fmt: skip
            if container.id in self.registry.containers:
                self._forget(container)
            self.changed.notify_all()

    def dns_log(self, ref: str, tail: int) -> list[dict]:
        """The queries a container made to 127.0.0.11 (its netns owner's, for container:X), newest last."""
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            owner = self.registry.netns_owner(container)
            if not self.ctx.dns.embedded(owner):
                raise InvalidArgument(f"container {container.name} does not use the embedded DNS: only containers on "
                                      "user-defined networks do (its resolv.conf names other nameservers)")  # fmt: skip
            return self.ctx.dns.query_log(owner, min(tail, 10000))

    # ---- networks of a running container -------------------------------------------------------------
    def connect(self, network_ref: str, container_ref: str, ipv4: str = "", aliases: list[str] | None = None) -> None:
        with self.ctx.lock:
            network = self.registry.find_network(network_ref)
            container = self.registry.find_container(container_ref)
            self._check_connectable(container, network)
            if network.name in container.requested_networks:
                raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}")
            if network.is_default_bridge and (ipv4 or aliases):
                raise InvalidArgument("user specified IP address and network-scoped aliases are supported on "
                                      "user defined networks only")  # fmt: skip
            settings = {"aliases": list(aliases or []), "ipv4": ipv4}
            if container.state.status == "running":
                with UndoStack() as undo:
                    self.attacher.attach(container, network, settings, default_route=False, undo=undo)
            container.requested_networks[network.name] = settings
            self.registry.save_container(container)

    def _check_connectable(self, container: Container, network: Network) -> None:
        if container.network_mode in NETNS_MODES or container.shares_netns_with:
            raise Forbidden(f"container {container.name} uses network mode {container.network_mode}: it cannot "
                            "be connected to other networks")  # fmt: skip
        if network.driver != "bridge":
            raise Forbidden(f"container cannot be connected to the {network.name} network")

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        with self.ctx.lock:
            network = self.registry.find_network(network_ref)
            container = self.registry.find_container(container_ref)
            if network.name not in container.requested_networks and network.id not in container.endpoints:
                raise NotFound(f"container {container.name} is not connected to network {network.name}")
            errors = ErrorList()
            if container.port_network == network.id:
                self.attacher.unpublish(container, errors)
                container.port_network = ""
            self.attacher.detach(container, network.id, errors)
            container.requested_networks.pop(network.name, None)
            self.registry.save_container(container)
            if errors and not force:
                errors.raise_if_any(f"disconnecting {container.name} from {network.name}")


class _Fd:
    """An fd closed once, whichever of success or undo gets there first."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _kill_quietly(pid: int) -> None:
    _signal(pid, signal.SIGKILL)
