"""A container's volumes, binds and tmpfs mounts, made by its init inside its own mount namespace.

Every target is resolved inside the container's root as if that root were `/` (openat2 with
RESOLVE_IN_ROOT), and mounted through the descriptor that resolution gave: a symlink an image or a shared
volume holds (`/data -> /etc`) can never send a mount, or the mountpoint made for it, onto the host's own
files. Binds and volumes are nodev, as every writable mount of a container is (a node made with
CAP_MKNOD opens nothing); tmpfs mounts are also nosuid, and noexec unless asked.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat

from boxnet.kernel import libc

IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
MAX_LINKS = 40


class MountError(Exception):
    pass


def _open(rootfd: int, relative: str, flags: int = os.O_PATH) -> int:
    return libc.openat2(rootfd, relative or ".", flags, IN_ROOT)


def mountpoint(root: str, target: str, directory: bool, depth: int = 0) -> int:
    """An O_PATH descriptor of target inside root, made if missing (directories, or an empty file last when
    a file is to be bound there). A dangling link on the way (an image's /etc/hosts -> /somewhere) is followed
    inside root, and what it names is made there, as runc's secure join does."""
    if depth > MAX_LINKS:
        raise MountError(f"mount target {target}: more than {MAX_LINKS} links on the way")
    parts = [p for p in target.split("/") if p]
    rootfd = os.open(root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index in range(1, len(parts) + 1):
            try:
                os.close(_open(rootfd, "/".join(parts[:index])))
                continue
            except FileNotFoundError:
                pass
            parent = _open(rootfd, "/".join(parts[: index - 1]), os.O_PATH | os.O_DIRECTORY)
            try:
                name = parts[index - 1]
                try:
                    link = os.readlink(name, dir_fd=parent)
                except OSError:
                    link = None  # missing: to be made
                if link is not None:
                    followed = posixpath.normpath(posixpath.join("/" + "/".join(parts[: index - 1]), link))
                    return mountpoint(root, posixpath.join(followed, *parts[index:]), directory, depth + 1)
                if index < len(parts) or directory:
                    os.mkdir(name, 0o755, dir_fd=parent)
                else:
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                     dir_fd=parent))  # fmt: skip
            except OSError as exc:
                if exc.errno == errno.EROFS:
                    raise MountError(f"mount target {target} does not exist in the container's root, which is "
                                     "read-only (the host image, or --read-only): choose a path that exists") from None
                raise
            finally:
                os.close(parent)
        return _open(rootfd, "/".join(parts))
    finally:
        os.close(rootfd)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _copy_up(root: str, target: str, volume: str) -> None:
    """Docker's copy of the image's files at target into a volume that is empty when first mounted."""
    if os.listdir(volume):
        return
    rootfd = os.open(root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            source_fd = _open(rootfd, target.strip("/"), os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return
    finally:
        os.close(rootfd)
    try:
        source = _fd_path(source_fd)
        shutil.copytree(source, volume, symlinks=True, dirs_exist_ok=True)
        for directory, dirs, files in os.walk(source):
            relative = os.path.relpath(directory, source)
            for name in ["", *dirs, *files]:
                if not name and relative != ".":
                    continue
                info = os.lstat(os.path.join(directory, name) if name else directory)
                copied = os.path.normpath(os.path.join(volume, relative, name))
                os.lchown(copied, info.st_uid, info.st_gid)
                if not stat.S_ISLNK(info.st_mode):
                    os.chmod(copied, stat.S_IMODE(info.st_mode))
    finally:
        os.close(source_fd)


def open_sources(mounts: list[dict]) -> None:
    """Opens every bind's and volume's source now, before anything is mounted over the paths that lead to them
    (the host image's private /tmp would hide a source under /tmp); apply mounts from these descriptors."""
    for mount in mounts:
        if mount["type"] != "tmpfs" and "source_fd" not in mount:
            try:
                mount["source_fd"] = os.open(mount["source"], os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                raise MountError(f"the source {mount['source']} of {mount['target']} does not exist") from None


def apply(root: str, mounts: list[dict]) -> None:
    """Mounts each entry of the spec (parents first) under root, before the container pivots into it."""
    open_sources(mounts)
    for mount in mounts:
        kind, target = mount["type"], mount["target"]
        if kind == "tmpfs":
            fd = mountpoint(root, target, directory=True)
            flags = libc.MS_NOSUID | libc.MS_NODEV | (0 if mount.get("tmpfs_exec") else libc.MS_NOEXEC)
            flags |= libc.MS_RDONLY if mount.get("read_only") else 0
            try:
                libc.mount("tmpfs", _fd_path(fd), "tmpfs", flags, mount.get("tmpfs_options") or None)
            finally:
                os.close(fd)
            continue
        source = _fd_path(mount.pop("source_fd"))
        directory = os.path.isdir(source)
        if kind == "volume" and mount.get("copy_up", True):
            _copy_up(root, target, source)
        fd = mountpoint(root, target, directory)
        try:
            libc.mount(source, _fd_path(fd), None, libc.MS_BIND | libc.MS_REC)
        finally:
            os.close(fd)
            os.close(int(source.rsplit("/", 1)[1]))
        # Opened again: the descriptor above is the directory under the new mount, not the mount itself.
        fd = mountpoint(root, target, directory)
        try:
            attrs = libc.MOUNT_ATTR_NODEV | (libc.MOUNT_ATTR_RDONLY if mount.get("read_only") else 0)
            libc.mount_setattr(_fd_path(fd), attrs, recursive=True)
        finally:
            os.close(fd)
