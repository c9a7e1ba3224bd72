"""The API's endpoints: Docker Engine API paths served by the engine, plus /boxnet/ extensions."""

from __future__ import annotations

import os
import platform
import socket

from boxnet import __version__
from boxnet.api import bodies, docker_json, streams, swarm_json
from boxnet.api.container_admin_routes import add_container_admin_routes
from boxnet.api.event_routes import add_event_routes
from boxnet.api.fields import Fields
from boxnet.api.image_routes import add_image_routes
from boxnet.api.inspection_routes import add_inspection_routes
from boxnet.api.server import API_VERSION, MIN_API_VERSION, Request, Response, Router, Stream
from boxnet.api.service_logs import add_service_log_routes
from boxnet.api.service_routes import add_service_routes
from boxnet.api.swarm_routes import add_swarm_routes
from boxnet.api.volume_routes import add_volume_routes
from boxnet.drivers import registry as drivers
from boxnet.engine.controller import Engine
from boxnet.errors import InvalidArgument
from boxnet.model.container import Container
from boxnet.model.names import labels_match


def _timeout(request: Request) -> float | None:
    """The stop timeout asked for (-1: wait for ever), or None for the container's own (10 s by default)."""
    raw = request.arg("t") or request.arg("timeout")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"invalid timeout {raw!r}: a number of seconds") from None
    if value < -1:
        raise InvalidArgument(f"invalid timeout {raw!r}: -1 (wait for ever) or more")
    return float(value)


def _matches(container: Container, filters: dict[str, list[str]], engine: Engine) -> bool:
    for key, values in filters.items():
        if key == "label":
            if not labels_match(container.labels, values):
                return False
        elif key == "name":
            if not any(v.lstrip("/") in container.name for v in values):
                return False
        elif key == "id":
            if not any(container.id.startswith(v) for v in values):
                return False
        elif key == "status":
            if ("paused" if container.state.paused else container.state.status) not in values:
                return False
        elif key == "network":
            joined = set(container.requested_networks)
            joined |= {n.id for n in (engine.view.network_by_name(x) for x in joined) if n}
            if container.network_mode in ("host", "none"):
                joined.add(container.network_mode)
            if not any(v in joined or any(j.startswith(v) for j in joined if len(v) >= 12) for v in values):
                return False
        else:
            raise InvalidArgument(f"invalid filter {key!r}")
    return True


def build_router(engine: Engine) -> Router:
    router = Router()
    registry = engine.view

    # ---- system ------------------------------------------------------------------------------------
    def ping(request: Request) -> Response:
        return Response(200, raw=b"OK", content_type="text/plain; charset=utf-8",
                        headers={"Swarm": swarm_json.ping_header(engine.swarm)})  # fmt: skip

    def version(request: Request) -> Response:
        details = {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
            "GoVersion": "python" + platform.python_version(), "Os": "linux",
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            "KernelVersion": platform.release(), "BuildTime": "", "Experimental": "false",
        }
        return Response(200, {
            "Platform": {"Name": "boxnet"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__, **{k: v for k, v in details.items() if k != "Experimental"},
        })  # fmt: skip

    def info(request: Request) -> Response:
        states = ["paused" if c.state.paused else c.state.status for c in registry.containers.values()]
        running, paused = states.count("running"), states.count("paused")
        return Response(200, {
            "ID": "boxnet", "Containers": len(states), "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(states) - running - paused, "Images": 0,
            "Driver": "boxnet", "Name": socket.gethostname(), "ServerVersion": __version__,
            "OperatingSystem": "boxnet", "OSType": "linux", "KernelVersion": platform.release(),
            "Architecture": platform.machine(), "NCPU": os.cpu_count(), "DockerRootDir": engine.config.root,
            "Plugins": {"Network": drivers.names(), "Volume": [], "Log": ["json-file"]},
            "SecurityOptions": [], "Warnings": [], "Swarm": swarm_json.info_json(engine.swarm),
        })  # fmt: skip

    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    add_event_routes(router, engine)
    add_inspection_routes(router, engine)
    add_container_admin_routes(router, engine)
    add_swarm_routes(router, engine)
    add_image_routes(router, engine)
    add_volume_routes(router, engine)
    add_service_routes(router, engine)
    add_service_log_routes(router, engine)

    # ---- networks ----------------------------------------------------------------------------------
    def network_list(request: Request) -> Response:
        filters = request.filters()
        result = []
        for network in registry.networks.values():
            if "name" in filters and not any(v in network.name for v in filters["name"]):
                continue
            if "id" in filters and not any(network.id.startswith(v) for v in filters["id"]):
                continue
            if "driver" in filters and network.driver not in filters["driver"]:
                continue
            if not labels_match(network.labels, filters.get("label", [])):
                continue
            result.append(docker_json.network_json(network, registry, verbose=False))
        return Response(200, sorted(result, key=lambda n: n["Name"]))

    def network_inspect(request: Request, ref: str) -> Response:
        return Response(200, docker_json.network_json(registry.find_network(ref), registry))

    def network_create(request: Request) -> Response:
        network = engine.networks.create(bodies.network_request(request.json()))
        return Response(201, {"Id": network.id, "Warning": ""})

    def network_delete(request: Request, ref: str) -> Response:
        engine.networks.remove(ref)
        return Response(204)

    def network_connect(request: Request, ref: str) -> Response:
        body = Fields(request.json())
        body.refuse_unknown({"Container", "EndpointConfig"})
        settings = bodies.endpoint_settings(body.data.get("EndpointConfig"), "EndpointConfig")
        engine.containers.connect(ref, body.str("Container"), settings)
        return Response(200)

    def network_disconnect(request: Request, ref: str) -> Response:
        body = Fields(request.json())
        body.refuse_unknown({"Container", "Force"})
        engine.containers.disconnect(ref, body.str("Container"), body.bool("Force"))
        return Response(200)

    def network_prune(request: Request) -> Response:
        return Response(200, {"NetworksDeleted": engine.networks.prune()})

    router.add("GET", "/networks", network_list)
    router.add("POST", "/networks/create", network_create)
    router.add("POST", "/networks/prune", network_prune)
    router.add("GET", "/networks/(?P<ref>[^/]+)", network_inspect)
    router.add("DELETE", "/networks/(?P<ref>[^/]+)", network_delete)
    router.add("POST", "/networks/(?P<ref>[^/]+)/connect", network_connect)
    router.add("POST", "/networks/(?P<ref>[^/]+)/disconnect", network_disconnect)

    # ---- containers --------------------------------------------------------------------------------
    volumes_root = engine.volumes.store.root

    def container_list(request: Request) -> Response:
        filters = request.filters()
        show_all = request.flag("all")
        result = [
            docker_json.container_summary(c, registry, volumes_root)
            for c in sorted(registry.containers.values(), key=lambda c: c.created, reverse=True)
            if (show_all or c.state.status == "running") and _matches(c, filters, engine)
        ]
        return Response(200, result)

    def container_create(request: Request) -> Response:
        container = engine.containers.create(bodies.container_request(request.json(), request.arg("name")))
        return Response(201, {"Id": container.id, "Warnings": []})

    def container_inspect(request: Request, ref: str) -> Response:
        container = registry.find_container(ref)
        return Response(200, docker_json.container_json(container, registry, engine.config.container_dir(container.id),
                                                        engine.containers.restarts.pending(container.id),
                                                        volumes_root))  # fmt: skip

    def container_start(request: Request, ref: str) -> Response:
        container = registry.find_container(ref)
        if container.state.status == "running":
            return Response(304)
        engine.containers.start(container.id)
        return Response(204)

    def container_stop(request: Request, ref: str) -> Response:
        container = registry.find_container(ref)
        if container.state.status != "running":
            return Response(304)
        engine.containers.stop(container.id, _timeout(request), request.arg("signal") or None)
        return Response(204)

    def container_kill(request: Request, ref: str) -> Response:
        engine.containers.kill(ref, request.arg("signal") or "SIGKILL")
        return Response(204)

    def container_restart(request: Request, ref: str) -> Response:
        engine.containers.restart(ref, _timeout(request))
        return Response(204)

    def container_wait(request: Request, ref: str) -> Stream:
        return streams.wait_stream(engine, registry.find_container(ref), request.arg("condition") or "not-running")

    def container_delete(request: Request, ref: str) -> Response:
        engine.containers.remove(ref, force=request.flag("force"), remove_volumes=request.flag("v"))
        return Response(204)

    def container_logs(request: Request, ref: str) -> Stream:
        container = registry.find_container(ref)
        return streams.logs_stream(engine, container, request)

    def container_attach(request: Request, ref: str) -> Stream:
        return streams.attach_stream(engine, registry.find_container(ref), request)

    def container_resize(request: Request, ref: str) -> Response:
        registry.find_container(ref)
        return Response(200)  # the TTY's size is set at start from HostConfig.ConsoleSize

    router.add("GET", "/containers/json", container_list)
    router.add("POST", "/containers/(?P<ref>[^/]+)/attach", container_attach)
    router.add("POST", "/containers/(?P<ref>[^/]+)/resize", container_resize)
    router.add("POST", "/containers/create", container_create)
    router.add("GET", "/containers/(?P<ref>[^/]+)/json", container_inspect)
    router.add("POST", "/containers/(?P<ref>[^/]+)/start", container_start)
    router.add("POST", "/containers/(?P<ref>[^/]+)/stop", container_stop)
    router.add("POST", "/containers/(?P<ref>[^/]+)/kill", container_kill)
    router.add("POST", "/containers/(?P<ref>[^/]+)/restart", container_restart)
    router.add("POST", "/containers/(?P<ref>[^/]+)/wait", container_wait)
    router.add("GET", "/containers/(?P<ref>[^/]+)/logs", container_logs)
    router.add("DELETE", "/containers/(?P<ref>[^/]+)", container_delete)

    # ---- exec --------------------------------------------------------------------------------------
    def exec_create(request: Request, ref: str) -> Response:
        body = Fields(request.json())
        body.refuse_unknown({"Cmd", "Env", "Tty", "AttachStdin", "AttachStdout", "AttachStderr", "WorkingDir",
                             "BoxnetDebug", "User", "Privileged", "DetachKeys", "Detach", "ConsoleSize",
                             "Container"})  # fmt: skip
        body.refuse_set({"Privileged": "a container is a tenant, never the host's equal"})
        session = engine.execs.create(ref, body.strings("Cmd"), body.strings("Env"), body.bool("Tty"),
                                      body.bool("AttachStdin"), body.str("WorkingDir"), body.str("BoxnetDebug"),
                                      user=body.str("User"), console_size=bodies.console_size(body))  # fmt: skip
        return Response(201, {"Id": session.id})

    def exec_start(request: Request, exec_id: str) -> Response | Stream:
        body = Fields(request.json())
        body.refuse_unknown({"Detach", "Tty", "ConsoleSize"})
        session = engine.execs.get(exec_id)
        if body.bool("Detach"):
            engine.execs.start(exec_id)
            streams.finish_in_background(engine, session)
            return Response(200)
        engine.execs.start(exec_id)  # before the upgrade, so that a failure is still an HTTP error
        return streams.exec_stream(engine, session)

    def exec_inspect(request: Request, exec_id: str) -> Response:
        session = engine.execs.get(exec_id)
        return Response(200, {
            "ID": session.id, "Running": session.running, "ExitCode": session.exit_code,
            "ContainerID": session.container_id, "Pid": session.pid, "OpenStdin": session.attach_stdin,
            "ProcessConfig": {"entrypoint": session.cmd[0], "arguments": session.cmd[1:], "tty": session.tty},
        })  # fmt: skip

    def exec_resize(request: Request, exec_id: str) -> Response:
        streams.resize(engine.execs.get(exec_id), request.arg("h"), request.arg("w"))
        return Response(200)

    router.add("POST", "/containers/(?P<ref>[^/]+)/exec", exec_create)
    router.add("POST", "/exec/(?P<exec_id>[^/]+)/start", exec_start)
    router.add("POST", "/exec/(?P<exec_id>[^/]+)/resize", exec_resize)
    router.add("GET", "/exec/(?P<exec_id>[^/]+)/json", exec_inspect)

    # ---- boxnet extensions -------------------------------------------------------------------------
    def reconcile(request: Request) -> Response:
        return Response(200, {"Repaired": engine.reconciler.repair()})

    def dns_log(request: Request, ref: str) -> Response:
        tail = request.arg("tail") or "100"
        if not tail.isdigit():
            raise InvalidArgument(f"tail must be a number, not {tail!r}")
        return Response(200, engine.containers.dns_log(ref, int(tail)))

    def capture(request: Request) -> Stream:
        return streams.capture_stream(engine, request.json() or {})

    router.add("POST", "/boxnet/reconcile", reconcile)
    router.add("POST", "/boxnet/capture", capture)

    def topology(request: Request) -> Response:
        from boxnet.diag.topology import Topology

        found = Topology(engine.view).build()
        if request.flag("cluster"):
            from boxnet.diag.cluster_view import cluster_topology

            found["Cluster"] = cluster_topology(engine)
        return Response(200, found)

    router.add("GET", "/boxnet/topology", topology)

    def overlay_check(request: Request, ref: str) -> Response:
        from boxnet.diag.cluster_view import overlay_check as check

        return Response(200, check(engine, ref))

    router.add("GET", "/boxnet/overlay/(?P<ref>[^/]+)/check", overlay_check)

    def trace(request: Request) -> Response:
        from boxnet.diag.trace import Tracer

        body = request.json() or {}
        source, target = body.get("Source"), body.get("Destination")
        if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
            raise InvalidArgument("trace needs Source and Destination")
        remote = None
        if engine.services_runtime is not None:  # in a swarm: the destination's node traces its side too
            from boxnet.diag.remote_trace import RemoteTrace

            remote = RemoteTrace(engine)
        return Response(200, Tracer(engine.view, remote).trace(source, target).to_json())

    router.add("POST", "/boxnet/trace", trace)
    router.add("GET", "/boxnet/containers/(?P<ref>[^/]+)/dns-log", dns_log)
    router.add("GET", "/boxnet/dns", lambda request: Response(200, engine.view.dns_status()))
    return router
