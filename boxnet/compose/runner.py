"""`boxnet compose up|down|ps|logs`: a Project made real through the Engine API, as docker-compose does it
(networks and volumes first, then the services in depends_on order, each joined to its networks with its
service name as an alias), so that either tool can manage what the other made."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from boxnet.cli.client import Client, quote
from boxnet.compose.project import PROJECT_LABEL, SERVICE_LABEL, Project, Service
from boxnet.errors import Conflict, NotFound


def _project_filter(project: str) -> str:
    return json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})


def _exists(client: Client, path: str) -> dict[str, Any] | None:
    try:
        return client.get(path)
    except NotFound:
        return None


# What a project makes besides its containers: (kind, the API's collection) for each.
SHARED_OBJECTS = (("network", "networks"), ("volume", "volumes"))


def up(client: Client, project: Project, out: TextIO = sys.stdout) -> None:
    for kind, collection in SHARED_OBJECTS:
        for name, body in getattr(project, collection).items():
            if _exists(client, f"/{collection}/{quote(name)}") is None:
                if not body:
                    raise NotFound(f"external {kind} {name} does not exist: make it first")
                client.post(f"/{collection}/create", body)
                print(f"Creating {kind} {name!r}", file=out)
    for service in project.ordered():
        _up_service(client, service, out)


def _up_service(client: Client, service: Service, out: TextIO) -> None:
    existing = _exists(client, f"/containers/{quote(service.container_name)}/json")
    project = service.body["Labels"][PROJECT_LABEL]
    if existing is not None and (existing["Config"]["Labels"] or {}).get(PROJECT_LABEL) != project:
        raise Conflict(f"a container named {service.container_name} exists and is not project {project}'s: "
                       "remove or rename it")  # fmt: skip
    if existing is not None and existing["State"]["Running"]:
        print(f"{service.container_name} is up-to-date", file=out)
        return
    if existing is None:
        if _exists(client, f"/images/{quote(service.image, '/:@')}/json") is None:
            from boxnet.cli.images import pull

            print(f"Pulling {service.name} ({service.image})...", file=out)
            if pull(client, service.image, out) != 0:
                raise NotFound(f"cannot pull {service.image} for service {service.name}")
        body = dict(service.body)
        networks = list(service.networks.items())
        if networks:
            first, aliases = networks[0]
            body["NetworkingConfig"] = {"EndpointsConfig": {first: {"Aliases": aliases}}}
        created = client.post("/containers/create", body, name=service.container_name)
        for network, aliases in networks[1:]:
            client.post(f"/networks/{quote(network)}/connect", {"Container": created["Id"],
                                                                "EndpointConfig": {"Aliases": aliases}})  # fmt: skip
        print(f"Creating {service.container_name} ... done", file=out)
    else:
        print(f"Starting {service.container_name} ... done", file=out)
    client.post(f"/containers/{quote(service.container_name)}/start")


def containers(client: Client, project: str) -> list[dict[str, Any]]:
    return client.get("/containers/json", all=1, filters=_project_filter(project))


def down(client: Client, project: Project, volumes: bool = False, out: TextIO = sys.stdout) -> None:
    for container in containers(client, project.name):
        name = container["Names"][0].lstrip("/")
        if container["State"] == "running":
            client.post(f"/containers/{container['Id']}/stop")
            print(f"Stopping {name} ... done", file=out)
        client.delete(f"/containers/{container['Id']}", v=1 if volumes else None)
        print(f"Removing {name} ... done", file=out)
    for kind, collection in SHARED_OBJECTS:
        if kind == "volume" and not volumes:
            continue  # volumes go only with down -v, as docker-compose's
        for name, body in getattr(project, collection).items():
            if body and _exists(client, f"/{collection}/{quote(name)}") is not None:
                client.delete(f"/{collection}/{quote(name)}")
                print(f"Removing {kind} {name}", file=out)


def ps_rows(client: Client, project: str) -> list[list[str]]:
    rows = []
    for container in sorted(containers(client, project), key=lambda c: c["Names"][0]):
        ports = ", ".join(f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
                          for p in container.get("Ports", []) if p.get("PublicPort"))  # fmt: skip
        rows.append([container["Names"][0].lstrip("/"), container["Command"][:30],
                     container["Labels"].get(SERVICE_LABEL, ""), container["Status"], ports])  # fmt: skip
    return rows
