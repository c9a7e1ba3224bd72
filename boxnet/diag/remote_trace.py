"""The swarm's side of `boxnet trace`: a destination on another node (or a service's VIP, whose backend may be
on any node) is traced on that node too. Before the probe leaves, the manager asks each node that may receive
it, over the node port, to set nftrace on that one packet (by its source address and port, as the source
node does) and watch; each answers once its watch is in place, and again with what it saw: whether the probe
arrived, the chains it met there, and which of its containers holds the address it was for.

A worker has no node port to ask others: its traces stop at the tunnel (the VXLAN step says where to).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boxnet.cluster import keys
from boxnet.cluster.node_server import ask
from boxnet.cluster.nodes import node_address
from boxnet.errors import BoxnetError, InvalidArgument
from boxnet.services.records import ServicesState

if TYPE_CHECKING:
    from boxnet.diag.trace import TraceResult
    from boxnet.engine.controller import Engine

ROUTE = "/trace"  # GET /trace?source=A&protocol=P&marker=M on the node port
WATCH_SECONDS = 3.0  # how long a node watches for the probe (the source gives up after 1.5 s)


def serve_trace(engine: Engine) -> Any:
    """The node port's route: watch for one probe here, and say what it met."""
    from boxnet.diag.trace import TraceWatch, parse_trace

    def route(rest: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        try:
            watch = TraceWatch(query.get("source", ""), query.get("protocol", ""), int(query.get("marker", "0")),
                               engine.view.trace_records)  # fmt: skip
        except ValueError as exc:
            raise InvalidArgument(f"bad trace request: {exc}") from None
        watch.start()
        try:
            yield {"Ready": True}
            time.sleep(WATCH_SECONDS)
        finally:
            lines = watch.finish()
        chains, verdict, dropper = parse_trace(lines)
        yield {"Node": socket.gethostname(), "Reached": watch.reached(lines), "Chains": chains,
               "Verdict": verdict or "", "Dropper": dropper, "Holders": _holders(engine)}  # fmt: skip

    return route


def _holders(engine: Engine) -> dict[str, str]:
    """Each running container's addresses here, with how a frame reaches it from its network's bridge."""
    found = {}
    with engine.view.lock:
        for container in engine.view.containers.values():
            if container.state.status != "running":
                continue
            for endpoint in container.endpoints.values():
                network = engine.view.networks.get(endpoint.network_id)
                address = endpoint.address(4)
                if address and network is not None:
                    found[address] = (f"bridge {network.bridge} -> {endpoint.host_veth} -> {endpoint.ifname} in "
                                      f"container {container.name} ({address})")  # fmt: skip
    return found


@dataclass
class FarSide:
    """The nodes asked to watch for one probe."""

    tracer: RemoteTrace
    nodes: list[tuple[str, str]]  # (hostname, address)
    vip: str = ""

    def begin(self, source: str, protocol: str, marker: int) -> list[tuple[str, Iterator[Any]]]:
        """Each node's answer stream, once its watch is in place (a node that cannot watch is left out)."""
        query = {"source": source, "protocol": protocol, "marker": str(marker)}

        def one(node: tuple[str, str]) -> tuple[str, Iterator[Any] | None]:
            hostname, address = node
            try:
                stream = ask(address, self.tracer.credentials, ROUTE, query, timeout=10)
                if next(stream, None) is not None:
                    return hostname, stream
            except BoxnetError as exc:
                self.tracer.unreachable[hostname] = exc.message
            return hostname, None

        with ThreadPoolExecutor(max_workers=8) as pool:  # at once: each node watches for WATCH_SECONDS only
            answers = list(pool.map(one, self.nodes))
        return [(hostname, stream) for hostname, stream in answers if stream is not None]

    def report(self, result: TraceResult, started: list[tuple[str, Iterator[Any]]], destination: str,
               backend: str, tunnel: str | None) -> None:  # fmt: skip
        if self.vip and backend != destination:
            result.steps.append(f"VIP {destination} of service {self.vip}: the probe was DNATed in the source's "
                                f"namespace to backend {backend}")  # fmt: skip
        elif self.vip:
            result.steps.append(f"VIP {destination} of service {self.vip}: no backend took the probe")
        if tunnel:
            result.steps.append(tunnel)
        for hostname, reason in self.tracer.unreachable.items():
            result.steps.append(f"on {hostname}: not traced ({reason})")
        for hostname, stream in started:
            try:
                seen = next(stream, None)
            except BoxnetError as exc:
                result.steps.append(f"on {hostname}: no report ({exc.message})")
                continue
            finally:
                stream.close()  # type: ignore[attr-defined]  # the connection goes with the generator
            if not seen or not seen["Reached"]:
                continue
            result.steps.append(f"on {hostname}: the probe arrived from the VXLAN device")
            result.steps += [f"on {hostname}: nftables {line}" for line in seen["Chains"]]
            if seen["Dropper"]:
                result.steps.append(f"on {hostname}: dropped at {seen['Dropper']}")
                if not result.reason:
                    result.reason = f"dropped on {hostname} at {seen['Dropper']}"
            holder = seen["Holders"].get(backend)
            if holder:
                result.steps.append(f"on {hostname}: {holder}")


class RemoteTrace:
    def __init__(self, engine: Engine) -> None:
        runtime = engine.services_runtime
        self.engine = engine
        self.credentials = runtime.logs.credentials if runtime is not None else None
        self.node_id = runtime.logs.node_id if runtime is not None else ""
        self.unreachable: dict[str, str] = {}

    @property
    def _store(self) -> Any:
        return self.engine.ctx.require_cluster().store

    def service_address(self, name: str, network_ids: set[str]) -> str:
        """A service's VIP on one of these networks ('' if none: not a service, or in dnsrr mode)."""
        try:
            services = ServicesState.read(self._store).services
        except BoxnetError:
            return ""
        for service in services:
            if name in (service.spec.name, service.id):
                for network_id, vip in service.networks.items():
                    if vip and network_id in network_ids:
                        return vip
        return ""

    def far_side(self, destination: str) -> FarSide | None:
        """The other nodes that may receive a probe to destination (the one holding it, or a VIP's backends'),
        when this node may ask them (a manager with the swarm's certificates)."""
        if self.credentials is None or self.engine.ctx.cluster_role != "manager":
            return None
        try:
            ipaddress.ip_address(destination)
            store = self._store
            endpoints = [json.loads(e.value) for e in store.range(keys.ENDPOINTS)[0]]
            state = ServicesState.read(store)
        except (ValueError, BoxnetError):
            return None
        holders = {e["node"] for e in endpoints if e.get("ipv4") == destination}
        vip = ""
        for service in state.services:
            if destination in service.networks.values():
                vip = service.spec.name
                network_id = next(n for n, a in service.networks.items() if a == destination)
                running = [state.status.get(t, {}) for t, task in state.tasks.items()
                           if task["service_id"] == service.id]  # fmt: skip
                backends = {s.get("addresses", {}).get(network_id) for s in running if s.get("state") == "running"}
                holders |= {e["node"] for e in endpoints if e.get("ipv4") in backends}
        nodes = []
        for node_id in sorted(holders - {self.node_id}):
            address, hostname = node_address(store, node_id)
            if address:
                nodes.append((hostname, address))
        return FarSide(self, nodes, vip) if nodes or vip else None
