"""Unpacking a layer tarball into a directory in overlayfs's form, without letting the tarball reach anything
outside that directory.

The checks, each refused by name (LayerError, a 400), before anything of the entry is written:
- a name is relative and never climbs: no leading `/`, no `..` component;
- extraction never follows a symlink: every parent of an entry is checked with lstat to be a real directory
  (a layer that makes `etc -> /` and then writes `etc/passwd` is refused). Symlinks themselves are kept
  as they are: they are resolved only inside the container's root, at run time;
- a hard link points at a file this layer already holds, by a name that passes the same checks;
- whiteouts (`.wh.NAME`) name one entry of their own directory (not `.`, `..` or empty), and become
  overlayfs's whiteouts (a 0:0 character device); `.wh..wh..opq` marks its directory opaque;
- extended attributes in `trusted.` and `user.overlay.` are refused: `trusted.overlay.*` would steer
  overlayfs itself (redirects, opaque dirs, metacopy) from inside an image, and `user.overlay.*` would under
  a userxattr mount. security.capability and other user.* are kept;
- a PAX header or GNU long name larger than 1 MiB is refused (tarfile would read it whole).

The caller unpacks into a fresh directory and moves it into place only when the whole layer passed, so a
refused layer leaves nothing behind (images/store.py).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from typing import BinaryIO

from boxnet.errors import InvalidArgument

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
AUFS_META = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
KEPT_XATTRS = ("security.capability", "user.")
CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(InvalidArgument):
    pass


MAX_HEADER = 1 << 20


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a PAX header or a GNU long name whole, of whatever size the archive claims: bounded here,
    so that a hostile tarball cannot make the daemon hold gigabytes for one header."""

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._bound()
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._bound()
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _bound(self) -> None:
        if self.size > MAX_HEADER:
            raise LayerError(f"a tar header claims {self.size} bytes, more than the {MAX_HEADER} allowed")


class DigestReader:
    """A reader that hashes what passes through it, and counts it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Reads to the end, so that the digest covers the whole stream (tar's trailing blocks too)."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Peeked:
    """A reader with its first bytes put back."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self.head = head
        self.source = source

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size < 0:
                data, self.head = self.head + self.source.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            if len(data) < size:
                data += self.source.read(size - len(data))
            return data
        return self.source.read(size)


def decompressed(source: BinaryIO) -> BinaryIO:
    """The plain tar stream of a layer, whether it came gzip- or zstd-compressed or not at all (by its magic
    bytes: media types lie, as docker save's `.tar` layers compressed by hand show)."""
    head = b""
    while len(head) < 4:
        more = source.read(4 - len(head))
        if not more:
            break
        head += more
    peeked = _Peeked(head, source)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=peeked, mode="rb")  # type: ignore[arg-type]
    if head.startswith(ZSTD_MAGIC):
        import zstandard  # only layers compressed so pay for the import

        return zstandard.ZstdDecompressor().stream_reader(peeked, read_across_frames=True)  # type: ignore[arg-type]
    return peeked  # type: ignore[return-value]


def is_unreadable(exc: BaseException) -> bool:
    """Whether exc says the stream is no tar, or a broken one (rather than the disk failing)."""
    if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OverflowError, ValueError)):
        return True
    return type(exc).__name__ == "ZstdError"


def safe_name(name: str, what: str = "entry") -> str:
    """The entry's path relative to the layer's root ("" for the root itself)."""
    if name.startswith("/"):
        raise LayerError(f"layer {what} {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer {what} {name!r} climbs out of the layer with '..'")
    return "/".join(parts)


def _check_parents(root: str, relative: str, name: str) -> None:
    """Every directory above relative is a real directory (made if missing), never a symlink."""
    path = root
    for part in relative.split("/")[:-1]:
        path = os.path.join(path, part)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(info.st_mode):
            raise LayerError(f"layer entry {name!r} would be written through the symlink {path[len(root) + 1:]!r}")
        if not stat.S_ISDIR(info.st_mode):
            raise LayerError(f"layer entry {name!r} is under {path[len(root) + 1:]!r}, which is not a directory")


def _clear(path: str, keep_directory: bool) -> None:
    """Makes room for a new entry at path: what was there goes, but a directory that stays a directory."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if not keep_directory:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    kept = {}
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if name.startswith(("trusted.", "user.overlay.")):
            raise LayerError(f"layer entry {member.name!r} sets the extended attribute {name!r}: trusted "
                             "attributes would steer overlayfs from inside an image")  # fmt: skip
        if name.startswith(KEPT_XATTRS):
            kept[name] = value.encode("utf-8", "surrogateescape")
    return kept


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
    source = tar.extractfile(member)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        if source is not None:
            shutil.copyfileobj(source, out, CHUNK)


def _whiteout(root: str, relative: str, name: str) -> None:
    directory, _, base = relative.rpartition("/")
    target_name = base[len(WHITEOUT):]
    if target_name in ("", ".", ".."):
        raise LayerError(f"layer whiteout {name!r} names no entry of its own directory")
    target = os.path.join(root, directory, target_name) if directory else os.path.join(root, target_name)
    _clear(target, keep_directory=False)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def apply(source: BinaryIO, root: str) -> int:
    """Unpacks the (plain) tar stream source into the existing, empty directory root; the bytes of content
    written. LayerError on an entry that breaks a rule above, with nothing more written after it."""
    written = 0
    directories: list[tuple[str, int]] = []
    with tarfile.open(fileobj=source, mode="r|", format=tarfile.PAX_FORMAT, tarinfo=BoundedTarInfo) as tar:
        for member in tar:
            relative = safe_name(member.name)
            if not relative:
                continue  # the root entry: the layer's root is the container's, made by boxnet
            _check_parents(root, relative, member.name)
            base = relative.rpartition("/")[2]
            path = os.path.join(root, relative)
            if base == OPAQUE:
                os.setxattr(os.path.dirname(path), OPAQUE_XATTR, b"y")
                continue
            if base.startswith(AUFS_META):
                continue  # aufs's own bookkeeping (.wh..wh.plnk, ...), which overlayfs has no use for
            if base.startswith(WHITEOUT):
                _whiteout(root, relative, member.name)
                continue
            xattrs = _xattrs(member)
            _clear(path, keep_directory=member.isdir())
            if member.isdir():
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                directories.append((path, int(member.mtime)))
            elif member.isreg():
                _write_file(tar, member, path)
                written += member.size
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = safe_name(member.linkname, "hard link target")
                _check_parents(root, target, member.name)
                target_path = os.path.join(root, target)
                if not target or not os.path.lexists(target_path) or stat.S_ISDIR(os.lstat(target_path).st_mode):
                    raise LayerError(f"layer hard link {member.name!r} points at {member.linkname!r}, which is "
                                     "not a file of this layer")  # fmt: skip
                os.link(target_path, path, follow_symlinks=False)
                continue  # a hard link shares its target's owner, mode and times
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(path, kind | (member.mode & 0o777), os.makedev(member.devmajor, member.devminor))
            elif member.isfifo():
                os.mkfifo(path, member.mode & 0o777)
            else:
                raise LayerError(f"layer entry {member.name!r} has an unsupported type {member.type!r}")
            os.lchown(path, member.uid, member.gid)
            for name, value in xattrs.items():
                with contextlib.suppress(OSError):  # a filesystem without user xattrs loses them, as docker's
                    os.setxattr(path, name, value, follow_symlinks=False)
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)  # after chown, which clears setuid bits
                os.utime(path, (member.mtime, member.mtime))
            else:
                with contextlib.suppress(OSError, NotImplementedError):
                    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
    for path, mtime in reversed(directories):  # last: their entries changed their times
        os.utime(path, (mtime, mtime))
    return written
