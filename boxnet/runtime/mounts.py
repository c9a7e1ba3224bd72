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
import stat

from boxnet.kernel import libc

IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
MAX_LINKS = 40


class MountError(Exception):
    pass


def _open(rootfd: int, relative: str, flags: int = os.O_PATH) -> int:
    for _ in range(16):
        try:
            return libc.openat2(rootfd, relative or ".", flags, IN_ROOT)
        except BlockingIOError:  # EAGAIN: a rename or mount elsewhere raced a `..` lookup; the kernel asks again
            continue
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


def _image_directory(root: str, target: str) -> int | None:
    """The image's directory at target (resolved in root), or None: what copy-up copies from."""
    rootfd = os.open(root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _open(rootfd, target.strip("/"), os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(rootfd)


def _copy_tree(source_fd: int, destination: str) -> None:
    """The tree under source_fd into destination, by descriptors on the source side (never following a
    link), owners and modes kept; links copied as links, special files skipped."""
    for entry in os.scandir(source_fd):
        info = os.stat(entry.name, dir_fd=source_fd, follow_symlinks=False)
        target = os.path.join(destination, entry.name)
        if stat.S_ISDIR(info.st_mode):
            if not os.path.isdir(target):
                os.mkdir(target, 0o700)
            child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_fd)
            try:
                _copy_tree(child, target)
            finally:
                os.close(child)
            os.lchown(target, info.st_uid, info.st_gid)
            os.chmod(target, stat.S_IMODE(info.st_mode), follow_symlinks=False)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(entry.name, dir_fd=source_fd), target)
            os.lchown(target, info.st_uid, info.st_gid)
        elif stat.S_ISREG(info.st_mode):
            reader = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_fd)
            writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                while os.sendfile(writer, reader, None, 1 << 20):
                    pass
                os.fchown(writer, info.st_uid, info.st_gid)
                os.fchmod(writer, stat.S_IMODE(info.st_mode))
            finally:
                os.close(reader)
                os.close(writer)


def _copy_up(source_fd: int, volume_fd: int, target: str) -> None:
    """Docker's copy of the image's files at target into a volume that is empty when first mounted.

    Done in a child chrooted into the volume: another container sharing the volume may plant links in it at
    any moment, and inside that root a link can only lead back into the volume."""
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's half, reported through the pipe
        os.close(status_r)
        try:
            os.fchdir(volume_fd)
            os.chroot(".")
            if not os.listdir("/"):
                _copy_tree(source_fd, "/")
            os._exit(0)
        except BaseException as exc:
            os.write(status_w, str(exc).encode()[:1000])
            os._exit(1)
    os.close(status_w)
    with os.fdopen(status_r, "rb") as reader:
        message = reader.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise MountError(f"copying the image's files at {target} into its volume failed: {message}")


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
    # What copy-up copies is the image's, opened before any mount changes what the paths lead to.
    image_dirs = {m["target"]: _image_directory(root, m["target"]) for m in mounts
                  if m["type"] == "volume" and m.get("copy_up", True)}  # fmt: skip
    try:
        for mount in mounts:
            try:
                _apply_one(root, mount, image_dirs.get(mount["target"]))
            except OSError as exc:
                raise MountError(f"mounting on {mount['target']}: {exc.strerror or exc}") from None
    finally:
        for fd in image_dirs.values():
            if fd is not None:
                os.close(fd)


def _apply_one(root: str, mount: dict, image_dir: int | None) -> None:
    target = mount["target"]
    if mount["type"] == "tmpfs":
        fd = mountpoint(root, target, directory=True)
        flags = libc.MS_NOSUID | libc.MS_NODEV | (0 if mount.get("tmpfs_exec") else libc.MS_NOEXEC)
        flags |= libc.MS_RDONLY if mount.get("read_only") else 0
        try:
            libc.mount("tmpfs", _fd_path(fd), "tmpfs", flags, mount.get("tmpfs_options") or None)
        finally:
            os.close(fd)
        return
    source_fd = mount.pop("source_fd")
    try:
        directory = stat.S_ISDIR(os.fstat(source_fd).st_mode)
        if mount["type"] == "volume" and image_dir is not None:
            _copy_up(image_dir, source_fd, target)
        # A detached copy of the source, its flags set before it is attached anywhere: no second lookup of the
        # target that a container sharing a volume could redirect between the mount and its flags.
        tree = libc.clone_tree(source_fd)
        try:
            libc.set_tree_attributes(tree, libc.MOUNT_ATTR_NODEV | (libc.MOUNT_ATTR_RDONLY if mount.get("read_only")
                                                                    else 0))  # fmt: skip
            fd = mountpoint(root, target, directory)
            try:
                libc.attach_tree(tree, fd)
            finally:
                os.close(fd)
        finally:
            os.close(tree)
    finally:
        os.close(source_fd)
