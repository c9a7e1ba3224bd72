"""Docker Engine API shapes for the swarm and its nodes (moby's api/swagger.yaml: SwarmInfo, Swarm, Node)."""

from __future__ import annotations

import platform
from typing import Any

from boxnet.cluster.nodes import NodeStatus
from boxnet.cluster.swarm import Swarm
from boxnet.drivers import registry as drivers

SPEC_DEFAULTS = {
    "Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500, "ElectionTick": 10,
             "HeartbeatTick": 1},
    "Dispatcher": {"HeartbeatPeriod": 5000000000}, "CAConfig": {"NodeCertExpiry": 7776000000000000},
    "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False},
}  # fmt: skip


def ping_header(swarm: Swarm) -> str:
    if not swarm.active:
        return "inactive" if swarm.state.phase == "inactive" else "pending"
    return f"active/{swarm.state.role}"


def cluster_json(swarm: Swarm) -> dict[str, Any]:
    cluster, version = swarm.cluster()
    return {
        "ID": cluster["id"], "Version": {"Index": version}, "CreatedAt": cluster["created"],
        "UpdatedAt": cluster["created"], "Spec": SPEC_DEFAULTS,
        "TLSInfo": {"TrustRoot": cluster["ca"]}, "RootRotationInProgress": False,
        "DefaultAddrPool": cluster["default_addr_pool"], "SubnetSize": cluster["subnet_size"],
        "DataPathPort": cluster["data_path_port"],
    }  # fmt: skip


def swarm_json(swarm: Swarm) -> dict[str, Any]:
    return {**cluster_json(swarm), "JoinTokens": {"Worker": swarm.state.tokens.get("worker", ""),
                                                  "Manager": swarm.state.tokens.get("manager", "")}}  # fmt: skip


def info_json(swarm: Swarm) -> dict[str, Any]:
    state = swarm.state
    info: dict[str, Any] = {
        "NodeID": state.node_id, "NodeAddr": state.addr,
        "LocalNodeState": state.phase if state.phase in ("inactive", "active") else "pending",
        "ControlAvailable": swarm.is_manager, "Error": swarm.error, "RemoteManagers": None,
    }  # fmt: skip
    if swarm.is_manager and swarm.store is not None:
        try:
            nodes = swarm.nodes()
            info["Nodes"] = len(nodes)
            info["Managers"] = sum(1 for s in nodes if s.node.role == "manager")
            info["RemoteManagers"] = [{"NodeID": s.node.id, "Addr": f"{s.node.addr}:{state.port}"}
                                      for s in nodes if s.node.role == "manager"]  # fmt: skip
            info["Cluster"] = cluster_json(swarm)
        except Exception as exc:  # /info answers even with the store down, and says why
            info["Error"] = str(getattr(exc, "message", exc))
    return info


def node_json(status: NodeStatus, port: int) -> dict[str, Any]:
    node = status.node
    spec: dict[str, Any] = {"Labels": node.labels, "Role": node.role, "Availability": node.availability}
    if node.name:
        spec["Name"] = node.name
    answer: dict[str, Any] = {
        "ID": node.id, "Version": {"Index": status.version}, "CreatedAt": node.created, "UpdatedAt": node.updated,
        "Spec": spec,
        "Description": {
            "Hostname": node.hostname,
            "Platform": {"Architecture": platform.machine(), "OS": "linux"},
            "Resources": {"NanoCPUs": node.nano_cpus, "MemoryBytes": node.memory_bytes},
            "Engine": {"EngineVersion": node.engine_version, "Labels": {},
                       "Plugins": [{"Type": "Network", "Name": n} for n in drivers.names()]},
        },
        "Status": {"State": "ready" if status.alive else "down", "Addr": node.addr},
    }  # fmt: skip
    if node.role == "manager":
        manager: dict[str, Any] = {"Reachability": "reachable" if status.reachable and status.alive
                                   else "unreachable", "Addr": f"{node.addr}:{port}"}  # fmt: skip
        if status.leader:
            manager["Leader"] = True
        answer["ManagerStatus"] = manager
    return answer
