"""Images in the Docker Engine API's JSON: the list's summaries, inspect and history."""

from __future__ import annotations

import os
import platform
from datetime import datetime
from typing import Any

from boxnet.engine.images import BUILTIN_ID, ImageService
from boxnet.images.reference import parse
from boxnet.images.store import Image
from boxnet.model.container import BUILTIN_IMAGE


def _timestamp(text: str) -> int:
    if not text:
        return 0
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _familiar_digests(image: Image) -> list[str]:
    result = []
    for entry in image.repo_digests:
        name, _, digest = entry.partition("@")
        result.append(parse(name).with_digest(digest))
    return result


def image_summary(service: ImageService, image: Image) -> dict[str, Any]:
    config = image.config.get("config") or {}
    return {
        "Id": image.id, "ParentId": "", "RepoTags": service.tags_of(image),
        "RepoDigests": _familiar_digests(image), "Created": _timestamp(image.config.get("created", "")),
        "Size": image.size, "VirtualSize": image.size, "SharedSize": -1, "Labels": config.get("Labels") or {},
        "Containers": len(service.users(image.id)),
    }  # fmt: skip


def builtin_summary(containers: int) -> dict[str, Any]:
    return {"Id": BUILTIN_ID, "ParentId": "", "RepoTags": [f"{BUILTIN_IMAGE}:latest"], "RepoDigests": [],
            "Created": 0, "Size": 0, "VirtualSize": 0, "SharedSize": -1,
            "Labels": {"io.boxnet.builtin": "the host's own files, read-only"}, "Containers": containers}  # fmt: skip


def image_inspect(service: ImageService, image: Image, layers_dir: str) -> dict[str, Any]:
    config = image.config
    return {
        "Id": image.id, "RepoTags": service.tags_of(image), "RepoDigests": _familiar_digests(image),
        "Parent": "", "Comment": (config.get("history") or [{}])[-1].get("comment", ""), "Container": "",
        # docker-compose 1.29 reads ContainerConfig.Volumes (Docker 25 dropped the field, and broke it).
        "ContainerConfig": _container_config(config.get("config") or {}),
        "Created": config.get("created", ""), "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""), "Config": _container_config(config.get("config") or {}),
        "Architecture": config.get("architecture", ""), "Variant": config.get("variant"),
        "Os": config.get("os", "linux"), "Size": image.size, "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(os.path.join(layers_dir, p) for p in service.store.layer_paths(image)),
        }},
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Metadata": {"LastTagTime": image.loaded_at},
    }  # fmt: skip


def builtin_inspect() -> dict[str, Any]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "Id": BUILTIN_ID, "RepoTags": [f"{BUILTIN_IMAGE}:latest"], "RepoDigests": [], "Parent": "",
        "Comment": "boxnet's built-in image: the host's own files, read-only", "Created": "0001-01-01T00:00:00Z",
        "Container": "", "ContainerConfig": _container_config({}),
        "DockerVersion": "", "Author": "", "Config": _container_config({"Cmd": ["/bin/sh"]}),
        "Architecture": arch, "Os": "linux", "Size": 0, "VirtualSize": 0,
        "GraphDriver": {"Name": "boxnet-host", "Data": {}}, "RootFS": {"Type": "layers", "Layers": []},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }  # fmt: skip


def _container_config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "Hostname": "", "Domainname": "", "User": config.get("User", ""), "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "ExposedPorts": config.get("ExposedPorts"), "Tty": False,
        "OpenStdin": False, "StdinOnce": False, "Env": config.get("Env"), "Cmd": config.get("Cmd"),
        "Image": "", "Volumes": config.get("Volumes"), "WorkingDir": config.get("WorkingDir", ""),
        "Entrypoint": config.get("Entrypoint"), "OnBuild": None, "Labels": config.get("Labels"),
        "StopSignal": config.get("StopSignal"),
    }  # fmt: skip


def history(image: Image) -> list[dict[str, Any]]:
    """Newest first, as docker history prints it; the newest entry carries the image's id."""
    result = [{"Id": "<missing>", "Created": _timestamp(entry.get("created", "")),
               "CreatedBy": entry.get("created_by", ""), "Tags": None, "Size": 0, "Comment": entry.get("comment", "")}
              for entry in image.config.get("history") or []]  # fmt: skip
    if result:
        result[-1]["Id"] = image.id
    return list(reversed(result))
