"""Images in and out as tarballs: `load` of what `docker save` writes (the docker-archive's manifest.json)
and of OCI image layouts (index.json), `save` in a form both kinds of reader take, and `import` of a root
filesystem tarball as a one-layer image."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import posixpath
import shlex
import shutil
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from boxnet.errors import InvalidArgument
from boxnet.images import layers
from boxnet.images.reference import Reference, check_digest, parse
from boxnet.images.store import CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, Image, ImageStore, iter_layer_tars, now

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_ARCHIVE_LINKS = 16


class ArchiveError(InvalidArgument):
    pass


def machine_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@dataclass
class Unpacked:
    """An archive unpacked in a scratch directory: its regular files, and its symlinks kept as data."""

    root: str
    links: dict[str, str]

    def path(self, name: str) -> str:
        """The file an archive path names, following the archive's own symlinks within it."""
        relative = layers.safe_name(name, "archive path")
        for _ in range(MAX_ARCHIVE_LINKS):
            if relative not in self.links:
                path = os.path.join(self.root, relative)
                if not os.path.isfile(path):
                    raise ArchiveError(f"the archive has no file {name!r}")
                return path
            target = self.links[relative]
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise ArchiveError(f"archive link {relative!r} points outside the archive ({target!r})")
            relative = joined  # docker save (before 25) links repeated layers: <id>/layer.tar -> ../<other>/...
        raise ArchiveError(f"archive path {name!r} goes through more than {MAX_ARCHIVE_LINKS} links")

    def read(self, name: str, limit: int = 16 << 20) -> bytes:
        path = self.path(name)
        if os.path.getsize(path) > limit:
            raise ArchiveError(f"archive file {name!r} is larger than {limit} bytes")
        with open(path, "rb") as handle:
            return handle.read()

    def exists(self, name: str) -> bool:
        try:
            self.path(name)
        except ArchiveError:
            return False
        return True


def unpack_archive(source: BinaryIO, root: str) -> Unpacked:
    """The outer tarball's files into root: regular files and directories only (symlinks kept as data)."""
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=source, mode="r|*", tarinfo=layers.BoundedTarInfo) as tar:
            for member in tar:
                relative = layers.safe_name(member.name, "archive entry")
                if not relative:
                    continue
                path = os.path.join(root, relative)
                if member.isdir():
                    os.makedirs(path, exist_ok=True)
                elif member.isreg():
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    if os.path.lexists(path):
                        raise ArchiveError(f"the archive holds {member.name!r} twice")
                    reader = tar.extractfile(member)
                    with open(path, "wb") as out:
                        shutil.copyfileobj(reader, out, layers.CHUNK)  # type: ignore[misc]
                elif member.issym():
                    links[relative] = member.linkname
                else:
                    raise ArchiveError(f"archive entry {member.name!r} is neither a file, a directory nor a link")
    except BaseException as exc:
        if layers.is_unreadable(exc):
            raise ArchiveError(f"the archive is not a readable tar: {exc}") from None
        if isinstance(exc, (FileExistsError, IsADirectoryError, NotADirectoryError)):
            raise ArchiveError(f"the archive holds a path both as a file and as a directory: {exc.filename}") from None
        raise
    return Unpacked(root, links)


def _adopt_file(store: ImageStore, path: str, expected: str = "") -> str:
    """Moves an unpacked file into the store's blobs; its digest (checked against expected if given)."""
    with open(path, "rb") as handle:
        reader = layers.DigestReader(handle)
        reader.drain()
    if expected and reader.digest != expected:
        raise ArchiveError(f"blob {expected} in the archive has the content of {reader.digest}: refused")
    if not store.has_blob(reader.digest):
        store.adopt_blob(path, reader.digest)
    return reader.digest


def _config(store: ImageStore, data: bytes) -> tuple[dict[str, Any], list[str]]:
    try:
        config = json.loads(data)
        diff_ids = [check_digest(d) for d in config["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
        raise ArchiveError(f"an image config in the archive is not valid: {exc}") from None
    return config, diff_ids


def _add(store: ImageStore, unpacked: Unpacked, config_bytes: bytes, layer_files: list[tuple[str, str]],
         tags: Iterable[str]) -> tuple[Image, list[str]]:  # fmt: skip
    """layer_files: (archive path, expected blob digest or "") per layer, bottom first."""
    _, diff_ids = _config(store, config_bytes)
    if len(diff_ids) != len(layer_files):
        raise ArchiveError(f"an image in the archive lists {len(layer_files)} layers, its config {len(diff_ids)}")
    for (name, expected), diff_id in zip(layer_files, diff_ids, strict=True):
        if store.layer(diff_id):
            continue
        blob = _adopt_file(store, unpacked.path(name), expected)
        store.unpack_layer(blob, diff_id)
    image = store.add_image(config_bytes)
    tagged = []
    for text in tags:
        reference = parse(text)
        store.tag(image.id, reference)
        tagged.append(reference.familiar)
    return image, tagged


def load(store: ImageStore, source: BinaryIO) -> list[str]:
    """Loads every image of a docker-archive or OCI-layout tarball; what docker prints for each."""
    work = store.scratch()
    os.makedirs(work)
    try:
        unpacked = unpack_archive(source, work)
        try:
            if unpacked.exists("manifest.json"):
                return _load_docker_archive(store, unpacked)
            if unpacked.exists("index.json"):
                return _load_oci_layout(store, unpacked)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            # The shape of manifest.json, index.json or a manifest is not what the formats say.
            raise ArchiveError(f"the archive's metadata is malformed: {type(exc).__name__}: {exc}") from None
        raise ArchiveError("the archive has neither a manifest.json (docker save) nor an index.json (OCI layout)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load_docker_archive(store: ImageStore, unpacked: Unpacked) -> list[str]:
    try:
        manifest = json.loads(unpacked.read("manifest.json"))
        entries = [(e["Config"], e.get("RepoTags") or [], list(e["Layers"])) for e in manifest]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"the archive's manifest.json is not valid: {exc}") from None
    messages = []
    for config_name, tags, layer_names in entries:
        config_bytes = unpacked.read(config_name)
        image, tagged = _add(store, unpacked, config_bytes, [(n, "") for n in layer_names], tags)
        messages += [f"Loaded image: {t}" for t in tagged] or [f"Loaded image ID: {image.id}"]
    return messages


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + check_digest(digest).removeprefix("sha256:")


def _load_oci_layout(store: ImageStore, unpacked: Unpacked) -> list[str]:
    messages = []
    try:
        index = json.loads(unpacked.read("index.json"))
        descriptors = list(index["manifests"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"the archive's index.json is not valid: {exc}") from None
    for descriptor in descriptors:
        annotations = descriptor.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or ""
        ref_name = annotations.get("org.opencontainers.image.ref.name") or ""
        if not name and ref_name and ":" in ref_name.rsplit("/", 1)[-1]:
            name = ref_name
        manifest = _oci_manifest(unpacked, descriptor)
        config_digest = check_digest(manifest["config"]["digest"])
        config_bytes = unpacked.read(_blob_name(config_digest))
        if _digest(config_bytes) != config_digest:
            raise ArchiveError(f"the config blob {config_digest} in the archive does not match its digest")
        layer_files = [(_blob_name(layer["digest"]), layer["digest"]) for layer in manifest["layers"]]
        image, tagged = _add(store, unpacked, config_bytes, layer_files, [name] if name else [])
        messages += [f"Loaded image: {t}" for t in tagged] or [f"Loaded image ID: {image.id}"]
    return messages


def _oci_manifest(unpacked: Unpacked, descriptor: dict[str, Any]) -> dict[str, Any]:
    """The image manifest a descriptor leads to (through a nested index for this machine's platform)."""
    for _ in range(4):
        digest = check_digest(descriptor["digest"])
        data = unpacked.read(_blob_name(digest))
        if _digest(data) != digest:
            raise ArchiveError(f"the manifest {digest} in the archive does not match its digest")
        document = json.loads(data)
        if "manifests" not in document:
            return document
        descriptor = choose_platform(document["manifests"], digest)
    raise ArchiveError("the archive's indexes nest too deeply")


def choose_platform(manifests: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """This machine's entry of a manifest list / image index (linux and its architecture)."""
    arch = machine_arch()
    for entry in manifests:
        wanted = entry.get("platform") or {}
        if wanted.get("os", "linux") == "linux" and wanted.get("architecture", arch) == arch:
            return entry
    offered = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                      for m in manifests})  # fmt: skip
    raise ArchiveError(f"{where} has no image for linux/{arch} (it has {', '.join(offered) or 'none'})")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return data


# ---- import ----------------------------------------------------------------------------------------------
def parse_changes(changes: list[str]) -> dict[str, Any]:
    """Dockerfile instructions `import --change` applies to the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER,
    EXPOSE, LABEL, VOLUME, STOPSIGNAL."""
    try:
        return _parse_changes(changes)
    except ValueError as exc:  # a JSON array or shell quoting that does not parse
        raise InvalidArgument(f"--change: {exc}") from None


def _parse_changes(changes: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword in ("CMD", "ENTRYPOINT"):
            config[keyword.title()] = _command_form(rest)
        elif keyword in ("ENV", "LABEL"):
            target = config.setdefault("Env" if keyword == "ENV" else "Labels", [] if keyword == "ENV" else {})
            for key, value in _key_values(keyword, rest):
                if keyword == "ENV":
                    target[:] = [e for e in target if e.split("=", 1)[0] != key] + [f"{key}={value}"]
                else:
                    target[key] = value
        elif keyword in ("WORKDIR", "USER", "STOPSIGNAL"):
            config[{"WORKDIR": "WorkingDir", "USER": "User", "STOPSIGNAL": "StopSignal"}[keyword]] = rest
        elif keyword in ("EXPOSE", "VOLUME"):
            values = json.loads(rest) if rest.startswith("[") else rest.split()
            key = "ExposedPorts" if keyword == "EXPOSE" else "Volumes"
            for value in values:
                config.setdefault(key, {})[value if keyword == "VOLUME" or "/" in value else f"{value}/tcp"] = {}
        else:
            raise InvalidArgument(f"--change {change!r}: {keyword} cannot be applied to an imported image "
                                  "(CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME and STOPSIGNAL can)")
    return config


def _command_form(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _key_values(keyword: str, rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # the old form: ENV KEY VALUE...
        return [(words[0], rest.split(None, 1)[1] if len(words) > 1 else "")]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--change {keyword} {rest!r}: expected KEY=VALUE pairs")
        pairs.append((key, value))
    return pairs


def import_rootfs(store: ImageStore, source: BinaryIO, reference: Reference | None, changes: list[str],
                  message: str) -> Image:  # fmt: skip
    """A one-layer image from a root filesystem tarball (plain, gzip or zstd)."""
    container_config = parse_changes(changes)
    work = store.scratch()
    try:
        with open(work, "wb") as out:
            plain = layers.DigestReader(layers.decompressed(source))
            try:
                shutil.copyfileobj(plain, out, layers.CHUNK)  # type: ignore[misc]
            except BaseException as exc:
                if layers.is_unreadable(exc):
                    raise ArchiveError(f"the imported file is not a readable tarball: {exc}") from None
                raise
        if not store.has_blob(plain.digest):
            store.adopt_blob(work, plain.digest)
        store.unpack_layer(plain.digest, plain.digest)
    finally:
        if os.path.exists(work):
            os.unlink(work)
    created = now()
    config = {
        "architecture": machine_arch(), "os": "linux", "created": created, "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [plain.digest]},
        "history": [{"created": created, "created_by": "boxnet import", "comment": message or "Imported from -"}],
    }  # fmt: skip
    image = store.add_image(json.dumps(config, separators=(",", ":")).encode())
    if reference is not None:
        store.tag(image.id, reference)
    return image


# ---- save ------------------------------------------------------------------------------------------------
def save(store: ImageStore, wanted: list[tuple[Image, list[str]]], out: BinaryIO) -> None:
    """Writes the images (each with the familiar tags to record) as one tarball: OCI layout (index.json,
    blobs/sha256/) and docker save's manifest.json and repositories, over the same blobs. Layers go out as
    plain tars, as docker save writes them."""
    written: set[str] = set()
    manifest_entries: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        for image, tags in wanted:
            config_bytes = store.read_blob(image.id)
            _add_blob(tar, written, image.id, config_bytes)
            layer_descriptors = []
            for layer, stream in iter_layer_tars(store, image):
                if layer.diff_id not in written:
                    info = tarfile.TarInfo(_blob_name(layer.diff_id))
                    info.size, info.mode, info.mtime = layer.tar_size, 0o644, 0
                    tar.addfile(info, stream)  # type: ignore[arg-type]
                    written.add(layer.diff_id)
                layer_descriptors.append({"mediaType": LAYER_MEDIA_TYPE, "digest": layer.diff_id,
                                          "size": layer.tar_size})  # fmt: skip
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": image.id, "size": len(config_bytes)},
                        "layers": layer_descriptors}  # fmt: skip
            manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
            manifest_digest = _digest(manifest_bytes)
            _add_blob(tar, written, manifest_digest, manifest_bytes)
            descriptor = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes)}
            for tag in tags or [""]:
                annotations = {}
                if tag:
                    reference = parse(tag)
                    annotations = {"io.containerd.image.name": reference.tagged,
                                   "org.opencontainers.image.ref.name": reference.tag}  # fmt: skip
                    repositories.setdefault(reference.familiar_name, {})[reference.tag] = image.id[7:]
                index_entries.append({**descriptor, **({"annotations": annotations} if annotations else {})})
            manifest_entries.append({"Config": _blob_name(image.id), "RepoTags": tags or None,
                                     "Layers": [_blob_name(d) for d in image.diff_ids]})  # fmt: skip
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_bytes(tar, "manifest.json", json.dumps(manifest_entries).encode())
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_blob(tar: tarfile.TarFile, written: set[str], digest: str, data: bytes) -> None:
    if digest not in written:
        _add_bytes(tar, _blob_name(digest), data)
        written.add(digest)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    info.type = tarfile.REGTYPE
    tar.addfile(info, _BytesReader(data))  # type: ignore[arg-type]
