"""What a container's shim is told: the process to run, its namespaces, its view of the filesystem, its
identity and limits, and the files the daemon writes for it (/etc/hosts, /etc/resolv.conf, /etc/hostname)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

from boxnet.errors import Conflict, NotFound
from boxnet.model.container import CAPABILITY_NUMBERS, Container, effective_capabilities
from boxnet.model.process import HOST_GATEWAY
from boxnet.runtime import files

if TYPE_CHECKING:
    from boxnet.engine.context import EngineContext

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def shim_spec(ctx: EngineContext, container: Container, state_dir: str) -> dict:
    container_files = write_files(ctx, container, state_dir)
    env = [DEFAULT_PATH, f"HOSTNAME={container.hostname}"]
    if container.tty:
        env.append("TERM=xterm")
    env += container.env
    pidns = ""
    if container.pid_mode == "host":
        pidns = "host"
    elif container.pid_mode.startswith("container:"):
        target = ctx.registry.find_container(container.pid_mode.split(":", 1)[1])
        if target.state.status != "running":
            raise Conflict(f"cannot join the PID namespace of {target.name}: it is not running")
        pidns = f"/proc/{target.state.pid}/ns/pid"
    caps = effective_capabilities(container.cap_add, container.cap_drop)
    process = container.process
    image = image_spec(ctx, container, state_dir)
    return {
        "image": image, "rootfs": os.path.join(state_dir, "fs", "merged") if image else container.rootfs,
        "argv": container.argv, "env": env, "cwd": container.working_dir or "/",
        "hostname": container.hostname, "netns": container.sandbox_key, "pidns": pidns,
        "host_network": container.network_mode == "host",
        "files": container_files, "mounts": mount_specs(ctx, container), "tty": container.tty,
        "open_stdin": container.open_stdin, "stdin_once": container.stdin_once,
        "console_size": container.console_size,
        "capabilities": [CAPABILITY_NUMBERS[c] for c in caps],
        "cgroups": container.cgroups, "user": process.user, "group_add": process.group_add,
        "no_new_privileges": process.no_new_privileges, "read_only": process.read_only,
        "sysctls": process.sysctls, "ulimits": [asdict(u) for u in process.ulimits],
        "devices": [asdict(d) for d in process.devices], "oom_score_adj": process.oom_score_adj,
        "shm_size": process.shm_size, "masked_paths": process.masked_paths,
        "readonly_paths": process.readonly_paths,
    }  # fmt: skip


def image_spec(ctx: EngineContext, container: Container, state_dir: str) -> dict | None:
    """The overlayfs of a container of a stored image: its layers (topmost first) and its own upper and work
    directories, which keep its changes from one start to the next until it is removed."""
    if not container.image_id:
        return None
    image = ctx.images.image_by_id(container.image_id)
    if image is None:
        raise NotFound(f"image {container.image} ({container.image_id[:19]}) of container {container.name} "
                       "is no longer in the image store")  # fmt: skip
    fs = os.path.join(state_dir, "fs")
    for sub in ("upper", "work", "merged"):
        os.makedirs(os.path.join(fs, sub), mode=0o755, exist_ok=True)
    return {"layers_dir": ctx.images.layers_dir, "lower": ctx.images.layer_paths(image),
            "upper": os.path.join(fs, "upper"), "work": os.path.join(fs, "work")}  # fmt: skip


def mount_specs(ctx: EngineContext, container: Container) -> list[dict]:
    """Each mount with its source on this host: a -v bind's missing directory made now (Docker's rule), a
    volume's directory (made again if it was removed meanwhile)."""
    specs = []
    for mount in container.mounts:
        source = mount.source
        if mount.type == "bind" and not os.path.exists(source):
            if not mount.create_source:
                raise NotFound(f"bind source path {source} of {mount.target} no longer exists")
            os.makedirs(source, mode=0o755, exist_ok=True)
        elif mount.type == "volume":
            source = ctx.volumes.create(mount.source, anonymous=mount.anonymous).mountpoint
        specs.append({"type": mount.type, "target": mount.target, "source": source, "read_only": mount.read_only,
                      "copy_up": mount.copy_up, "tmpfs_options": mount.tmpfs_options,
                      "tmpfs_exec": mount.tmpfs_exec})  # fmt: skip
    return specs


def write_files(ctx: EngineContext, container: Container, state_dir: str) -> dict[str, str]:
    shared = container.shares_netns_with
    if shared:
        # Docker's container:X mode shares X's hosts and resolv.conf along with its network.
        source_dir = ctx.config.container_dir(shared)
        return {p: os.path.join(source_dir, n) for p, n in (("/etc/hosts", "hosts"),
                ("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname"))}  # fmt: skip
    extra = extra_hosts_lines(container)
    if container.network_mode == "host":
        # The host's own hosts and resolv.conf, as in Docker; a copy only when --add-host adds to it.
        contents = [("/etc/hostname", "hostname", container.hostname + "\n")]
        if extra:
            contents.append(("/etc/hosts", "hosts", _read("/etc/hosts") + extra))
    else:
        addresses = [a for e in container.endpoints.values() for a in (e.ipv4, e.ipv6) if a]
        contents = [
            ("/etc/hosts", "hosts", files.hosts_file(container.hostname, addresses) + extra),
            ("/etc/resolv.conf", "resolv.conf", ctx.dns.resolv_conf(container)),
            ("/etc/hostname", "hostname", container.hostname + "\n"),
        ]
    paths = {}
    for target, name, content in contents:
        path = os.path.join(state_dir, name)
        files.write_file(path, content)
        paths[target] = path
    return paths


def extra_hosts_lines(container: Container) -> str:
    """--add-host lines; host-gateway is the host as the container reaches it: its first network's gateway
    (127.0.0.1 on the host's own network)."""
    gateway = "127.0.0.1"
    first = next(iter(container.endpoints.values()), None)
    if first is not None and (first.gateway4 or first.gateway6):
        gateway = first.gateway4 or first.gateway6
    lines = []
    for entry in container.extra_hosts:
        name, _, address = entry.partition(":")
        address = gateway if address == HOST_GATEWAY else str(ipaddress.ip_address(address))
        lines.append(f"{address}\t{name}\n")
    return "".join(lines)


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        return files.HOSTS_HEADER
    return text if text.endswith("\n") or not text else text + "\n"
