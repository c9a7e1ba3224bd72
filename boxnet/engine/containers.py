"""Container lifecycle: create, start, stop, kill, restart, remove, wait; connect and disconnect.

Intent is recorded before each step that makes something (write-ahead): a start records "starting" and the
cgroups it is about to make before anything exists, endpoints are recorded before their veths, the `ip
netns` name before its link, and a removal records "removing" before it deletes. A daemon killed at any
instant leaves a ledger that names everything, which the next one settles (engine/reconcile.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable

from boxnet.drivers import registry as drivers
from boxnet.engine import faults
from boxnet.engine.attach import Attacher
from boxnet.engine.container_requests import (
    NETNS_MODES,
    ContainerRequest,
    build_container,
    parse_signal,
    uses_image_store,
)
from boxnet.engine.container_spec import shim_spec
from boxnet.engine.context import EngineContext
from boxnet.engine.events import container_attributes
from boxnet.engine.networks import NetworkService, now
from boxnet.engine.restarts import RestartScheduler
from boxnet.engine.undo import UndoStack
from boxnet.errors import Conflict, ErrorList, Forbidden, InvalidArgument, NotFound
from boxnet.kernel import links, netns
from boxnet.model.container import Container
from boxnet.model.network import Network
from boxnet.runtime import cgroups, launcher
from boxnet.runtime.monitor import Monitor, read_exit_status

log = logging.getLogger(__name__)

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class ContainerService:
    def __init__(self, ctx: EngineContext, networks: NetworkService) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.networks = networks  # for the gateway bridge, made when the first container needs it
        self.attacher = Attacher(ctx)
        self.changed = threading.Condition(ctx.lock)
        self.monitor = Monitor(self._on_shim_exit)
        self.launcher = launcher.ShimLauncher()
        self.restarts = RestartScheduler(self._restart_by_policy)
        # How many times each container has ended since the daemon started (for wait's next-exit).
        self.exits: dict[str, int] = {}

    # ---- create ------------------------------------------------------------------------------------
    def create(self, request: ContainerRequest) -> Container:
        cluster = self.ctx.cluster
        if cluster is not None:  # a swarm network made a moment ago elsewhere: realized here now, as Docker does
            for name in [request.network_mode, *request.networks]:
                if name and ":" not in name and not self.registry.network_by_name(name):
                    cluster.realize_by_name(name)
        with self.ctx.lock:  # the image resolved under the lock an rmi holds: it cannot go in between
            image = self.ctx.images.resolve(request.image) if uses_image_store(request) else None
            container = build_container(request, self.registry, self.ctx.cgroups, image)
            for mount in container.mounts:  # Docker makes a container's volumes when it is created
                if mount.type == "volume":
                    self.ctx.volumes.create(mount.source, anonymous=mount.anonymous)
            state_dir = self.ctx.config.container_dir(container.id)
            os.makedirs(state_dir, exist_ok=True)
            # The log exists from the start, so that an attach made before start reads the file the shim writes.
            open(os.path.join(state_dir, "container.log"), "a").close()
            self.registry.save_container(container)
            self.event(container, "create")
            return container

    def event(self, container: Container, action: str, **extra: str) -> None:
        self.ctx.events.publish("container", action, container.id, container_attributes(container, **extra))

    # ---- start -------------------------------------------------------------------------------------
    def start(self, ref: str, by_policy: bool = False) -> Container:
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status == "running":
                return container
            if container.state.status == "removing":
                raise Conflict(f"container {container.name} is being removed")
            self.restarts.cancel(container.id)
            if not by_policy:
                container.restart_count = 0
            previous = container.state.status
            undo = UndoStack()
            try:
                self._start(container, undo)
            except BaseException as exc:
                failures = undo.unwind()
                # What the undo stack had no step for (the `ip netns` registration) and the record's fields.
                failures += self.release(container).errors
                container.state.status = "created" if previous == "created" else "exited"
                container.state.error = str(exc) + (f" (clean-up: {'; '.join(failures)})" if failures else "")
                self.registry.save_container(container)
                if container.auto_remove and not by_policy:
                    # As dockerd: a --rm container that could not start is removed (the docker CLI waits for it).
                    self.forget(container)
                    self.changed.notify_all()
                raise
            self._volume_events(container, "mount")
            self.event(container, "start")
            return container

    def _volume_events(self, container: Container, action: str) -> None:
        for mount in container.mounts:
            if mount.type == "volume":
                self.ctx.events.publish("volume", action, mount.source, {
                    "container": container.id, "destination": mount.target, "driver": "local",
                    "propagation": "", "read/write": str(not mount.read_only).lower()})  # fmt: skip

    def _start(self, container: Container, undo: UndoStack) -> None:
        config = self.ctx.config
        state_dir = config.container_dir(container.id)
        os.makedirs(state_dir, exist_ok=True)
        for stale in ("exit.json", "shim.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(state_dir, stale))
        if container.state.status == "created":
            os.truncate(os.path.join(state_dir, "container.log"), 0)  # the same file an early attach has open
        # Intent first: a daemon that dies from here on leaves a record the next one settles.
        state = container.state
        state.status, state.stopped_by_user = "starting", False
        container.cgroups = self.ctx.cgroups.paths(container.id, container.resources, container.process.devices)
        self.registry.save_container(container)
        faults.check("start:after-intent")
        self.ctx.cgroups.create(container.id, container.resources, container.process.devices)
        undo.push("cgroups", lambda: self.ctx.cgroups.remove(container.cgroups))
        holder = self._sandbox(container, undo)
        if container.network_mode not in NETNS_MODES and not container.shares_netns_with:
            self._join_networks(container, undo)
        spec = shim_spec(self.ctx, container, state_dir)
        shim_pid, shim_start, pid = self.launcher.spawn(state_dir, spec)
        undo.push("container process", lambda: _signal(pid, signal.SIGKILL))
        faults.check("start:after-process")
        if holder is not None:
            # The container's init is inside now (the shim entered before forking it): it holds the namespace.
            container.sandbox_key = netns.process_path(pid)
            holder.close()
        if container.sandbox_key and not container.shares_netns_with:
            container.netns_name = container.name
            self.registry.save_container(container)  # the name before the link
            if not netns.register(container.name, container.sandbox_key, config.netns_registry):
                container.netns_name = ""
                log.warning("/run/netns/%s exists and is not boxnet's: not registering", container.name)
            faults.check("start:after-register")
        state.status, state.pid, state.shim_pid, state.shim_start_time = "running", pid, shim_pid, shim_start
        state.exit_code, state.error, state.started_at = 0, "", now()
        self.registry.save_container(container)
        if not self.monitor.watch(container.id, shim_pid):
            threading.Thread(target=self._on_shim_exit, args=(container.id,), daemon=True).start()

    def _sandbox(self, container: Container, undo: UndoStack) -> _Fd | None:
        """The network namespace: X's for container:X, none for host, else a new one held by an fd."""
        if container.shares_netns_with:
            target = self.registry.find_container(container.shares_netns_with)
            if target.state.status != "running":
                raise Conflict(f"cannot join the network namespace of {target.name}: it is not running")
            container.sandbox_key = target.sandbox_key
            return None
        if container.network_mode == "host":
            container.sandbox_key = ""
            return None
        holder = _Fd(netns.create(setup=links.prepare_container_namespace))
        undo.push("network namespace", holder.close)
        container.sandbox_key = netns.fd_path(holder.fd)
        faults.check("start:after-netns")
        return holder

    def _join_networks(self, container: Container, undo: UndoStack) -> None:
        self.attacher.assign_host_ports(container)
        primary: Network | None = None
        for index, (net_name, settings) in enumerate(container.requested_networks.items()):
            network = self.registry.find_network(net_name)
            self.attacher.attach(container, network, settings, default_route=index == 0, undo=undo)
            faults.check("start:after-attach")
            if index == 0:
                container.port_network = network.id
                primary = network
        if primary is not None and drivers.of(primary).capabilities.egress_via_gateway and not primary.internal:
            # Docker's docker_gwbridge: the way out, and where its ports are published.
            gateway = self.networks.ensure_gateway_bridge()
            self.attacher.attach(container, gateway, {}, default_route=True, undo=undo)
            container.port_network = gateway.id
        self.attacher.publish(container, undo)
        faults.check("start:after-publish")
        if self.ctx.dns.embedded(container):
            self.ctx.dns.serve(container)
            undo.push("embedded DNS", lambda: self.ctx.dns.unserve(container))
            faults.check("start:after-dns")

    # ---- the end of a container --------------------------------------------------------------------
    def _on_shim_exit(self, container_id: str) -> None:
        with self.ctx.lock:
            container = self.registry.containers.get(container_id)
            if container is None or container.state.status != "running":
                return
            self.mark_exited(container)

    def mark_exited(self, container: Container) -> None:
        """A container whose shim has ended, noticed now or found so at start-up: its exit status as the shim
        recorded it, its network and cgroups released, waiters woken; then removed if it was --rm, or
        started again later if its restart policy says so."""
        with self.ctx.lock:
            exit_code, error = read_exit_status(self.ctx.config.container_dir(container.id))
            errors = self.release(container)
            state = container.state
            ran = time.time() - seconds_of(state.started_at)
            state.status, state.exit_code, state.pid, state.shim_pid = "exited", exit_code, 0, 0
            state.paused = False
            state.finished_at = now()
            state.error = error or ("; ".join(errors.errors) if errors else "")
            self.registry.save_container(container)
            self.exits[container.id] = self.exits.get(container.id, 0) + 1
            log.info("container %s exited with %d", container.name, exit_code)
            self._volume_events(container, "unmount")
            self.event(container, "die", exitCode=str(exit_code), execDuration=str(int(ran)))
            if container.auto_remove:
                self.forget(container)
            elif container.restart_policy.restarts_after(exit_code, container.restart_count, state.stopped_by_user):
                self.restarts.schedule(container.id, container.restart_count, ran)
            self.changed.notify_all()

    def _restart_by_policy(self, container_id: str, with_the_daemon: bool = False) -> None:
        with self.ctx.lock:
            container = self.registry.containers.get(container_id)
            if container is None or container.state.status != "exited":
                return
            if container.state.stopped_by_user and not with_the_daemon:
                return
            container.restart_count += 1
            try:
                self.start(container_id, by_policy=True)
            except Exception as exc:  # counted as an exit, so that the policy's limits and back-off apply
                log.warning("restarting %s failed: %s", container.name, exc)
                if container.restart_policy.restarts_after(1, container.restart_count, False):
                    self.restarts.schedule(container.id, container.restart_count, 0)
            self.changed.notify_all()

    def release(self, container: Container) -> ErrorList:
        """Undoes what start made (network, cgroups), best effort; the record keeps nothing half-made."""
        errors = self.release_network(container)
        if container.cgroups:
            errors.attempt("cgroups", self.ctx.cgroups.remove, container.cgroups)
            container.cgroups = []
        return errors

    def release_network(self, container: Container) -> ErrorList:
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

    def forget(self, container: Container, remove_volumes: bool = False) -> None:
        """The record goes last: a daemon killed half-way finds "removing" and finishes the job. With
        remove_volumes (rm -v, and run --rm), the anonymous volumes it made go with it."""
        self.restarts.cancel(container.id)
        container.state.status = "removing"
        self.registry.save_container(container)
        faults.check("remove:after-intent")
        self.ctx.dns.forget(container)
        shutil.rmtree(self.ctx.config.container_dir(container.id), ignore_errors=True)
        faults.check("remove:after-files")
        self.registry.drop_container(container)
        self.exits.pop(container.id, None)
        self.event(container, "destroy")
        if remove_volumes or container.auto_remove:
            for mount in container.mounts:
                if mount.type != "volume" or not self.ctx.volumes.anonymous(mount.source):
                    continue  # a named volume stays; an anonymous one is known by its label, however it was given
                if not self.registry.volume_users(mount.source):
                    with contextlib.suppress(NotFound):
                        self.ctx.volumes.remove(mount.source, [])

    # ---- signals, stop, wait, remove ---------------------------------------------------------------
    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None,
             abandoned: Callable[[], bool] | None = None) -> int:  # fmt: skip
        """Docker's wait: until the container is not running (at once if it is not), until its next exit,
        or until it is removed. abandoned() is asked now and then (a client that went away)."""
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition {condition!r}: one of {', '.join(WAIT_CONDITIONS)}")
        with self.changed:
            container = self.registry.find_container(ref)
            exits = self.exits.get(container.id, 0)

            def done() -> bool:
                if condition == "removed":
                    return container.id not in self.registry.containers
                if condition == "next-exit":
                    return self.exits.get(container.id, 0) > exits or container.id not in self.registry.containers
                active = ("running", "starting") if not self.restarts.pending(container.id) else ()
                return container.state.status not in active or container.id not in self.registry.containers

            deadline = None if timeout is None else time.monotonic() + timeout
            while not done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or (abandoned is not None and abandoned()):
                    break
                self.changed.wait(0.5 if remaining is None else min(remaining, 0.5))
            return container.state.exit_code

    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        number = parse_signal(sig)
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            if container.state.status != "running":
                raise Conflict(f"Container {container.id} is not running")
            if number != signal.SIGWINCH:  # the docker CLI forwards window changes this way
                self._stopped_by_user(container)
            pid = container.state.pid
        _signal(pid, number)
        self._thaw(container)
        self.event(container, "kill", signal=str(number))

    def _thaw(self, container: Container) -> None:
        """A signal sent to a paused container acts once it is thawed: stop and kill work on it, as Docker's."""
        with self.ctx.lock:
            if not container.state.paused:
                return
            freezer = self.ctx.cgroups.path_of(container.cgroups, "freezer")
            if freezer:
                with contextlib.suppress(OSError):
                    cgroups.set_frozen(freezer, False)
            container.state.paused = False
            self.registry.save_container(container)

    def _stopped_by_user(self, container: Container) -> None:
        """No restart policy brings back a container that the user stopped or killed."""
        self.restarts.cancel(container.id)
        if not container.state.stopped_by_user:
            container.state.stopped_by_user = True
            self.registry.save_container(container)

    def stop(self, ref: str, timeout: float | None = None, sig: str | int | None = None) -> None:
        with self.ctx.lock:
            container = self.registry.find_container(ref)
            number = parse_signal(sig or container.stop_signal or "SIGTERM")
            if timeout is None:
                timeout = 10 if container.stop_timeout is None else container.stop_timeout
            self._stopped_by_user(container)
            if container.state.status != "running":
                return
            pid = container.state.pid
        _signal(pid, number)
        self._thaw(container)
        self.event(container, "kill", signal=str(number))
        if not self._wait_stopped(container, None if timeout < 0 else timeout):
            _signal(pid, signal.SIGKILL)
            self.event(container, "kill", signal=str(int(signal.SIGKILL)))
            self._wait_stopped(container, 30)
        self.event(container, "stop")

    def _wait_stopped(self, container: Container, timeout: float | None) -> bool:
        self.wait(container.id, timeout=timeout)
        return container.state.status != "running"

    def restart(self, ref: str, timeout: float | None = None) -> Container:
        self.stop(ref, timeout)
        container = self.start(ref)
        self.event(container, "restart")
        return container

    def remove(self, ref: str, force: bool = False, remove_volumes: bool = False) -> None:
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
                self.forget(container, remove_volumes)
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
    def connect(self, network_ref: str, container_ref: str, settings: dict | None = None) -> None:
        from boxnet.engine.container_requests import check_endpoint_settings, ingress_refusal

        with self.ctx.lock:
            network = self.registry.find_network(network_ref)
            container = self.registry.find_container(container_ref)
            if network.ingress:
                raise Forbidden(ingress_refusal(network))
            self._check_connectable(container, network)
            if network.name in container.requested_networks:
                raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}")
            settings = check_endpoint_settings(settings or {}, network.is_default_bridge)
            if container.state.status == "running":
                with UndoStack() as undo:
                    self.attacher.attach(container, network, settings, default_route=False, undo=undo)
            container.requested_networks[network.name] = settings
            self.registry.save_container(container)

    def _check_connectable(self, container: Container, network: Network) -> None:
        if container.network_mode in NETNS_MODES or container.shares_netns_with:
            raise Forbidden(f"container {container.name} uses network mode {container.network_mode}: it cannot "
                            "be connected to other networks")  # fmt: skip
        if not drivers.of(network).capabilities.endpoints:
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


def seconds_of(iso: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)
