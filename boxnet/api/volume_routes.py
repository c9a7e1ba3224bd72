"""The Docker Engine API's volume endpoints: list, create, inspect, remove, prune."""

from __future__ import annotations

from boxnet.api.fields import Fields
from boxnet.api.server import Request, Response, Router
from boxnet.engine.controller import Engine


def add_volume_routes(router: Router, engine: Engine) -> None:
    volumes = engine.volumes

    def list_volumes(request: Request) -> Response:
        found = volumes.list(request.filters())
        return Response(200, {"Volumes": [v.as_docker() for v in found], "Warnings": []})

    def create(request: Request) -> Response:
        body = Fields(request.json())
        body.refuse_unknown({"Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec"})
        body.refuse_set({"ClusterVolumeSpec": "cluster volumes are not supported"})
        volume = volumes.create(body.str("Name"), body.str("Driver"), body.string_map("DriverOpts"),
                                body.string_map("Labels"))  # fmt: skip
        return Response(201, volume.as_docker())

    def inspect(request: Request, name: str) -> Response:
        return Response(200, volumes.get(name).as_docker())

    def remove(request: Request, name: str) -> Response:
        volumes.remove(name, request.flag("force"))
        return Response(204)

    def prune(request: Request) -> Response:
        removed, reclaimed = volumes.prune(request.filters())
        return Response(200, {"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})

    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/(?P<name>[^/]+)", inspect)
    router.add("DELETE", "/volumes/(?P<name>[^/]+)", remove)
