"""An image config's shape, checked once when the image is recorded, so that nothing later (inspect, list,
a container's create) meets a field of the wrong type: refused by name instead."""

from __future__ import annotations

from typing import Any

from boxnet.errors import InvalidArgument
from boxnet.images.reference import check_digest

STRING_LISTS = ("Entrypoint", "Cmd", "Env", "Shell", "OnBuild")
STRING_FIELDS = ("User", "WorkingDir", "StopSignal", "Hostname", "Domainname", "Image")
OBJECTS = ("ExposedPorts", "Volumes", "Healthcheck")


def _fail(what: str, expected: str) -> None:
    raise InvalidArgument(f"the image's config is malformed: {what} must be {expected}")


def check_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        _fail("the config", "a JSON object")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
        _fail("rootfs", "an object with a list of diff_ids")
    for digest in rootfs.get("diff_ids") or []:
        if not isinstance(digest, str):
            _fail("rootfs.diff_ids", "a list of digests")
        check_digest(digest)
    for key in ("created", "architecture", "os", "author", "variant", "docker_version"):
        if config.get(key) is not None and not isinstance(config[key], str):
            _fail(key, "a string")
    history = config.get("history")
    if history is not None and (not isinstance(history, list) or not all(isinstance(h, dict) for h in history)):
        _fail("history", "a list of objects")
    container = config.get("config")
    if container is None:
        return config
    if not isinstance(container, dict):
        _fail("config", "an object")
    for key in STRING_LISTS:
        value = container.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            _fail(f"config.{key}", "a list of strings")
    for key in STRING_FIELDS:
        if container.get(key) is not None and not isinstance(container[key], str):
            _fail(f"config.{key}", "a string")
    for key in OBJECTS:
        if container.get(key) is not None and not isinstance(container[key], dict):
            _fail(f"config.{key}", "an object")
    labels = container.get("Labels")
    if labels is not None and (not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())):
        _fail("config.Labels", "an object of strings")
    return config
