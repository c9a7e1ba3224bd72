"""The engine's image operations, with Docker's rules for what may be removed and what a name means:
list, inspect, tag, remove, prune, load, import, save and pull, over the image store (boxnet.images)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from boxnet.engine.context import EngineContext
from boxnet.errors import Conflict, Forbidden, InvalidArgument
from boxnet.images import archive
from boxnet.images.reference import Reference, parse
from boxnet.images.store import Image
from boxnet.model.container import BUILTIN_IMAGE
from boxnet.model.names import labels_match

# The built-in image has no config blob; it gets a stable id of its own so that clients can name it.
BUILTIN_ID = "sha256:" + hashlib.sha256(b"boxnet built-in image: host").hexdigest()
BUILTIN_NAMES = (BUILTIN_IMAGE, f"{BUILTIN_IMAGE}:latest", BUILTIN_ID)


def is_builtin(name: str) -> bool:
    return name in BUILTIN_NAMES or (len(name) >= 12 and BUILTIN_ID.removeprefix("sha256:").startswith(
        name.removeprefix("sha256:")))  # fmt: skip


@dataclass
class Removal:
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_docker(self) -> list[dict[str, str]]:
        return [{"Untagged": t} for t in self.untagged] + [{"Deleted": d} for d in self.deleted]


class ImageService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store = ctx.images

    # ---- reading -------------------------------------------------------------------------------------
    def find(self, name: str) -> Image:
        return self.store.resolve(name)

    def list(self) -> list[Image]:
        return self.store.images()

    def tags_of(self, image: Image) -> list[str]:
        return [parse(t).familiar for t in self.store.tags_of(image.id)]

    def users(self, image_id: str) -> list[str]:
        """Names of the containers made from the image, in any state."""
        with self.ctx.lock:
            return sorted(c.name for c in self.ctx.registry.containers.values() if c.image_id == image_id)

    # ---- tags and removal ----------------------------------------------------------------------------
    def tag(self, source: str, repo: str, tag: str) -> str:
        if is_builtin(source):
            raise Forbidden(f"the built-in image {BUILTIN_IMAGE!r} cannot be tagged")
        image = self.find(source)
        if not repo:
            raise InvalidArgument("a repository name to tag with is required")
        reference = parse(f"{repo}:{tag}" if tag else repo)
        if reference.familiar_name == BUILTIN_IMAGE:
            raise InvalidArgument(f"{BUILTIN_IMAGE!r} is the built-in image's name")
        self.store.tag(image.id, reference)
        self._event("tag", image.id, reference.familiar)
        return reference.familiar

    def _event(self, action: str, actor: str, name: str) -> None:
        self.ctx.events.publish("image", action, actor, {"name": name})

    def remove(self, name: str, force: bool = False) -> Removal:
        """Docker's rmi: a tag (or digest) of an image with other references is only untagged; the image goes
        with its last reference. An image a container uses is never deleted: its containers run from its
        layers (with force, its last tag goes and the image stays, untagged, as in Docker)."""
        if is_builtin(name):
            raise Forbidden(f"the built-in image {BUILTIN_IMAGE!r} cannot be removed")
        # The engine's lock too: a container created meanwhile from this image is seen, or sees it gone.
        with self.ctx.lock, self.store.lock:
            image = self.find(name)
            tags = self.store.tags_of(image.id)
            by_tag = self._tag_named(name, tags)
            by_digest = self._digest_named(name, image)
            # A tag's repo digests go with the image's last tag, as Docker's do; a digest is one reference more.
            others = len(tags) - 1 if by_tag else len(tags) + len(image.repo_digests) - 1 if by_digest else 0
            removal = Removal()
            users = self.users(image.id)
            if (by_tag or by_digest) and (others > 0 or (users and force)):
                if by_tag:
                    self.store.untag(by_tag)
                    removal.untagged.append(parse(by_tag).familiar)
                else:
                    self.store.forget_digest(image, by_digest)
                    removal.untagged.append(_familiar_digest(by_digest))
                self._event("untag", image.id, removal.untagged[0])
                return removal
            if not by_tag and not by_digest and len(tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) - image is "
                               f"referenced in multiple repositories ({', '.join(self.tags_of(image))})")  # fmt: skip
            if users:
                hint = " (rmi -f NAME:TAG only untags it)" if by_tag else ""
                raise Conflict(f"conflict: unable to delete {name} - image {image.short_id} is used by "
                               f"container{'s' if len(users) > 1 else ''} {', '.join(users)}: remove "
                               f"{'them' if len(users) > 1 else 'it'} first{hint}")  # fmt: skip
            removal.untagged += [parse(t).familiar for t in tags] + [_familiar_digest(d) for d in image.repo_digests]
            removal.deleted = [image.id, *self.store.remove_image(image)]
            for name in removal.untagged:
                self._event("untag", image.id, name)
            self._event("delete", image.id, removal.untagged[0] if removal.untagged else image.id)
            return removal

    def _digest_named(self, name: str, image: Image) -> str:
        try:
            reference = parse(name)
        except InvalidArgument:
            return ""
        wanted = f"{reference.name}@{reference.digest}"
        return wanted if reference.digest and wanted in image.repo_digests else ""

    def _tag_named(self, name: str, tags: list[str]) -> str:
        """The tag name stands for, if it names one (not an id or a digest)."""
        try:
            reference = parse(name)
        except InvalidArgument:
            return ""
        return reference.tagged if not reference.digest and reference.tagged in tags else ""

    def prune(self, every_unused: bool, labels: list[str]) -> tuple[list[dict[str, str]], int]:
        """Removes dangling images (untagged), or with every_unused all images no container uses; the space
        is what the removed layers held (a layer another image keeps is not counted)."""
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for image in self.list():
            tags = self.store.tags_of(image.id)
            if (tags and not every_unused) or self.users(image.id) or not _labels_match(image, labels):
                continue
            sizes = {d: layer.content_size for d in image.diff_ids if (layer := self.store.layer(d))}
            try:
                removal = self.remove(image.id, force=True)
            except Conflict:
                continue  # a container took it meanwhile
            deleted += removal.as_docker()
            reclaimed += sum(sizes.get(d, 0) for d in removal.deleted)
        return deleted, reclaimed

    # ---- in and out ----------------------------------------------------------------------------------
    def load(self, source: BinaryIO) -> list[str]:
        with self.store.filling():
            loaded = archive.load(self.store, source)
        for message in loaded:  # Docker's load event names the image by what it was loaded as
            name = message.partition(": ")[2]
            self._event("load", name, name)
        return loaded

    def import_rootfs(self, source: BinaryIO, repo: str, tag: str, changes: list[str], message: str) -> Image:
        reference = parse(f"{repo}:{tag}" if tag else repo) if repo else None
        if reference is not None and reference.familiar_name == BUILTIN_IMAGE:
            raise InvalidArgument(f"{BUILTIN_IMAGE!r} is the built-in image's name")
        if reference is not None and reference.digest:
            raise InvalidArgument(f"cannot tag an imported image with a digest ({reference.familiar}): give a tag")
        with self.store.filling():
            image = archive.import_rootfs(self.store, source, reference, changes, message)
        self._event("import", image.id, reference.familiar if reference is not None else image.id)
        return image

    def save(self, names: list[str]) -> Callable[[BinaryIO], None]:
        """Checks every name now (so that a bad one is a 404 before any byte goes out); the writer."""
        wanted: list[tuple[Image, list[str]]] = []
        for name in names:
            if is_builtin(name):
                raise Forbidden(f"the built-in image {BUILTIN_IMAGE!r} is the host's files: it cannot be saved")
            image = self.find(name)
            if _names_id(name, image):
                tags = self.tags_of(image)
            else:
                reference = parse(name)
                tags = [] if reference.digest else [reference.familiar]
            for index, (known, known_tags) in enumerate(wanted):
                if known.id == image.id:
                    wanted[index] = (known, sorted(set(known_tags) | set(tags)))
                    break
            else:
                wanted.append((image, tags))
        def write(out: BinaryIO) -> None:
            archive.save(self.store, wanted, out)
            for image, tags in wanted:
                self._event("save", image.id, tags[0] if tags else image.id)

        return write

    def pull(self, reference: Reference, credentials: dict[str, str] | None = None,
             ) -> Iterator[dict[str, Any]]:  # fmt: skip
        from boxnet.images.registry import pull  # only pulls pay for the HTTP client

        yield from pull(self.store, reference, self.ctx.config.insecure_registries, credentials)
        self._event("pull", reference.familiar, reference.familiar)


def _familiar_digest(repo_digest: str) -> str:
    name, _, digest = repo_digest.partition("@")
    return parse(name).with_digest(digest)


def _names_id(name: str, image: Image) -> bool:
    return image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))


def _labels_match(image: Image, labels: list[str]) -> bool:
    return labels_match((image.config.get("config") or {}).get("Labels") or {}, labels)
