"""Services in the cluster store: created, updated and removed by any manager; the name unique, the VIPs
leased on each network in the same way as containers' addresses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boxnet.cluster import keys, pki
from boxnet.cluster.networks import ClusterNetworks
from boxnet.errors import Conflict
from boxnet.model.names import resolve_ref
from boxnet.model.network import Network
from boxnet.model.service import PublishedPort, ServiceSpec, assign_ports
from boxnet.store.cluster import ClusterStore, Delete, Put, absent, unchanged_since


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ServiceRecord:
    id: str
    spec: ServiceSpec
    version: int  # the record's mod revision
    created: str
    updated: str
    networks: dict[str, str]  # network id -> VIP ("" in dnsrr mode)
    # Bumped when what a task runs changes (not by scaling): tasks of an older one are replaced, rolling.
    task_version: int = 1
    previous: ServiceSpec | None = None  # Docker's PreviousSpec: what a rollback returns to
    rolling_back: bool = False  # the last change was a rollback (its RollbackConfig paces the tasks)

    @classmethod
    def parse(cls, value: str, version: int) -> ServiceRecord:
        data = json.loads(value)
        previous = ServiceSpec.from_dict(data["previous"]) if data.get("previous") else None
        return cls(data["id"], ServiceSpec.from_dict(data["spec"]), version, data["created"], data["updated"],
                   data["networks"], data.get("task_version", 1), previous,
                   data.get("rolling_back", False))  # fmt: skip

    def dump(self) -> str:
        return json.dumps({"id": self.id, "spec": self.spec.to_dict(), "created": self.created,
                           "updated": self.updated, "networks": self.networks, "task_version": self.task_version,
                           "previous": self.previous.to_dict() if self.previous else None,
                           "rolling_back": self.rolling_back})  # fmt: skip


def read_services(store: ClusterStore) -> list[ServiceRecord]:
    return [ServiceRecord.parse(e.value, e.mod_revision) for e in store.range(keys.SERVICES)[0]]


def read_tasks(store: ClusterStore) -> tuple[dict[str, dict], dict[str, dict]]:
    """The desired tasks and what their nodes report of them, both by task id."""
    tasks = {e.key[len(keys.TASKS):]: json.loads(e.value) for e in store.range(keys.TASKS)[0]}
    status = {e.key[len(keys.STATUS):]: json.loads(e.value) for e in store.range(keys.STATUS)[0]}
    return tasks, status


@dataclass
class ServicesState:
    """One reading of the services part of the store, shared by what a round does with it."""

    services: list[ServiceRecord]
    tasks: dict[str, dict]
    status: dict[str, dict]

    @classmethod
    def read(cls, store: ClusterStore) -> ServicesState:
        return cls(read_services(store), *read_tasks(store))


class ServiceRecords:
    def __init__(self, store: ClusterStore, networks: ClusterNetworks) -> None:
        self.store = store
        self.networks = networks

    def _ports(self, spec: ServiceSpec, service_id: str, before: list[PublishedPort]) -> tuple[list, list]:
        """The spec's published ports numbered (assign_ports), and what the service's transaction must hold:
        each new port's key absent (one service per port, whoever asks at the same instant), put, and the
        keys of ports it no longer publishes deleted."""
        held = {e.key[len(keys.PORTS):]: e.value for e in self.store.range(keys.PORTS)[0]}
        taken = {(k.split("/")[0], int(k.split("/")[1])) for k, owner in held.items() if owner != service_id}
        for port in spec.ports:
            if port.published and (port.protocol, port.published) in taken:
                owner = held[f"{port.protocol}/{port.published}"]
                names = {r.id: r.spec.name for r in self.list()}
                raise Conflict(f"port {port} is already published by service {names.get(owner, owner)}")
        spec.ports = assign_ports(spec.ports, before, taken)
        wanted = {f"{p.protocol}/{p.published}" for p in spec.ports}
        mine = {k for k, owner in held.items() if owner == service_id}
        compares = [absent(keys.PORTS + k) for k in wanted - mine]
        changes: list = [Put(keys.PORTS + k, service_id) for k in wanted - mine]
        changes += [Delete(keys.PORTS + k) for k in mine - wanted]
        return compares, changes

    def create(self, spec: ServiceSpec, networks: list[Network]) -> ServiceRecord:
        spec.validate()
        if self.store.get(keys.SERVICE_NAMES + spec.name) is not None:
            raise Conflict(f"service {spec.name} already exists")
        service_id = pki.new_node_id()
        port_compares, port_changes = self._ports(spec, service_id, [])
        vips: dict[str, str] = {}
        try:
            for network in networks:
                vips[network.id] = (self.networks.allocate(network, 4, "", f"vip:{service_id}").split("/")[0]
                                    if spec.endpoint_mode == "vip" else "")  # fmt: skip
            stamp = now()
            record = ServiceRecord(service_id, spec, 0, stamp, stamp, vips)
            if not self.store.txn([absent(keys.SERVICE_NAMES + spec.name), *port_compares],
                                  [Put(keys.SERVICES + service_id, record.dump()),
                                   Put(keys.SERVICE_NAMES + spec.name, service_id), *port_changes]):  # fmt: skip
                raise Conflict(f"service {spec.name} already exists, or one of its ports was published meanwhile")
        except BaseException:
            for network_id, vip in vips.items():
                if vip:
                    self.networks.release(network_id, vip)
            raise
        return self.get(service_id)

    def list(self) -> list[ServiceRecord]:
        return read_services(self.store)

    def get(self, ref: str) -> ServiceRecord:
        return resolve_ref(self.list(), ref, "service", lambda r: r.id, lambda r: r.spec.name)

    def update(self, ref: str, version: int, spec: ServiceSpec, rollback: bool = False) -> ServiceRecord:
        """rollback: back to the spec before the last update (the one given is not used, as in Docker)."""
        record = self.get(ref)
        if rollback:
            if record.previous is None:
                raise Conflict(f"service {record.spec.name} has no previous spec to roll back to")
            spec = record.previous
        spec.validate()
        if spec.name != record.spec.name:
            raise Conflict("renaming a service is not supported")
        if spec.networks != record.spec.networks or spec.endpoint_mode != record.spec.endpoint_mode:
            raise Conflict("changing a service's networks or endpoint mode is not supported: remove it and "
                           "create it again")  # fmt: skip
        port_compares, port_changes = self._ports(spec, record.id, record.spec.ports)
        if _task_part(spec) != _task_part(record.spec):
            record.task_version += 1
        record.previous, record.spec, record.updated, record.rolling_back = record.spec, spec, now(), rollback
        if not self.store.txn([unchanged_since(keys.SERVICES + record.id, version), *port_compares],
                              [Put(keys.SERVICES + record.id, record.dump()), *port_changes]):  # fmt: skip
            raise Conflict(f"update out of sequence: service {spec.name} changed since version {version}")
        return self.get(record.id)

    def remove(self, ref: str) -> None:
        """The record goes; the leader stops its tasks, and the VIPs are free."""
        record = self.get(ref)
        self.store.txn([], [Delete(keys.SERVICES + record.id), Delete(keys.SERVICE_NAMES + record.spec.name),
                            *(Delete(f"{keys.PORTS}{p.protocol}/{p.published}") for p in record.spec.ports)])
        for network_id, vip in record.networks.items():
            if vip:
                self.networks.release(network_id, vip)


def _task_part(spec: ServiceSpec) -> tuple:
    """What a task runs: a change here replaces the tasks; replicas and placement only move them."""
    return (spec.image, tuple(spec.args), tuple(spec.env), tuple(sorted(spec.container_labels.items())),
            bool(spec.ports))  # a task joins the ingress network or not


def task_record(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)
