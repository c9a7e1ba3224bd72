"""The image store under the daemon's root: content-addressed blobs, unpacked layers, images and their tags.

    images/blobs/sha256/HEX       configs, manifests and layer blobs as they came (compressed or not)
    images/layers/HEX/diff/       a layer unpacked in overlayfs's form; HEX is its diff id (the digest of
                                  its plain tar), so a layer shared by images is unpacked once
    images/layers/HEX/layer.json  its blob's digest and sizes; written before the directory moves into place
    images/images/HEX.json        an image: its config's digest is its id; its layers, its repo digests
    images/tags.json              docker.io/library/busybox:latest -> sha256:ID
    images/tmp/                   work in progress: emptied when the store opens

Crash safety comes from the order of writes: a layer moves into place whole (a rename), an image's record
is written after its layers and a tag after its image. A store opened after a crash removes its tmp/ and
whatever no image refers to, and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from boxnet.errors import Conflict, InvalidArgument, NotFound
from boxnet.images import layers
from boxnet.images.config import check_config
from boxnet.images.reference import Reference, check_digest, looks_like_id, parse

log = logging.getLogger(__name__)

# Docker's form for an image config's and a layer's media types (what save writes).
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
# Overlayfs takes one page of mount options; layers are named relative to the layers directory there.
MAX_LAYERS = 50


@dataclass
class Layer:
    diff_id: str
    blob: str  # the digest of the blob it came as
    blob_size: int
    tar_size: int  # bytes of its plain tar (what save writes)
    content_size: int  # bytes of its files


@dataclass
class Image:
    id: str  # sha256:HEX of its config
    diff_ids: list[str]
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    loaded_at: str = ""
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # read from its blob, not stored twice

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hex(digest: str) -> str:
    return check_digest(digest).removeprefix("sha256:")


def _write_json(path: str, data: Any, tmp_dir: str) -> None:
    """Written whole or not at all: in tmp_dir (emptied when the store opens) first, then renamed."""
    tmp = os.path.join(tmp_dir, secrets.token_hex(8) + ".json")
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "images")
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.images_dir = os.path.join(self.root, "images")
        self.tmp = os.path.join(self.root, "tmp")
        self.tags_file = os.path.join(self.root, "tags.json")
        self.lock = threading.RLock()
        # Layers being unpacked now: a second pull of the same layer waits for the first.
        self._unpacking: dict[str, threading.Event] = {}
        # Pulls, loads and imports under way: what they made is not referenced yet, so no garbage is collected.
        self._filling = 0
        for directory in (self.blobs, self.layers_dir, self.images_dir, os.path.join(self.root, "empty")):
            os.makedirs(directory, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, exist_ok=True)
        self.collect_garbage()

    # ---- blobs ---------------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, _hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def scratch(self) -> str:
        """A fresh path under tmp/ for work in progress."""
        return os.path.join(self.tmp, secrets.token_hex(8))

    def put_blob_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            tmp = self.scratch()
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.blob_path(digest))
        return digest

    def adopt_blob(self, tmp_path: str, digest: str) -> None:
        """Moves a verified file from tmp/ into the blobs."""
        os.replace(tmp_path, self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as handle:
            return handle.read()

    # ---- layers --------------------------------------------------------------------------------------
    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers_dir, _hex(diff_id))

    def layer(self, diff_id: str) -> Layer | None:
        try:
            with open(os.path.join(self.layer_dir(diff_id), "layer.json")) as handle:
                return Layer(**json.load(handle))
        except FileNotFoundError:
            return None

    def unpack_layer(self, blob_digest: str, diff_id: str) -> Layer:
        """Unpacks the stored blob as the layer diff_id, once; LayerError if its plain tar's digest is not
        diff_id or an entry breaks the rules of images/layers.py (nothing is left of it then)."""
        while True:
            with self.lock:
                existing = self.layer(diff_id)
                if existing:
                    return existing
                busy = self._unpacking.get(diff_id)
                if busy is None:
                    done = self._unpacking[diff_id] = threading.Event()
                    break
            busy.wait()
        try:
            return self._unpack(blob_digest, diff_id)
        finally:
            with self.lock:
                del self._unpacking[diff_id]
            done.set()

    def _unpack(self, blob_digest: str, diff_id: str) -> Layer:
        work = self.scratch()
        diff = os.path.join(work, "diff")
        os.makedirs(diff)
        os.chmod(work, 0o700)
        try:
            with open(self.blob_path(blob_digest), "rb") as handle:
                blob = layers.DigestReader(handle)
                plain = layers.DigestReader(layers.decompressed(blob))  # type: ignore[arg-type]
                content = layers.apply(plain, diff)  # type: ignore[arg-type]
                plain.drain()
                blob.drain()
            if blob.digest != blob_digest:
                raise layers.LayerError(f"layer blob {blob_digest} changed on disk: its content is {blob.digest}")
            if plain.digest != diff_id:
                raise layers.LayerError(f"layer {blob_digest} unpacks to {plain.digest}, but the image's config "
                                        f"says {diff_id}: refused")  # fmt: skip
            layer = Layer(diff_id, blob_digest, blob.size, plain.size, content)
            _write_json(os.path.join(work, "layer.json"), asdict(layer), self.tmp)
            os.chmod(diff, 0o755)
            try:
                os.rename(work, self.layer_dir(diff_id))
            except OSError:  # unpacked meanwhile by someone else: theirs stays
                shutil.rmtree(work, ignore_errors=True)
            return layer
        except BaseException as exc:
            shutil.rmtree(work, ignore_errors=True)
            if layers.is_unreadable(exc):
                raise layers.LayerError(f"layer {blob_digest} is not a readable tar: {exc}") from None
            raise

    def layer_paths(self, image: Image) -> list[str]:
        """The image's layers' directories relative to layers/, topmost first (overlayfs's lowerdir order).
        A layer that repeats (the empty layer often does) is kept where it is topmost: overlayfs refuses one
        directory twice, and the lower copy is hidden by the upper anyway. An image of no layers gets an
        empty directory."""
        seen: set[str] = set()
        paths = []
        for diff_id in reversed(image.diff_ids):
            if diff_id not in seen:
                seen.add(diff_id)
                paths.append(os.path.join(_hex(diff_id), "diff"))
        return paths or [os.path.join("..", "empty")]

    # ---- images --------------------------------------------------------------------------------------
    def add_image(self, config_bytes: bytes, repo_digest: str = "") -> Image:
        """Records an image whose layers are all unpacked; its id is its config's digest."""
        try:
            config = check_config(json.loads(config_bytes))
        except ValueError:
            raise InvalidArgument("the image's config is not JSON") from None
        diff_ids = list(config["rootfs"].get("diff_ids") or [])
        if len(diff_ids) > MAX_LAYERS:
            raise InvalidArgument(f"the image has {len(diff_ids)} layers; boxnet runs images of up to {MAX_LAYERS}")
        config_digest = self.put_blob_bytes(config_bytes)
        with self.lock:
            sizes = []
            for diff_id in diff_ids:
                layer = self.layer(diff_id)
                if layer is None:
                    raise NotFound(f"layer {diff_id} of image {config_digest} is not unpacked")
                sizes.append(layer.content_size)
            image = self.image_by_id(config_digest)
            if image is None:
                image = Image(config_digest, diff_ids, size=sum(sizes), loaded_at=now())
            if repo_digest and repo_digest not in image.repo_digests:
                image.repo_digests.append(repo_digest)
            self._save_image(image)
            image.config = config
            return image

    def _save_image(self, image: Image) -> None:
        record = asdict(image)
        record.pop("config")
        _write_json(os.path.join(self.images_dir, _hex(image.id) + ".json"), record, self.tmp)

    def image_by_id(self, image_id: str) -> Image | None:
        """The image, or None if it is not here (or its record or config cannot be read: logged)."""
        try:
            with open(os.path.join(self.images_dir, _hex(image_id) + ".json")) as handle:
                image = Image(**json.load(handle))
            image.config = json.loads(self.read_blob(image.id))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("image %s is unreadable, skipped: %s", image_id, exc)
            return None
        return image

    def images(self) -> list[Image]:
        found = []
        for name in sorted(os.listdir(self.images_dir)):
            if name.endswith(".json"):
                image = self.image_by_id("sha256:" + name[:-5])
                if image:
                    found.append(image)
        return found

    # ---- tags ----------------------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        try:
            with open(self.tags_file) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {}

    def tags_of(self, image_id: str) -> list[str]:
        return sorted(ref for ref, target in self.tags().items() if target == image_id)

    def tag(self, image_id: str, reference: Reference) -> str | None:
        """Points reference's tag at image_id; the image it pointed at before, if another."""
        if reference.digest:
            raise InvalidArgument(f"cannot tag with a digest reference ({reference.familiar}): give a tag")
        with self.lock:
            tags = self.tags()
            previous = tags.get(reference.tagged)
            tags[reference.tagged] = image_id
            _write_json(self.tags_file, tags, self.tmp)
        return previous if previous != image_id else None

    def untag(self, tagged: str) -> None:
        with self.lock:
            tags = self.tags()
            if tags.pop(tagged, None) is not None:
                _write_json(self.tags_file, tags, self.tmp)

    def forget_digest(self, image: Image, repo_digest: str) -> None:
        """Drops one of the image's repo digests (rmi NAME@DIGEST of an image with other references)."""
        with self.lock:
            if repo_digest in image.repo_digests:
                image.repo_digests.remove(repo_digest)
                self._save_image(image)

    def resolve(self, text: str) -> Image:
        """The image a name, name:tag, name@digest, id or id prefix stands for; NotFound otherwise."""
        with self.lock:
            image = self._resolve(text)
        if image is None:
            raise NotFound(f"No such image: {text}")
        return image

    def _resolve(self, text: str) -> Image | None:
        """Docker's order: a name (with its tag or digest) first, then an id or id prefix."""
        try:
            reference = parse(text)
        except InvalidArgument:
            if not looks_like_id(text):
                raise  # neither a name nor an id: the name's fault, said by parse
            reference = None
        if reference is not None and reference.digest:
            wanted = f"{reference.name}@{reference.digest}"
            found = next((i for i in self.images() if wanted in i.repo_digests), None)
            if found is not None:
                return found
        elif reference is not None:
            image_id = self.tags().get(reference.tagged)
            if image_id:
                return self.image_by_id(image_id)
        if looks_like_id(text):
            hexpart = text.removeprefix("sha256:")
            matches = [n[:-5] for n in os.listdir(self.images_dir) if n.startswith(hexpart) and n.endswith(".json")]
            if len(matches) > 1 and len(hexpart) < 64:
                raise Conflict(f"image id prefix {text!r} is ambiguous: {len(matches)} images start with it")
            if matches:
                return self.image_by_id("sha256:" + matches[0])
        return None

    # ---- removal -------------------------------------------------------------------------------------
    def remove_image(self, image: Image) -> list[str]:
        """Forgets the image and its tags, then whatever of its layers and blobs no image uses; the
        digests deleted."""
        with self.lock:
            tags = {r: t for r, t in self.tags().items() if t != image.id}
            _write_json(self.tags_file, tags, self.tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.images_dir, _hex(image.id) + ".json"))
            return self.collect_garbage()

    @contextlib.contextmanager
    def filling(self) -> Iterator[None]:
        """Around a pull, load or import: garbage waits until it has recorded its image, and the last one to
        end collects it, so that one that failed half-way leaves none of its layers or blobs."""
        with self.lock:
            self._filling += 1
        try:
            yield
        finally:
            with self.lock:
                self._filling -= 1
                if not self._filling:
                    self.collect_garbage()

    def collect_garbage(self) -> list[str]:
        """Removes layers and blobs no image refers to (after a crash, or an image's removal)."""
        with self.lock:
            if self._filling:
                return []  # collected by the next removal, or when the store opens next
            used_layers: set[str] = set()
            used_blobs: set[str] = set()
            for image in self.images():
                used_blobs.add(_hex(image.id))
                for diff_id in image.diff_ids:
                    used_layers.add(_hex(diff_id))
                    layer = self.layer(diff_id)
                    if layer:
                        used_blobs.add(_hex(layer.blob))
                used_blobs.update(d.rpartition("@sha256:")[2] for d in image.repo_digests)
            deleted = []
            for name in os.listdir(self.layers_dir):
                if name not in used_layers:
                    # Moved aside first: a layer directory is either whole in layers/ or gone.
                    aside = self.scratch()
                    os.rename(os.path.join(self.layers_dir, name), aside)
                    shutil.rmtree(aside, ignore_errors=True)
                    deleted.append("sha256:" + name)
            for name in os.listdir(self.blobs):
                if name not in used_blobs:
                    os.unlink(os.path.join(self.blobs, name))
            return deleted

    def disk_usage(self) -> int:
        return sum(self.layer(d).content_size for d in {d for i in self.images() for d in i.diff_ids}
                   if self.layer(d))  # fmt: skip


def iter_layer_tars(store: ImageStore, image: Image) -> Iterator[tuple[Layer, BinaryIO]]:
    """Each layer with its plain tar as a stream, bottom first."""
    for diff_id in image.diff_ids:
        layer = store.layer(diff_id)
        if layer is None:
            raise NotFound(f"layer {diff_id} of image {image.id} is missing")
        with open(store.blob_path(layer.blob), "rb") as handle:
            yield layer, layers.decompressed(handle)
