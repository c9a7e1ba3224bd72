"""The swarm as a manager sees it for the tools: the control plane read from the store, and every live node's
kernel view (diag/node_view.py) asked for over the node port at once. `boxnet topology --cluster` shows them
together (nodes, underlay, tunnels and their state, WireGuard peers, services and tasks); `boxnet overlay
check NET` judges them (diag/overlay_check.py)."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from boxnet.cluster import keys
from boxnet.cluster.node_server import ask
from boxnet.diag import node_view
from boxnet.diag.overlay_check import ControlPlane, check_network, tunnels
from boxnet.drivers.overlay.driver import VNI, encrypted
from boxnet.errors import BoxnetError, Unavailable
from boxnet.model.network import Network
from boxnet.services.records import ServicesState

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

ASK_SECONDS = 10


def serve_view(engine: Engine) -> Any:
    """The node port's route: this node's view (probes with ?probe=1)."""

    def route(rest: str, query: dict[str, str]) -> Any:
        runtime = engine.services_runtime
        if runtime is None:
            raise Unavailable("this node is leaving the swarm")
        yield node_view.node_view(engine, runtime.logs.node_id, socket.gethostname(), runtime.address,
                                  probe=query.get("probe") == "1")  # fmt: skip

    return route


def control_plane(engine: Engine) -> ControlPlane:
    store = engine.ctx.require_manager().store
    nodes = {status.node.id: {"hostname": status.node.hostname, "addr": status.node.addr, "role": status.node.role,
                              "alive": status.alive, "leader": status.leader}
             for status in engine.swarm.nodes()}  # fmt: skip
    networks = {}
    for entry in store.range(keys.NETWORKS)[0]:
        network = Network.from_dict(json.loads(entry.value))
        networks[network.id] = {"name": network.name, "vni": int(network.driver_data.get(VNI) or 0),
                                "encrypted": encrypted(network)}  # fmt: skip
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for entry in store.range(keys.ENDPOINTS)[0]:
        network_id = entry.key[len(keys.ENDPOINTS):].split("/", 1)[0]
        endpoints.setdefault(network_id, []).append(json.loads(entry.value))
    wireguard = {e.key[len(keys.WG_NODES):]: json.loads(e.value) for e in store.range(keys.WG_NODES)[0]}
    return ControlPlane(nodes, networks, endpoints, wireguard)


def gather(engine: Engine, control: ControlPlane, probe: bool = False) -> tuple[dict[str, dict], dict[str, str]]:
    """Every live node's view (this one's read here), and why the others' did not come."""
    runtime = engine.services_runtime
    if runtime is None:
        raise Unavailable("this node is not in a swarm")
    here = runtime.logs.node_id
    credentials = runtime.logs.credentials

    def one(node_id: str) -> tuple[str, dict | None, str]:
        if node_id == here:
            return node_id, node_view.node_view(engine, here, socket.gethostname(), runtime.address, probe), ""
        if credentials is None:
            return node_id, None, "a swarm on --cluster-store has no node port: ask that node itself"
        try:
            waited = ASK_SECONDS + (node_view.probe_seconds(len(control.alive())) if probe else 0)
            answer = ask(control.nodes[node_id]["addr"], credentials, node_view.ROUTE, {"probe": "1" if probe else ""},
                         timeout=waited)  # fmt: skip
            return node_id, next(answer, None), ""
        except BoxnetError as exc:
            return node_id, None, exc.message

    views, errors = {}, {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for node_id, view, error in pool.map(one, control.alive()):
            if view is not None:
                views[node_id] = view
            else:
                errors[node_id] = error
    return views, errors


def cluster_topology(engine: Engine) -> dict[str, Any]:
    control = control_plane(engine)
    views, errors = gather(engine, control)
    nodes = []
    for node_id, record in sorted(control.nodes.items(), key=lambda n: n[1]["hostname"]):
        nodes.append({"Id": node_id, "Hostname": record["hostname"], "Addr": record["addr"], "Role": record["role"],
                      "Leader": record["leader"], "State": "ready" if record["alive"] else "down",
                      "View": views.get(node_id), "Error": errors.get(node_id, "")})  # fmt: skip
    state = ServicesState.read(engine.ctx.require_manager().store)
    services = []
    for service in sorted(state.services, key=lambda s: s.spec.name):
        tasks = [{"Id": task_id, "Node": control.hostname(task["node_id"]) if task.get("node_id") else "",
                  "State": state.status.get(task_id, {}).get("state", "pending"), "Slot": task.get("slot")}
                 for task_id, task in state.tasks.items() if task["service_id"] == service.id]  # fmt: skip
        services.append({"Name": service.spec.name, "Mode": service.spec.mode,
                         "Networks": [control.networks.get(n, {}).get("name", n) for n in service.networks],
                         "Vips": [v for v in service.networks.values() if v], "Tasks": tasks})  # fmt: skip
    return {"Nodes": nodes, "Tunnels": tunnels(control, views), "Services": services}


def overlay_check(engine: Engine, network_ref: str) -> dict[str, Any]:
    network = engine.view.find_network(network_ref)
    control = control_plane(engine)
    if network.id not in control.networks:
        raise Unavailable(f"network {network.name} is not a swarm network: only overlays are checked")
    views, errors = gather(engine, control, probe=True)
    problems = check_network(control, network.id, views, errors)
    mtus = sorted({n["VxlanMtu"] for v in views.values() for n in v["Networks"] if n["Id"] == network.id})
    record = control.networks[network.id]
    return {"Network": network.name, "Vni": record["vni"], "Encrypted": record["encrypted"],
            "Nodes": [control.hostname(n) for n in control.alive()], "Mtu": mtus,
            "Endpoints": len(control.endpoints.get(network.id, [])),
            "Problems": [p.to_json() for p in problems]}  # fmt: skip
