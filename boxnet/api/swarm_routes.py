"""The swarm's part of the Docker Engine API: /swarm, /swarm/init|join|leave, /nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from boxnet.api import swarm_json
from boxnet.api.fields import Fields
from boxnet.api.server import Request, Response, Router
from boxnet.errors import InvalidArgument

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine


def _port(listen: str) -> int:
    """The port of a ListenAddr ("0.0.0.0:2377", ":2377", "eth0:2377"); boxnet listens on the advertised
    address, whatever host part is given."""
    _, _, port = listen.rpartition(":")
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else 2377


def add_swarm_routes(router: Router, engine: Engine) -> None:
    swarm = engine.swarm

    def init(request: Request) -> Response:
        body = Fields(request.json() or {}, "swarm init")
        body.refuse_set({"ForceNewCluster": "a new cluster from this node's state is not supported",
                         "DataPathAddr": "the data path uses the advertised address",
                         "DefaultAddrPool": "the address pool is Docker's default, 10.0.0.0/8 in /24s",
                         "AutoLockManagers": "autolock is not supported"})  # fmt: skip
        node_id = engine.swarm_init(body.str("AdvertiseAddr"), _port(body.str("ListenAddr")))
        return Response(200, node_id)

    def join(request: Request) -> Response:
        body = Fields(request.json() or {}, "swarm join")
        body.refuse_set({"DataPathAddr": "the data path uses the advertised address"})
        remotes = body.strings("RemoteAddrs")
        engine.swarm_join(remotes, body.str("JoinToken"), body.str("AdvertiseAddr"),
                          body.str("Availability") or "active")  # fmt: skip
        return Response(200, raw=b"")

    def leave(request: Request) -> Response:
        force = request.arg("force").lower() in ("1", "true", "yes")
        engine.swarm_leave(force)
        return Response(200, raw=b"")

    def inspect(request: Request) -> Response:
        swarm.require_manager()
        return Response(200, swarm_json.swarm_json(swarm))

    def node_list(request: Request) -> Response:
        filters = request.filters()
        found = []
        for status in swarm.nodes():
            node = status.node
            if "id" in filters and not any(node.id.startswith(v) for v in filters["id"]):
                continue
            if "name" in filters and node.hostname not in filters["name"] and node.name not in filters["name"]:
                continue
            if "role" in filters and node.role not in filters["role"]:
                continue
            found.append(swarm_json.node_json(status, swarm.state.port))
        return Response(200, found)

    def node_inspect(request: Request, ref: str) -> Response:
        return Response(200, swarm_json.node_json(swarm.node(ref), swarm.state.port))

    def node_update(request: Request, ref: str) -> Response:
        body = Fields(request.json() or {}, "node spec")
        version = request.arg("version")
        if not version.isdigit():
            raise InvalidArgument(f"invalid node version {version!r}")
        current = swarm.node(ref).node
        swarm.update_node(ref, int(version), body.str("Role") or current.role,
                          body.str("Availability") or current.availability, body.string_map("Labels"),
                          body.str("Name"))  # fmt: skip
        return Response(200, raw=b"")

    def node_remove(request: Request, ref: str) -> Response:
        swarm.remove_node(ref, request.arg("force").lower() in ("1", "true", "yes"))
        return Response(200, raw=b"")

    def rotate_keys(request: Request) -> Response:
        return Response(200, {"Epoch": engine.rotate_keys()})

    router.add("POST", "/boxnet/swarm/rotate-keys", rotate_keys)
    router.add("POST", "/swarm/init", init)
    router.add("POST", "/swarm/join", join)
    router.add("POST", "/swarm/leave", leave)
    router.add("GET", "/swarm", inspect)
    router.add("GET", "/nodes", node_list)
    router.add("GET", "/nodes/(?P<ref>[^/]+)", node_inspect)
    router.add("POST", "/nodes/(?P<ref>[^/]+)/update", node_update)
    router.add("DELETE", "/nodes/(?P<ref>[^/]+)", node_remove)
