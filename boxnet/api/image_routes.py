"""The Docker Engine API's image endpoints: list, inspect, history, pull and import (/images/create), load,
save (/images/get), tag, remove and prune; what boxnet does not do (build, push, search, commit) is refused
by name."""

from __future__ import annotations

import fnmatch
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

from boxnet.api import image_json
from boxnet.api.server import Request, Response, Router, Stream
from boxnet.engine.controller import Engine
from boxnet.engine.images import BUILTIN_ID, is_builtin
from boxnet.errors import BoxnetError, InvalidArgument, Unsupported
from boxnet.images.archive import machine_arch
from boxnet.images.reference import parse
from boxnet.images.registry_access import Credentials, RegistryClient
from boxnet.model.container import BUILTIN_IMAGE
from boxnet.model.names import labels_match

log = logging.getLogger(__name__)
JSON_STREAM = "application/json"
LIST_FILTERS = ("dangling", "reference", "label")


def _json_lines(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\r\n" for m in messages)


def _error_message(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


def progress_stream(messages: Iterator[dict[str, Any]]) -> Stream:
    """A JSON-message stream (docker pull's); the first message is asked for before the answer starts, so
    that what fails at once (no such image, no registry) is an HTTP error, not a line in a 200."""
    first = next(messages, None)

    def run(sock: socket.socket, rfile: Any) -> None:
        try:
            if first is not None:
                sock.sendall(_json_lines([first]))
            for message in messages:
                sock.sendall(_json_lines([message]))
        except BoxnetError as exc:
            sock.sendall(_json_lines([_error_message(exc.message)]))
        except (BrokenPipeError, ConnectionResetError):
            messages.close()  # type: ignore[attr-defined]
            raise
        except Exception as exc:  # whatever it was, the client is told: a stream that just ends reads as success
            log.exception("a streamed image operation failed")
            sock.sendall(_json_lines([_error_message(f"internal error: {exc}")]))

    return Stream(run, upgrade=False, content_type=JSON_STREAM)


class _SocketWriter:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)


def _check_platform(request: Request) -> None:
    wanted = request.arg("platform")
    if wanted and wanted not in ("linux", f"linux/{machine_arch()}"):
        raise Unsupported(f"platform {wanted!r} is not this machine's (linux/{machine_arch()})")


def add_image_routes(router: Router, engine: Engine) -> None:
    images = engine.images

    def builtin_users() -> int:
        return sum(1 for c in engine.view.containers.values() if not c.image_id and not c.rootfs)

    def list_images(request: Request) -> Response:
        filters = request.filters()
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidArgument(f"invalid filter {key!r}: boxnet filters images by "
                                      f"{', '.join(LIST_FILTERS)}")  # fmt: skip
        summaries = [image_json.image_summary(images, i) for i in images.list()]
        summaries.append(image_json.builtin_summary(builtin_users()))
        # `all` changes nothing: there are no intermediate build images here.
        return Response(200, [s for s in summaries if _matches(s, filters)])

    def inspect(request: Request, name: str) -> Response:
        if is_builtin(name):
            return Response(200, image_json.builtin_inspect())
        image = images.find(name)
        return Response(200, image_json.image_inspect(images, image, images.store.layers_dir))

    def history(request: Request, name: str) -> Response:
        if is_builtin(name):
            return Response(200, [{"Id": BUILTIN_ID, "Created": 0, "CreatedBy": "boxnet", "Tags": None, "Size": 0,
                                   "Comment": "the host's own files"}])  # fmt: skip
        return Response(200, image_json.history(images.find(name)))

    def create(request: Request) -> Response | Stream:
        _check_platform(request)
        if request.arg("fromSrc"):
            return _import(request)
        source = request.arg("fromImage")
        if not source:
            raise InvalidArgument("fromImage or fromSrc is required")
        tag = request.arg("tag")
        text = source if not tag else f"{source}@{tag}" if tag.startswith("sha256:") else f"{source}:{tag}"
        reference = parse(text, default_tag=False)
        if not reference.tag and not reference.digest:
            raise Unsupported(f"pulling every tag of {reference.familiar_name} (docker pull -a) is not supported: "
                              "name a tag")  # fmt: skip
        if reference.familiar_name == BUILTIN_IMAGE:
            raise InvalidArgument(f"{BUILTIN_IMAGE!r} is boxnet's built-in image: nothing to pull")
        credentials = Credentials.from_header(request.headers.get("X-Registry-Auth", ""))
        return progress_stream(images.pull(reference, credentials))  # type: ignore[arg-type]

    def _import(request: Request) -> Response:
        if request.arg("fromSrc") != "-":
            raise Unsupported("importing from a URL is not supported: send the tarball as the request body "
                              "(docker import FILE)")  # fmt: skip
        changes = request.query.get("changes", [])
        image = images.import_rootfs(request.body_stream(), request.arg("repo"), request.arg("tag"), changes,
                                     request.arg("message"))  # fmt: skip
        return Response(200, raw=_json_lines([{"status": image.id}]), content_type=JSON_STREAM)

    def load(request: Request) -> Response:
        messages = images.load(request.body_stream())
        return Response(200, raw=_json_lines([{"stream": m + "\n"} for m in messages]), content_type=JSON_STREAM)

    def save_many(request: Request) -> Stream:
        names = request.query.get("names", [])
        if not names:
            raise InvalidArgument("names: at least one image to save")
        return _save(names)

    def save_one(request: Request, name: str) -> Stream:
        return _save([name])

    def _save(names: list[str]) -> Stream:
        writer = images.save(names)
        return Stream(lambda sock, rfile: writer(_SocketWriter(sock)),  # type: ignore[arg-type]
                      upgrade=False, content_type="application/x-tar")  # fmt: skip

    def tag(request: Request, name: str) -> Response:
        images.tag(name, request.arg("repo"), request.arg("tag"))
        return Response(201)

    def remove(request: Request, name: str) -> Response:
        return Response(200, images.remove(name, force=request.flag("force")).as_docker())

    def prune(request: Request) -> Response:
        filters = request.filters()
        for key in filters:
            if key not in ("dangling", "label"):
                raise InvalidArgument(f"invalid prune filter {key!r}: boxnet prunes by dangling and label")
        dangling = filters.get("dangling", ["true"])[-1].lower()
        if dangling not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid dangling filter {dangling!r}: true or false")
        deleted, reclaimed = images.prune(dangling in ("false", "0"), filters.get("label", []))
        return Response(200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    def auth(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object with username, password and serveraddress")
        server = str(body.get("serveraddress") or "")
        domain = server.split("://", 1)[-1].split("/", 1)[0] or "docker.io"
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = "docker.io"
        credentials = Credentials(str(body.get("username") or ""), str(body.get("password") or ""),
                                  str(body.get("identitytoken") or ""))  # fmt: skip
        RegistryClient(domain, engine.config.insecure_registries, credentials).login()
        return Response(200, {"Status": "Login Succeeded", "IdentityToken": ""})

    def refuse(what: str):
        def handler(request: Request, **params: str) -> Response:
            raise Unsupported(what)
        return handler

    router.add("POST", "/auth", auth)
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save_many)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/search", refuse("searching registries is not supported"))
    router.add("POST", "/build", refuse("boxnet does not build images: build with a builder (buildah, kaniko) "
                                        "and `docker load` or pull the result"))  # fmt: skip
    router.add("POST", "/build/prune", refuse("boxnet does not build images, so it has no build cache"))
    router.add("POST", "/commit", refuse("committing a container to an image is not supported yet"))
    router.add("POST", "/images/(?P<name>.+)/push", refuse("pushing is not supported yet: `docker save` the "
                                                           "image and push the tarball with skopeo"))  # fmt: skip
    router.add("GET", "/images/(?P<name>.+)/json", inspect)
    router.add("GET", "/images/(?P<name>.+)/history", history)
    router.add("GET", "/images/(?P<name>.+)/get", save_one)
    router.add("POST", "/images/(?P<name>.+)/tag", tag)
    router.add("DELETE", "/images/(?P<name>.+)", remove)


def _matches(summary: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    tags = summary["RepoTags"]
    for wanted in filters.get("dangling", []):
        if wanted.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid dangling filter {wanted!r}: true or false")
        if (wanted.lower() in ("true", "1")) == bool(tags):
            return False
    patterns = filters.get("reference", [])
    if patterns and not any(_reference_matches(tag, p) for tag in tags for p in patterns):
        return False
    return labels_match(summary.get("Labels") or {}, filters.get("label", []))


def _reference_matches(tag: str, pattern: str) -> bool:
    name = tag.rsplit(":", 1)[0]
    return fnmatch.fnmatchcase(tag, pattern) or fnmatch.fnmatchcase(name, pattern)
