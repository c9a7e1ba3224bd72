"""`pull`: an image from a registry into the image store, with what docker pull prints on the way.

The manifest (through a manifest list / image index, this machine's platform chosen), the config, then
the layers this store lacks, downloaded in parallel. Every blob's digest is checked as it arrives, and every
layer's plain tar against the config's diff id as it is unpacked: a registry that sends something else
gets the pull refused, and the store keeps nothing of it.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boxnet.errors import BoxnetError, InvalidArgument
from boxnet.images import layers
from boxnet.images.archive import choose_platform
from boxnet.images.reference import Reference, check_digest
from boxnet.images.registry_access import Credentials, RegistryClient, RegistryError, describe
from boxnet.images.store import ImageStore

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")  # fmt: skip
FOREIGN_LAYERS = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")  # fmt: skip
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 16 << 20
PARALLEL_DOWNLOADS = 3
PROGRESS_EVERY = 1 << 20


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _manifest(client: RegistryClient, reference: Reference, scope: str) -> tuple[dict[str, Any], str]:
    """The image manifest for this platform, and the digest the pull is known by (the top document's)."""
    accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
    target = reference.digest or reference.tag
    reply = client.get(f"/v2/{reference.path}/manifests/{target}", accept, scope)
    media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
    data = reply.read_all(MAX_MANIFEST)
    top_digest = _digest(data)
    if reference.digest and top_digest != reference.digest:
        raise RegistryError(f"the registry sent a manifest with digest {top_digest} for {reference.digest}")
    document = _json(data, "manifest")
    media_type = document.get("mediaType") or media_type
    if media_type in INDEX_TYPES or "manifests" in document:
        entry = choose_platform(document.get("manifests") or [], reference.familiar)
        wanted = check_digest(entry["digest"])
        reply = client.get(f"/v2/{reference.path}/manifests/{wanted}", accept, scope)
        data = reply.read_all(MAX_MANIFEST)
        if _digest(data) != wanted:
            raise RegistryError(f"the registry sent a manifest with digest {_digest(data)} for {wanted}")
        document = _json(data, "manifest")
        media_type = document.get("mediaType") or media_type
    if document.get("schemaVersion") == 1 or "fsLayers" in document:
        raise InvalidArgument(f"{reference.familiar} has a schema 1 manifest, which Docker itself dropped: "
                              "push it again with a current client")  # fmt: skip
    if "config" not in document or "layers" not in document:
        raise RegistryError(f"the manifest of {reference.familiar} ({media_type or 'no media type'}) has no "
                            "config and layers")  # fmt: skip
    return document, top_digest


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise RegistryError(f"the registry sent a {what} that is not JSON") from None
    if not isinstance(value, dict):
        raise RegistryError(f"the registry sent a {what} that is not a JSON object")
    return value


def _download(client: RegistryClient, store: ImageStore, path: str, descriptor: dict[str, Any], scope: str,
              events: queue.Queue[dict[str, Any]], cancelled: threading.Event) -> str:  # fmt: skip
    digest, size = check_digest(descriptor["digest"]), descriptor.get("size")
    if not isinstance(size, int) or size <= 0:
        raise RegistryError(f"the manifest gives blob {digest} no size: refused (what would bound its download?)")
    if store.has_blob(digest):
        return digest
    short = _short(digest)
    reply = client.get(f"/v2/{path}/blobs/{digest}", "", scope)
    target = store.scratch()
    try:
        with open(target, "wb") as out:
            reader = layers.DigestReader(reply.response)  # type: ignore[arg-type]
            reported = 0
            while chunk := reader.read(layers.CHUNK):
                if reader.size > size:
                    raise RegistryError(f"blob {digest} goes on past the {size} bytes announced: refused")
                if cancelled.is_set():
                    raise RegistryError("the pull was cancelled")
                out.write(chunk)
                if reader.size - reported >= PROGRESS_EVERY:
                    reported = reader.size
                    events.put({"status": "Downloading", "id": short,
                                "progressDetail": {"current": reader.size, "total": size}})  # fmt: skip
        reply.close()
        if reader.digest != digest:
            raise RegistryError(f"blob {digest} arrived with the content of {reader.digest}: refused")
        if reader.size != size:
            raise RegistryError(f"blob {digest} arrived with {reader.size} bytes, not the {size} announced")
        store.adopt_blob(target, digest)
    finally:
        reply.close()
        if os.path.exists(target):
            os.unlink(target)
    return digest


def pull(store: ImageStore, reference: Reference, insecure: list[str],
         credentials: dict[str, str] | Credentials | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Pulls reference; yields docker pull's progress messages. Raises BoxnetError before the first one
    when the manifest cannot be had, afterwards as well (the API turns it into an error message)."""
    if isinstance(credentials, dict):
        credentials = Credentials(**credentials)
    client = RegistryClient(reference.domain, insecure, credentials)
    scope = f"repository:{reference.path}:pull"
    with store.filling():
        try:
            yield from _pull(store, client, reference, scope)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            # A manifest or config whose shape is not the distribution spec's.
            raise RegistryError(f"the registry sent a malformed document: {type(exc).__name__}: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"pulling {reference.familiar} failed: {describe(exc)}") from None


def _pull(store: ImageStore, client: RegistryClient, reference: Reference, scope: str) -> Iterator[dict[str, Any]]:
    manifest, top_digest = _manifest(client, reference, scope)
    yield {"status": f"Pulling from {reference.path}", "id": reference.tag or reference.digest}
    config_descriptor = manifest["config"]
    config_digest = check_digest(config_descriptor["digest"])
    config_bytes = client.get(f"/v2/{reference.path}/blobs/{config_digest}", "", scope).read_all(MAX_CONFIG)
    if _digest(config_bytes) != config_digest:
        raise RegistryError(f"the config blob {config_digest} arrived with another content: refused")
    diff_ids = [check_digest(d) for d in (_json(config_bytes, "config").get("rootfs") or {}).get("diff_ids") or []]
    descriptors = list(manifest["layers"])
    if len(diff_ids) != len(descriptors):
        raise RegistryError(f"the manifest lists {len(descriptors)} layers, the config {len(diff_ids)}")
    for descriptor in descriptors:
        if descriptor.get("mediaType") in FOREIGN_LAYERS:
            raise InvalidArgument(f"{reference.familiar} has a foreign layer ({descriptor.get('urls')}), which "
                                  "boxnet does not fetch")  # fmt: skip
    missing = [(d, diff) for d, diff in zip(descriptors, diff_ids, strict=True) if not store.layer(diff)]
    for descriptor, diff_id in zip(descriptors, diff_ids, strict=True):
        short = _short(descriptor["digest"])
        yield {"status": "Already exists" if store.layer(diff_id) else "Pulling fs layer", "id": short,
               "progressDetail": {}}  # fmt: skip
    existing = store.image_by_id(config_digest)
    yield from _fetch_layers(client, store, reference.path, missing, scope)
    repo_digest = f"{reference.name}@{top_digest}"
    image = store.add_image(config_bytes, repo_digest)
    if reference.tag and not reference.digest:  # name:tag@digest pulls by digest and tags nothing, as Docker
        store.tag(image.id, reference)
    yield {"status": f"Digest: {top_digest}"}
    status = "Image is up to date for" if existing is not None and not missing else "Downloaded newer image for"
    yield {"status": f"Status: {status} {reference.familiar}"}


def _fetch_layers(client: RegistryClient, store: ImageStore, path: str, missing: list[tuple[dict[str, Any], str]],
                  scope: str) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Downloads and unpacks the missing layers, PARALLEL_DOWNLOADS at a time; their progress as it comes."""
    if not missing:
        return
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    failure: list[BaseException] = []
    cancelled = threading.Event()

    def fetch(descriptor: dict[str, Any], diff_id: str) -> None:
        short = _short(descriptor["digest"])
        try:
            if cancelled.is_set():
                return
            blob = _download(client, store, path, descriptor, scope, events, cancelled)
            events.put({"status": "Download complete", "id": short, "progressDetail": {}})
            events.put({"status": "Extracting", "id": short, "progressDetail": {}})
            store.unpack_layer(blob, diff_id)
            events.put({"status": "Pull complete", "id": short, "progressDetail": {}})
        except BaseException as exc:
            failure.append(exc)
            cancelled.set()
        finally:
            events.put({"_done": short})

    with ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="pull") as pool:
        for descriptor, diff_id in missing:
            pool.submit(fetch, descriptor, diff_id)
        remaining = len(missing)
        try:
            while remaining:
                event = events.get()
                if "_done" in event:
                    remaining -= 1
                    continue
                yield event
        finally:
            if remaining:  # the client hung up (GeneratorExit): the downloads stop at their next chunk
                cancelled.set()
    if failure:
        exc = failure[0]
        if isinstance(exc, BoxnetError):
            raise exc
        raise RegistryError(f"pulling a layer failed: {describe(exc)}") from exc
