"""pause, unpause, rename, container prune, and system df."""

from __future__ import annotations

from collections import Counter
from typing import Any

from boxnet.api import docker_json, image_json
from boxnet.api.server import Request, Response, Router
from boxnet.engine.container_admin import writable_size
from boxnet.engine.controller import Engine
from boxnet.errors import InvalidArgument

DF_TYPES = ("container", "image", "volume", "build-cache")


def disk_usage(engine: Engine, types: list[str]) -> dict[str, Any]:
    """Docker's /system/df: images with their shared part, containers with their writable layer, volumes
    with their size and users; no build cache (boxnet builds nothing)."""
    for wanted in types:
        if wanted not in DF_TYPES:
            raise InvalidArgument(f"invalid type {wanted!r}: one of {', '.join(DF_TYPES)}")
    types = types or list(DF_TYPES)
    result: dict[str, Any] = {}
    images = engine.images
    if "image" in types:
        listed = images.list()
        uses = Counter(d for image in listed for d in set(image.diff_ids))
        summaries = []
        for image in listed:
            summary = image_json.image_summary(images, image)
            summary["SharedSize"] = sum(layer.content_size for d in set(image.diff_ids)
                                        if uses[d] > 1 and (layer := images.store.layer(d)))  # fmt: skip
            summaries.append(summary)
        result["Images"] = summaries
        result["LayersSize"] = images.store.disk_usage()
    if "container" in types:
        containers = []
        for container in engine.view.containers.values():
            summary = docker_json.container_summary(container, engine.view, engine.volumes.store.root)
            image = images.store.image_by_id(container.image_id) if container.image_id else None
            summary["SizeRw"] = writable_size(engine.config.container_dir(container.id))
            summary["SizeRootFs"] = summary["SizeRw"] + (image.size if image is not None else 0)
            containers.append(summary)
        result["Containers"] = containers
    if "volume" in types:
        volumes = []
        for volume in engine.volumes.store.list():
            entry = volume.as_docker()
            users = engine.volumes.users(volume.name)
            entry["UsageData"] = {"Size": engine.volumes.store.size(volume), "RefCount": len(users)}
            volumes.append(entry)
        result["Volumes"] = volumes
    if "build-cache" in types:
        result["BuildCache"] = []
    return result


def add_container_admin_routes(router: Router, engine: Engine) -> None:
    admin = engine.container_admin

    def pause(request: Request, ref: str) -> Response:
        admin.pause(ref)
        return Response(204)

    def unpause(request: Request, ref: str) -> Response:
        admin.unpause(ref)
        return Response(204)

    def rename(request: Request, ref: str) -> Response:
        admin.rename(ref, request.arg("name"))
        return Response(204)

    def prune(request: Request) -> Response:
        removed, reclaimed = admin.prune(request.filters())
        return Response(200, {"ContainersDeleted": removed or None, "SpaceReclaimed": reclaimed})

    def system_df(request: Request) -> Response:
        return Response(200, disk_usage(engine, request.query.get("type", [])))

    router.add("POST", "/containers/(?P<ref>[^/]+)/pause", pause)
    router.add("POST", "/containers/(?P<ref>[^/]+)/unpause", unpause)
    router.add("POST", "/containers/(?P<ref>[^/]+)/rename", rename)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/system/df", system_df)
