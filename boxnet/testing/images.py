"""Images the tests, benchmarks and demo build themselves (no registry on the internet is reachable here):
a busybox layer from Debian's busybox-static, extra layers (with whiteouts), and docker-archive tarballs
of them, which skopeo can push to the sandbox's registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, field

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "sleep", "wc", "id", "env", "pwd", "mkdir", "rm", "touch", "head", "tail",
           "grep", "ps", "hostname", "nc", "wget", "httpd", "ip", "ping", "true", "false", "stat", "sha256sum",
           "find", "tee", "seq", "dd", "mount", "test", "uname", "whoami", "chmod", "ln", "readlink", "cp")  # fmt: skip
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _info(name: str, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    info.mode = 0o755
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@dataclass
class LayerBuilder:
    """A layer tarball, entry by entry."""

    buffer: io.BytesIO = field(default_factory=io.BytesIO)
    owner: tuple[int, int] = (0, 0)  # every entry's uid and gid

    def __post_init__(self) -> None:
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by bytes()

    def directory(self, name: str, mode: int = 0o755) -> LayerBuilder:
        self.tar.addfile(self._info(name, type=tarfile.DIRTYPE, mode=mode))
        return self

    def file(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
             pax: dict[str, str] | None = None) -> LayerBuilder:  # fmt: skip
        info = self._info(name, size=len(data), mode=mode, uid=uid or self.owner[0], gid=gid or self.owner[1])
        if pax:
            info.pax_headers = pax
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str) -> LayerBuilder:
        self.tar.addfile(self._info(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777))
        return self

    def hardlink(self, name: str, target: str) -> LayerBuilder:
        self.tar.addfile(self._info(name, type=tarfile.LNKTYPE, linkname=target))
        return self

    def _info(self, name: str, **attrs: object) -> tarfile.TarInfo:
        return _info(name, **{"uid": self.owner[0], "gid": self.owner[1], **attrs})

    def whiteout(self, name: str) -> LayerBuilder:
        directory, _, base = name.rpartition("/")
        return self.file(f"{directory}/.wh.{base}" if directory else f".wh.{base}", b"")

    def opaque(self, directory: str) -> LayerBuilder:
        return self.file(f"{directory}/.wh..wh..opq", b"")

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def busybox_layer() -> bytes:
    """A root filesystem with busybox-static and links for the applets the tests use."""
    with open(BUSYBOX, "rb") as handle:
        binary = handle.read()
    layer = LayerBuilder()
    for name in ("bin", "etc", "root", "tmp", "var", "var/tmp", "usr", "usr/bin"):
        layer.directory(name, 0o1777 if name.endswith("tmp") else 0o755)
    layer.file("bin/busybox", binary, 0o755)
    for applet in APPLETS:
        layer.hardlink(f"bin/{applet}", "bin/busybox")
    layer.symlink("usr/bin/env", "/bin/env")
    layer.file("etc/passwd", PASSWD.encode()).file("etc/group", GROUP.encode())
    return layer.bytes()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class BuiltImage:
    config: bytes
    layers: list[bytes]  # as they go into the archive (plain or gzip)
    diff_ids: list[str]

    @property
    def id(self) -> str:
        return digest(self.config)


def image(layers: list[bytes], config: dict | None = None, compress: str = "") -> BuiltImage:
    """An image of plain layer tarballs, with config the container part (Cmd, Env, ...), its layers stored
    compressed with compress ("gzip", "zstd") if given."""
    diff_ids = [digest(layer) for layer in layers]
    created = "2026-12-01T00:00:00Z"
    document = {"architecture": "amd64", "os": "linux", "created": created,
                "config": config or {"Cmd": ["sh"], "Env": [DEFAULT_PATH]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": "boxnet tests"} for _ in layers]}  # fmt: skip
    packers = {"": lambda data: data, "gzip": lambda data: gzip.compress(data, mtime=0), "zstd": zstd}
    stored = [packers[compress](layer) for layer in layers]
    return BuiltImage(json.dumps(document).encode(), stored, diff_ids)


def docker_archive(images: list[tuple[BuiltImage, list[str]]]) -> bytes:
    """A `docker save` tarball (manifest.json with each image's tags)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        manifest = []
        for built, tags in images:
            config_name = built.id[7:] + ".json"
            _add(tar, config_name, built.config)
            names = []
            for layer in built.layers:
                name = digest(layer)[7:] + "/layer.tar"
                if name not in tar.getnames():
                    _add(tar, name, layer)
                names.append(name)
            manifest.append({"Config": config_name, "RepoTags": tags, "Layers": names})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def oci_layout(directory: str, entries: list[tuple[BuiltImage, str]], tag: str, media_type: str) -> str:
    """An OCI image layout at directory whose index (tagged tag) lists each image for its architecture
    ("amd64", "arm64"), its layers stored as they are with media_type (e.g. ...tar+zstd); what skopeo copy
    --all pushes as a multi-platform image."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes) -> dict:
        write(os.path.join(blobs, digest(data)[7:]), data)
        return {"digest": digest(data), "size": len(data)}

    manifests = []
    for built, arch in entries:
        config = put(built.config)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": media_type, **put(layer)} for layer in built.layers]}  # fmt: skip
        descriptor = put(json.dumps(manifest).encode())
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **descriptor,
                          "platform": {"architecture": arch, "os": "linux"}})  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    top = put(json.dumps(index).encode())
    ref = {"org.opencontainers.image.ref.name": tag}
    outer = {"schemaVersion": 2,
             "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **top, "annotations": ref}]}
    write(os.path.join(directory, "index.json"), json.dumps(outer).encode())
    write(os.path.join(directory, "oci-layout"), json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    return directory
