"""A container's view of the filesystem, built by its init inside its own mount namespace.

Three kinds of root: the built-in `host` image (the host's own tree, read-only), a root directory
(--rootfs), and an image from the image store (its layers under an overlayfs of the container's own).
All get the same private pieces:

- /dev: a tmpfs with only the device nodes a container may use (bind mounts of the host's null, zero, full,
  random, urandom, tty, plus --device ones), its own devpts, /dev/shm and the usual links. Every other
  writable mount is nodev, so a node a container makes with CAP_MKNOD opens nothing (the devices cgroup
  says the same where it exists: runtime/cgroups.py).
- proc for its PID namespace and a read-only sysfs for its network namespace, with Docker's masked and
  read-only paths (/proc/kcore hidden, /proc/sys and /proc/sysrq-trigger read-only, ...).
- private writable /tmp, /run and /var/tmp, unless the root is to be read-only (--read-only).
- the files the daemon wrote for it (/etc/hosts, /etc/resolv.conf, /etc/hostname), bind-mounted.
- its volumes, binds and tmpfs mounts (runtime/mounts.py).
"""

from __future__ import annotations

import os
import stat

from boxnet.kernel import libc
from boxnet.runtime import mounts

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NOSUID_NODEV = libc.MS_NOSUID | libc.MS_NODEV
SHM_DEFAULT = 64 * 1024 * 1024  # Docker's


class RootError(Exception):
    pass


def _touch(path: str) -> None:
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()


def _bind_files(root: str, files: dict[str, str]) -> None:
    """The daemon's files bound in; inside a root of an image's or the user's, through a descriptor resolved
    in that root (an image's /etc/hosts may be a symlink to anywhere)."""
    for target, source in files.items():
        if not root:
            _touch(target)
            libc.mount(source, target, None, libc.MS_BIND)
            continue
        fd = mounts.mountpoint(root, target, directory=False)
        try:
            libc.mount(source, f"/proc/self/fd/{fd}", None, libc.MS_BIND)
        finally:
            os.close(fd)


def _real_directory(root: str, sub: str, create: bool) -> bool:
    """Whether root/sub is a directory and not a symlink (made if missing and create); an image's /proc,
    /sys or /dev that is anything else is refused, as runc refuses it."""
    path = f"{root}/{sub}"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        os.mkdir(path, 0o755)
        return True
    return stat.S_ISDIR(info.st_mode)


def _populate_dev(dev: str, devices: list[dict]) -> list[str]:
    """A tmpfs at dev with the allowed device nodes bound in from the host's /dev; returns their paths
    relative to dev's parent root (for clearing nodev later)."""
    # nodev: a node a container makes there opens nothing; the binds below keep their source's flags.
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_NOEXEC | libc.MS_NODEV, "mode=755,size=65536k")
    nodes = [(f"/dev/{name}", f"{dev}/{name}") for name in DEVICES]
    nodes += [(d["path_on_host"], dev + d["path_in_container"].removeprefix("/dev")) for d in devices]
    for source, target in nodes:
        _touch(target)
        libc.mount(source, target, None, libc.MS_BIND)
    for sub in ("pts", "shm", "mqueue"):
        os.makedirs(f"{dev}/{sub}", exist_ok=True)
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
        os.symlink(target, f"{dev}/{link}")
    return [target.removeprefix(dev) for _, target in nodes]


def _mount_kernel_filesystems(root: str, spec: dict) -> None:
    """proc for the new PID namespace, sysfs for the network namespace, devpts, shm, and the scratch dirs.

    A container on the host's network sees the daemon's /sys as it is: a second sysfs for a network
    namespace that already has one mounted fails with EBUSY (as under `ip netns exec`)."""
    libc.mount("proc", f"{root}/proc", "proc", NOSUID_NODEV | libc.MS_NOEXEC)
    if not spec.get("host_network"):
        libc.mount("sysfs", f"{root}/sys", "sysfs", NOSUID_NODEV | libc.MS_NOEXEC | libc.MS_RDONLY)
    elif root:
        libc.mount("/sys", f"{root}/sys", None, libc.MS_BIND | libc.MS_REC)
        libc.mount_setattr(f"{root}/sys", libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NODEV, recursive=True)
    libc.mount("devpts", f"{root}/dev/pts", "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620,gid=5")  # fmt: skip
    libc.mount("tmpfs", f"{root}/dev/shm", "tmpfs", NOSUID_NODEV | libc.MS_NOEXEC,
               f"mode=1777,size={spec.get('shm_size') or SHM_DEFAULT}")  # fmt: skip
    libc.mount("mqueue", f"{root}/dev/mqueue", "mqueue", NOSUID_NODEV | libc.MS_NOEXEC)
    if not spec.get("read_only"):
        for path, mode in (("tmp", "1777"), ("run", "755"), ("var/tmp", "1777")):
            # Real directories only, every step of the way: an image's links are followed by nothing here.
            parts = path.split("/")
            if all(_real_directory(root, "/".join(parts[: i + 1]), create=False) for i in range(len(parts))):
                libc.mount("tmpfs", f"{root}/{path}", "tmpfs", NOSUID_NODEV, f"mode={mode}")


def host_image(spec: dict) -> None:
    """The host's files, read-only and nodev, with a private /dev and scratch dirs."""
    mounts.open_sources(spec.get("mounts", []))  # before /tmp and the rest are mounted over
    # The daemon's files first: the state directory holding them may sit under /tmp, which a tmpfs hides.
    _bind_files("", spec["files"])
    # /dev is built aside and moved over the host's, whose nodes it binds from.
    staging = os.path.join(spec["state_dir"], "dev.staging")
    os.makedirs(staging, exist_ok=True)
    nodes = _populate_dev(staging, spec.get("devices", []))
    libc.mount(staging, "/dev", None, libc.MS_MOVE)
    libc.mount_setattr("/", libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NODEV, recursive=True)
    for node in nodes:  # the allowed nodes alone open devices
        libc.mount_setattr(f"/dev{node}", 0, libc.MOUNT_ATTR_NODEV)
    _mount_kernel_filesystems("", spec)
    mounts.apply("", spec.get("mounts", []))


def root_directory(spec: dict) -> None:
    """A root directory of the user's, nodev (and read-only with --read-only), pivoted into."""
    rootfs = spec["rootfs"]
    libc.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)
    flags = libc.MOUNT_ATTR_NODEV | (libc.MOUNT_ATTR_RDONLY if spec.get("read_only") else 0)
    libc.mount_setattr(rootfs, flags, recursive=True)
    for sub in ("proc", "sys", "dev"):
        if not _real_directory(rootfs, sub, create=not spec.get("read_only")):
            raise RootError(f"the container's root has no directory /{sub} (missing from a read-only root, or "
                            "a symlink or a file): refused")  # fmt: skip
    for sub in ("tmp", "run"):
        if not spec.get("read_only") and not os.path.lexists(f"{rootfs}/{sub}"):
            os.mkdir(f"{rootfs}/{sub}", 0o755)
    _populate_dev(f"{rootfs}/dev", spec.get("devices", []))
    _mount_kernel_filesystems(rootfs, spec)
    mounts.apply(rootfs, spec.get("mounts", []))
    _bind_files(rootfs, spec["files"])  # last, as Docker: a volume at /etc does not hide them
    os.chdir(rootfs)
    libc.pivot_root(".", ".")
    libc.umount(".", libc.MNT_DETACH)
    os.chdir("/")


def image_root(spec: dict) -> None:
    """An image's layers under the container's own upper directory, as overlayfs, then as a root directory.

    The mount lives in the container's mount namespace only: it goes with the container, and no mount is
    left on the host whatever happens to the daemon."""
    image = spec["image"]
    # Layers by their names relative to the layers directory: one page of mount options holds ~50 of them.
    os.chdir(image["layers_dir"])
    options = f"lowerdir={':'.join(image['lower'])},upperdir={image['upper']},workdir={image['work']}"
    libc.mount("overlay", spec["rootfs"], "overlay", libc.MS_NODEV, options)
    os.chdir("/")
    # What root_directory mounts over, made in the upper directory first (Docker's init layer), so that a
    # --read-only container of an image without them still gets them.
    for sub in ("proc", "sys", "dev", "tmp", "run", "etc"):
        path = f"{spec['rootfs']}/{sub}"
        if not os.path.lexists(path):
            os.mkdir(path, mode=0o755)
    for target in spec["files"]:
        os.close(mounts.mountpoint(spec["rootfs"], target, directory=False))
    mounts.open_sources(spec.get("mounts", []))
    for mount in spec.get("mounts", []):
        directory = mount["type"] == "tmpfs" or os.path.isdir(f"/proc/self/fd/{mount['source_fd']}")
        os.close(mounts.mountpoint(spec["rootfs"], mount["target"], directory))
    root_directory(spec)


def restrict_system_paths(masked: list[str], readonly: list[str]) -> None:
    """Docker's masked paths (hidden: /dev/null over a file, an empty read-only tmpfs over a directory)
    and read-only paths, inside the container's view; a path that does not exist is skipped."""
    for path in masked:
        if os.path.isdir(path):
            libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY | NOSUID_NODEV | libc.MS_NOEXEC, "size=0")
        elif os.path.exists(path):
            libc.mount("/dev/null", path, None, libc.MS_BIND)
    for path in readonly:
        if os.path.exists(path):
            libc.mount(path, path, None, libc.MS_BIND | libc.MS_REC)
            libc.mount_setattr(path, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
                               | libc.MOUNT_ATTR_NOEXEC, recursive=True)  # fmt: skip
