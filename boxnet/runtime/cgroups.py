"""A container's cgroups: what it uses (stats), its memory, CPU and pids limits, pause, and which devices it
may open.

cgroup v1 (this machine's: every controller has a hierarchy of its own): a container gets a directory
`boxnet/<container id>` in a controller's hierarchy, under the daemon's own cgroup there, so that whatever
limits an administrator put on boxnetd hold for its containers too. The container's init joins them before
it does anything else, and everything it starts (and every exec) is inside.

Every container is in cpuacct, memory, pids, blkio and freezer: what `docker stats` reads, and what
`docker pause` freezes. Joining five cgroups instead of one costs little on this kernel (mkdir, join and
rmdir of memory alone 1.62 ms against 1.84 ms for all five, median of 30: kernel 6.18 no longer waits for
an RCU grace period on cgroup_threadgroup_rwsem, which cost 10-30 ms on older ones). cpu joins only for a
CPU limit. Which devices a container may open is settled without the devices controller: every writable
mount in a container is nodev (runtime/rootfs.py), so a node made with CAP_MKNOD opens nothing, and only the
allowed nodes are bound into its /dev. The controller joins in only for a --device whose permissions are
narrower than rwm (read-only, say), which a mount cannot express.

cgroup v2 alone (no v1 hierarchies) is not handled yet: a container asking for limits there is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass

from boxnet.errors import InvalidArgument
from boxnet.model.process import Device, Resources

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices")
# What every container is in: its usage for stats, and the freezer for pause.
ALWAYS = ("cpuacct", "memory", "pids", "blkio", "freezer")
CFS_PERIOD = 100_000

# Docker's default device rules (moby/oci/devices_linux.go): mknod of anything, and these to open.
DEFAULT_DEVICE_RULES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm")  # fmt: skip


@dataclass(frozen=True)
class Hierarchy:
    controller: str
    mountpoint: str  # where the hierarchy is mounted
    own: str  # this process's cgroup in it, relative to the mountpoint


def find_hierarchies(mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup") -> list[Hierarchy]:
    """The v1 hierarchies of the controllers boxnet uses, with this process's place in each."""
    mounts: dict[str, str] = {}
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] != "cgroup":
                continue
            for option in fields[separator + 3].split(","):
                if option in CONTROLLERS and fields[3] == "/":
                    mounts.setdefault(option, fields[4])
    own: dict[str, str] = {}
    with open(cgroup) as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                own[controller] = path.lstrip("/")
    return [Hierarchy(c, mounts[c], own.get(c, "")) for c in CONTROLLERS if c in mounts]


def device_rule(device: Device) -> str:
    """The devices-controller rule for a --device: its kind, numbers and permissions, from the host's node."""
    import stat

    info = os.stat(device.path_on_host)
    kind = "c" if stat.S_ISCHR(info.st_mode) else "b" if stat.S_ISBLK(info.st_mode) else ""
    if not kind:
        raise InvalidArgument(f"{device.path_on_host} is not a device node")
    return f"{kind} {os.major(info.st_rdev)}:{os.minor(info.st_rdev)} {device.permissions}"


class Cgroups:
    """The daemon's side: make, configure and remove containers' cgroups."""

    def __init__(self) -> None:
        try:
            self.hierarchies = find_hierarchies()
        except OSError:
            self.hierarchies = []
        self.controllers = {h.controller for h in self.hierarchies}

    def check(self, resources: Resources, devices: list[Device]) -> None:
        """Refuses, before anything is made, what this machine's controllers cannot enforce."""
        wanted = {"memory": resources.memory, "cpu": resources.nano_cpus or resources.cpu_quota
                  or resources.cpu_shares or resources.cpu_period, "pids": resources.pids_limit > 0}  # fmt: skip
        for controller, asked in wanted.items():
            if asked and controller not in self.controllers:
                raise InvalidArgument(f"a {controller} limit needs the cgroup v1 {controller} controller, which "
                                      "this machine does not have mounted")  # fmt: skip
        partial = [d for d in devices if d.permissions != "rwm"]
        if partial and "devices" not in self.controllers:
            raise InvalidArgument(f"device permissions {partial[0].permissions!r} need the cgroup v1 devices "
                                  "controller, which this machine does not have mounted; use rwm")  # fmt: skip
        for device in devices:
            try:
                device_rule(device)
            except OSError as exc:
                raise InvalidArgument(f"device {device.path_on_host}: {exc.strerror}") from None

    def _needed(self, resources: Resources, devices: list[Device]) -> list[Hierarchy]:
        wanted = {"cpu": bool(resources.nano_cpus or resources.cpu_quota or resources.cpu_shares
                              or resources.cpu_period),
                  "devices": any(d.permissions != "rwm" for d in devices)}  # fmt: skip
        return [h for h in self.hierarchies if h.controller in ALWAYS or wanted[h.controller]]

    def path_of(self, paths: list[str], controller: str) -> str:
        """Which of a container's cgroup directories is the controller's ("" if it has none there)."""
        for hierarchy in self.hierarchies:
            if hierarchy.controller == controller:
                prefix = hierarchy.mountpoint.rstrip("/") + "/"
                return next((p for p in paths if p.startswith(prefix)), "")
        return ""

    def paths(self, container_id: str, resources: Resources, devices: list[Device]) -> list[str]:
        """The directories of the container's cgroups: those of the controllers it needs."""
        return [os.path.join(h.mountpoint, h.own, "boxnet", container_id) for h in self._needed(resources, devices)]

    def create(self, container_id: str, resources: Resources, devices: list[Device]) -> list[str]:
        """Makes and configures the container's cgroups; returns their directories (for the init to join)."""
        made = []
        needed = self._needed(resources, devices)
        try:
            for hierarchy, path in zip(needed, self.paths(container_id, resources, devices), strict=True):
                os.makedirs(path, exist_ok=True)
                made.append(path)
                self._configure(hierarchy.controller, path, resources, devices)
        except OSError as exc:
            self.remove(made)
            raise InvalidArgument(f"cgroup set-up failed: {exc}") from None
        return made

    @staticmethod
    def _configure(controller: str, path: str, resources: Resources, devices: list[Device]) -> None:
        def write(name: str, value: str) -> None:
            with open(os.path.join(path, name), "w") as handle:
                handle.write(value)

        if controller == "memory" and resources.memory:
            write("memory.limit_in_bytes", str(resources.memory))
        elif controller == "cpu":
            if resources.cpu_shares:
                write("cpu.shares", str(resources.cpu_shares))
            if resources.nano_cpus:
                write("cpu.cfs_period_us", str(CFS_PERIOD))
                write("cpu.cfs_quota_us", str(resources.nano_cpus * CFS_PERIOD // 1_000_000_000))
            elif resources.cpu_quota or resources.cpu_period:
                write("cpu.cfs_period_us", str(resources.cpu_period or CFS_PERIOD))
                if resources.cpu_quota:
                    write("cpu.cfs_quota_us", str(resources.cpu_quota))
        elif controller == "pids" and resources.pids_limit > 0:
            write("pids.max", str(resources.pids_limit))
        elif controller == "devices":
            write("devices.deny", "a")
            for rule in (*DEFAULT_DEVICE_RULES, *(device_rule(d) for d in devices)):
                write("devices.allow", rule)

    @staticmethod
    def remove(paths: list[str], wait: float = 2.0) -> None:
        """Removes the directories; a cgroup still holding dying processes is waited for a little."""
        deadline = time.monotonic() + wait
        for path in paths:
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


def set_frozen(freezer: str, frozen: bool, timeout: float = 5.0) -> None:
    """Freezes (or thaws) every process of a freezer cgroup, and waits until the kernel says it is done
    (freezing is asynchronous: a task in an uninterruptible sleep freezes when it wakes)."""
    wanted = "FROZEN" if frozen else "THAWED"
    state_file = os.path.join(freezer, "freezer.state")
    deadline = time.monotonic() + timeout
    while True:
        with open(state_file, "w") as handle:  # written again each round, as runc does: FREEZING can stall
            handle.write(wanted)
        with open(state_file) as handle:
            state = handle.read().strip()
        if state == wanted:
            return
        if time.monotonic() > deadline:
            raise OSError(errno.EBUSY, f"the freezer is still {state}")
        time.sleep(0.001)


def join(paths: list[str]) -> None:
    """Puts the calling process into each cgroup (the container's init, an exec'd process)."""
    for path in paths:
        with open(os.path.join(path, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))


def listing() -> list[str]:
    """Every container cgroup this process's place in the hierarchies holds (for the leak checks)."""
    found = []
    for hierarchy in find_hierarchies():
        with contextlib.suppress(FileNotFoundError):
            parent = os.path.join(hierarchy.mountpoint, hierarchy.own, "boxnet")
            found += [f"{hierarchy.controller}/{name}" for name in os.listdir(parent)
                      if os.path.isdir(os.path.join(parent, name))]  # fmt: skip
    return sorted(found)
