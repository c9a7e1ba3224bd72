"""The services part of the Docker Engine API: /services, /services/create, /services/{id}[/update], /tasks.

A ServiceSpec's fields are applied or refused by name, as a container create's are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boxnet.api.fields import Fields
from boxnet.api.server import Request, Response, Router
from boxnet.errors import InvalidArgument
from boxnet.model.service import PublishedPort, ServiceSpec
from boxnet.services.records import ServiceRecord

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine


def parse_spec(body: Any) -> ServiceSpec:
    spec = Fields(body, "service spec")
    template = spec.object("TaskTemplate")
    container = template.object("ContainerSpec")
    container.refuse_set({"Mounts": "volumes and mounts are not supported yet", "Secrets": "secrets are not "
                          "supported", "Configs": "configs are not supported", "User": "a task's user is not "
                          "supported yet", "Dir": "a task's working directory is not supported yet"})  # fmt: skip
    resources = template.object("Resources")
    if any(resources.object(kind).data for kind in ("Limits", "Reservations")):
        raise InvalidArgument("TaskTemplate.Resources: task resources are not supported yet")
    template.refuse_set({"LogDriver": "tasks log as json-file"})
    mode = spec.object("Mode")
    if "Global" in mode.data:
        kind, replicas = "global", 0
    else:
        kind, replicas = "replicated", mode.object("Replicated").int("Replicas", 1, low=0, high=1000)
    networks = [n.str("Target") for n in template.objects("Networks")] or [n.str("Target")
                                                                            for n in spec.objects("Networks")]
    endpoint = spec.object("EndpointSpec")
    ports = [_published_port(p) for p in endpoint.objects("Ports")]
    update, rollback = _rollout(spec.object("UpdateConfig")), _rollout(spec.object("RollbackConfig"))
    return ServiceSpec(
        name=spec.str("Name"), image=container.str("Image"),
        args=container.strings("Command") + container.strings("Args"), env=container.strings("Env"),
        labels=spec.string_map("Labels"), container_labels=container.string_map("Labels"), mode=kind,
        replicas=replicas, networks=networks, endpoint_mode=endpoint.str("Mode") or "vip",
        constraints=template.object("Placement").strings("Constraints"), ports=ports,
        update_parallelism=update[0], update_delay=update[1], update_monitor=update[2],
        rollback_parallelism=rollback[0], rollback_delay=rollback[1], rollback_monitor=rollback[2],
    )  # fmt: skip


def _rollout(config: Fields) -> tuple[int, float, float]:
    """UpdateConfig or RollbackConfig: (parallelism, delay, monitor), what boxnet does of it; the rest refused
    unless it is what boxnet does anyway."""
    config.refuse_unknown({"Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order"},
                          unless_unset=False)  # fmt: skip
    action, order = config.str("FailureAction") or "pause", config.str("Order") or "stop-first"
    if action != "pause":
        raise InvalidArgument(f"{config.path}.FailureAction {action!r}: only pause is supported (a batch whose "
                              "tasks do not run holds the rollout)")  # fmt: skip
    if order != "stop-first":
        raise InvalidArgument(f"{config.path}.Order {order!r}: only stop-first is supported yet")
    if config.data and config.data.get("MaxFailureRatio"):
        raise InvalidArgument(f"{config.path}.MaxFailureRatio: failures are not tolerated (pause), so no ratio")
    seconds = 1e9
    return (config.int("Parallelism", 1, low=0), config.int("Delay", 0, low=0) / seconds,
            config.int("Monitor", 0, low=0) / seconds)


def _rollout_json(parallelism: int, delay: float, monitor: float) -> dict[str, Any]:
    return {"Parallelism": parallelism, "Delay": int(delay * 1e9), "FailureAction": "pause",
            "Monitor": int(monitor * 1e9), "MaxFailureRatio": 0, "Order": "stop-first"}  # fmt: skip


def _published_port(port: Fields) -> PublishedPort:
    port.refuse_unknown({"Name", "Protocol", "TargetPort", "PublishedPort", "PublishMode"}, unless_unset=False)
    mode = port.str("PublishMode") or "ingress"
    if mode != "ingress":
        raise InvalidArgument(f"{port.path}.PublishMode {mode!r}: only ingress (the routing mesh) is supported; "
                              "host mode publishing is not built yet")  # fmt: skip
    return PublishedPort(target=port.int("TargetPort", 0, low=1, high=65535),
                         published=port.int("PublishedPort", 0, low=0, high=65535),
                         protocol=port.str("Protocol") or "tcp")  # fmt: skip


def ports_json(ports: list[PublishedPort]) -> list[dict[str, Any]]:
    return [{"Protocol": p.protocol, "TargetPort": p.target, "PublishedPort": p.published, "PublishMode": "ingress"}
            for p in ports]  # fmt: skip


def spec_json(spec: ServiceSpec, networks: dict[str, str]) -> dict[str, Any]:
    mode: dict[str, Any] = {"Global": {}} if spec.mode == "global" else {"Replicated": {"Replicas": spec.replicas}}
    return {
        "Name": spec.name, "Labels": spec.labels,
        "TaskTemplate": {
            "ContainerSpec": {"Image": spec.image, "Args": spec.args, "Env": spec.env, "Labels": spec.container_labels},
            "Placement": {"Constraints": spec.constraints} if spec.constraints else {},
            "Networks": [{"Target": n} for n in networks], "ForceUpdate": 0,
        },
        "UpdateConfig": _rollout_json(spec.update_parallelism, spec.update_delay, spec.update_monitor),
        "RollbackConfig": _rollout_json(spec.rollback_parallelism, spec.rollback_delay, spec.rollback_monitor),
        "Mode": mode, "EndpointSpec": {"Mode": spec.endpoint_mode, **({"Ports": ports_json(spec.ports)}
                                                                        if spec.ports else {})},
    }  # fmt: skip


def service_json(record: ServiceRecord, prefixes: dict[str, int], running: int, desired: int) -> dict[str, Any]:
    return {
        "ID": record.id, "Version": {"Index": record.version}, "CreatedAt": record.created,
        "UpdatedAt": record.updated, "Spec": spec_json(record.spec, record.networks),
        "Endpoint": {"Spec": spec_json(record.spec, record.networks)["EndpointSpec"],
                     **({"Ports": ports_json(record.spec.ports)} if record.spec.ports else {}),
                     "VirtualIPs": [{"NetworkID": n, "Addr": f"{a}/{prefixes.get(n, 24)}"}
                                    for n, a in record.networks.items() if a]},
        "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": 0},
        **({"PreviousSpec": spec_json(record.previous, record.networks)} if record.previous else {}),
        **({"UpdateStatus": {"State": "rollback_started", "Message": "manually requested rollback"}}
           if record.rolling_back else {}),
    }  # fmt: skip


def _task_template(task: dict[str, Any], record: ServiceRecord | None) -> dict[str, Any]:
    """The service's TaskTemplate with the task's own ContainerSpec (what it runs, from when it was made)."""
    if record is None:
        return {}
    template = spec_json(record.spec, record.networks)["TaskTemplate"]
    own = task.get("spec")
    if own:
        template["ContainerSpec"] = {"Image": own["image"], "Args": own["args"], "Env": own["env"],
                                     "Labels": own["container_labels"]}  # fmt: skip
    return template


def task_json(task: dict[str, Any], status: dict[str, Any], record: ServiceRecord | None, ingress: str = ""
              ) -> dict[str, Any]:  # fmt: skip
    """ingress: the ingress network's ID (a task of a service that publishes ports is attached there too)."""
    pending = not task["node_id"]
    state = "pending" if pending else status.get("state", "assigned")
    error = task.get("pending", "") if pending else status.get("message", "") if state in ("failed", "rejected") \
        else ""  # fmt: skip
    answer: dict[str, Any] = {
        "ID": task["id"], "Version": {"Index": 1}, "CreatedAt": task["created"],
        "UpdatedAt": status.get("timestamp", task["created"]), "Labels": {},
        "Spec": _task_template(task, record),
        "ServiceID": task["service_id"], "NodeID": task["node_id"], "DesiredState": "running",
        "Status": {"Timestamp": status.get("timestamp", task["created"]), "State": state,
                   "Message": status.get("message", state), "Err": error,
                   "ContainerStatus": {"ContainerID": status.get("container", ""),
                                       "ExitCode": status.get("exit_code", 0)}},
        "NetworksAttachments": [{"Network": {"ID": n}, "Addresses": [a]}
                                for n, a in status.get("addresses", {}).items()
                                if record is not None and (n in record.networks or n == ingress)],  # no gwbridge
    }  # fmt: skip
    if task["slot"]:
        answer["Slot"] = task["slot"]
    return answer


def _ingress(engine: Engine) -> str:
    return next((n.id for n in engine.view.networks.values() if n.ingress), "")


def add_service_routes(router: Router, engine: Engine) -> None:
    def create(request: Request) -> Response:
        record = engine.create_service(parse_spec(request.json() or {}))
        return Response(201, {"ID": record.id, "Warnings": []})

    def listing(request: Request) -> Response:
        filters = request.filters()
        records, tasks = engine.services(), engine.tasks()
        found = []
        for record in records:
            if "name" in filters and not any(record.spec.name.startswith(v) for v in filters["name"]):
                continue
            if "id" in filters and not any(record.id.startswith(v) for v in filters["id"]):
                continue
            mine = [s for t, s in tasks if t["service_id"] == record.id]
            running = sum(s.get("state") == "running" for s in mine)
            desired = record.spec.replicas if record.spec.mode == "replicated" else len(mine)
            found.append(service_json(record, engine.subnet_sizes(), running, desired))
        return Response(200, found)

    def inspect(request: Request, ref: str) -> Response:
        record = engine.service(ref)
        mine = [s for t, s in engine.tasks() if t["service_id"] == record.id]
        running = sum(s.get("state") == "running" for s in mine)
        desired = record.spec.replicas if record.spec.mode == "replicated" else len(mine)
        return Response(200, service_json(record, engine.subnet_sizes(), running, desired))

    def update(request: Request, ref: str) -> Response:
        version = request.arg("version")
        if not version.isdigit():
            raise InvalidArgument(f"invalid service version {version!r}")
        rollback = request.arg("rollback")
        if rollback not in ("", "previous"):
            raise InvalidArgument(f"invalid rollback {rollback!r}: previous, or none")
        engine.update_service(ref, int(version), parse_spec(request.json() or {}), rollback == "previous")
        return Response(200, {"Warnings": []})

    def remove(request: Request, ref: str) -> Response:
        engine.remove_service(ref)
        return Response(200, raw=b"")

    def tasks(request: Request) -> Response:
        filters = request.filters()
        records = {r.id: r for r in engine.services()}
        if "service" in filters:
            wanted = {r.id for r in records.values() for v in filters["service"]
                      if r.id.startswith(v) or r.spec.name == v}  # fmt: skip
        found = []
        for task, status in engine.tasks():
            record = records.get(task["service_id"])
            if "service" in filters and task["service_id"] not in wanted:
                continue
            if "node" in filters and task["node_id"] not in filters["node"]:
                continue
            if "id" in filters and not any(task["id"].startswith(v) for v in filters["id"]):
                continue
            if "_up-to-date" in filters and record is not None and task["spec_version"] != record.task_version:
                continue
            if "desired-state" in filters and "running" not in filters["desired-state"]:
                continue
            found.append(task_json(task, status, record, _ingress(engine)))
        return Response(200, found)

    def task(request: Request, ref: str) -> Response:
        records = {r.id: r for r in engine.services()}
        for task_record, status in engine.tasks():
            if task_record["id"] == ref or task_record["id"].startswith(ref):
                return Response(200, task_json(task_record, status, records.get(task_record["service_id"]),
                                               _ingress(engine)))  # fmt: skip
        from boxnet.errors import NotFound

        raise NotFound(f"task {ref} not found")

    router.add("POST", "/services/create", create)
    router.add("GET", "/services", listing)
    router.add("GET", "/services/(?P<ref>[^/]+)", inspect)
    router.add("POST", "/services/(?P<ref>[^/]+)/update", update)
    router.add("DELETE", "/services/(?P<ref>[^/]+)", remove)
    router.add("GET", "/tasks", tasks)
    router.add("GET", "/tasks/(?P<ref>[^/]+)", task)
