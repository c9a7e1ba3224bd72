"""The scheduler's plans: spreading, constraints, global services, failures, drains and rolling updates."""

from __future__ import annotations

from collections import Counter

import pytest

from boxnet.errors import InvalidArgument
from boxnet.model.service import Constraint, NodeFacts, ServiceSpec
from boxnet.services.scheduler import UNASSIGNED, NodeView, TaskView, plan, why_pending


def nodes(*specs: tuple[str, str, bool, str]) -> list[NodeView]:
    return [NodeView(NodeFacts(i, host, role, {"zone": i[-1]}), ready, "active") for i, host, ready, role in
            [(f"n{k}", s[0], s[2], s[1]) for k, s in enumerate(specs, start=1)]]  # fmt: skip


THREE = nodes(("node1", "manager", True, ""), ("node2", "worker", True, ""), ("node3", "worker", True, ""))


def apply(current: list[TaskView], result, version: int = 1) -> list[TaskView]:
    kept = [t for t in current if t.id not in result.stop]
    made = [TaskView(f"t{len(current) + i}", slot, node, version, "running") for i, (slot, node) in
            enumerate(result.create)]  # fmt: skip
    return kept + made


def test_replicas_spread_over_eligible_nodes() -> None:
    spec = ServiceSpec("web", "img", replicas=5)
    result = plan(spec, 1, THREE, [])
    assert sorted(s for s, _ in result.create) == [1, 2, 3, 4, 5]
    assert sorted(Counter(n for _, n in result.create).values()) == [1, 2, 2]
    tasks = apply([], result)
    assert plan(spec, 1, THREE, tasks).create == [] and plan(spec, 1, THREE, tasks).stop == []
    fewer = plan(ServiceSpec("web", "img", replicas=2), 1, THREE, tasks)
    assert len(fewer.stop) == 3 and not fewer.create


def test_constraints_place_and_refuse_nothing_silently() -> None:
    spec = ServiceSpec("web", "img", replicas=4, constraints=["node.hostname!=node1"])
    result = plan(spec, 1, THREE, [])
    assert {n for _, n in result.create} == {"n2", "n3"}
    nowhere = plan(ServiceSpec("web", "img", replicas=2, constraints=["node.labels.zone==9"]), 1, THREE, [])
    assert nowhere.create == [(1, UNASSIGNED), (2, UNASSIGNED)] and nowhere.unplaceable == 2  # pending tasks
    managers = plan(ServiceSpec("m", "img", mode="global", constraints=["node.role==manager"]), 1, THREE, [])
    assert managers.create == [(0, "n1")]
    for bad in ("node.hostname=x", "engine.labels.os==linux", "node.role==boss", "node.id"):
        with pytest.raises(InvalidArgument):
            Constraint.parse(bad)
    assert Constraint.parse(" node.labels.zone == 2 ").holds(THREE[1].facts)


def test_global_runs_one_task_per_eligible_node_including_new_ones() -> None:
    spec = ServiceSpec("debug", "img", mode="global")
    tasks = apply([], plan(spec, 1, THREE, []))
    assert sorted(t.node_id for t in tasks) == ["n1", "n2", "n3"]
    grown = [*THREE, NodeView(NodeFacts("n4", "node4", "worker"), True, "active")]
    assert plan(spec, 1, grown, tasks).create == [(0, "n4")]


def test_tasks_on_dead_or_drained_nodes_move_and_paused_nodes_keep_theirs() -> None:
    spec = ServiceSpec("web", "img", replicas=3)
    tasks = apply([], plan(spec, 1, THREE, []))
    on_n2 = [t.id for t in tasks if t.node_id == "n2"]
    dead = [THREE[0], NodeView(THREE[1].facts, False, "active"), THREE[2]]
    moved = plan(spec, 1, dead, tasks)
    assert moved.stop == on_n2 and all(node != "n2" for _, node in moved.create) and len(moved.create) == 1
    drained = [THREE[0], NodeView(THREE[1].facts, True, "drain"), THREE[2]]
    assert plan(spec, 1, drained, tasks).stop == on_n2
    paused = [THREE[0], NodeView(THREE[1].facts, True, "pause"), THREE[2]]
    assert plan(spec, 1, paused, tasks).stop == []
    failed = [TaskView(t.id, t.slot, t.node_id, 1, "failed" if t.slot == 1 else "running") for t in tasks]
    again = plan(spec, 1, THREE, failed)
    assert [slot for slot, _ in again.create] == [1] and again.stop == []


def test_a_new_spec_rolls_one_task_at_a_time() -> None:
    spec = ServiceSpec("web", "img", replicas=3)
    tasks = apply([], plan(spec, 1, THREE, []))
    first = plan(spec, 2, THREE, tasks)
    assert len(first.stop) == 1 and len(first.create) == 1
    tasks = apply(tasks, first, version=2)
    starting = [TaskView(t.id, t.slot, t.node_id, t.spec_version, "starting" if t.spec_version == 2 else "running")
                for t in tasks]  # fmt: skip
    assert plan(spec, 2, THREE, starting).stop == []  # the new one is not running yet: wait
    for _ in range(2):
        tasks = apply(tasks, plan(spec, 2, THREE, tasks), version=2)
    assert {t.spec_version for t in tasks} == {2} and len(tasks) == 3


def test_service_spec_validation() -> None:
    ServiceSpec("web", "img", replicas=2, constraints=["node.role==worker"]).validate()
    for spec, message in [
        (ServiceSpec("web", ""), "needs an image"),
        (ServiceSpec("web", "img", mode="daemonset"), "service mode"),
        (ServiceSpec("web", "img", endpoint_mode="rr"), "endpoint mode"),
        (ServiceSpec("web", "img", replicas=-1), "replicas"),
        (ServiceSpec("bad name", "img"), "invalid service name"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            spec.validate()
    again = ServiceSpec.from_dict(ServiceSpec("w", "i", constraints=["node.id==x"]).to_dict())
    assert again.constraints == ["node.id==x"]


def test_vip_rules_are_rendered_from_validated_values() -> None:
    from boxnet.services import vip

    service = vip.VipService("a" * 25, "10.0.1.100", ("10.0.1.7", "10.0.1.5"))
    commands = vip.set_backends(service)
    assert "add element ip boxnet_vip be-aaaaaaaaaaaa { 0 : 10.0.1.5, 1 : 10.0.1.7 }" in commands
    assert commands[-1] == "add element ip boxnet_vip vips { 10.0.1.100 : jump svc-aaaaaaaaaaaa }"
    assert not any("dnat" in c for c in vip.set_backends(vip.VipService("a" * 25, "10.0.1.100", ())))
    for bad in (("x; flush ruleset", "10.0.1.1", ()), ("a" * 25, "fd00::1", ()), ("a" * 25, "10.0.1.1", ("1.2.3",))):
        with pytest.raises(ValueError):
            vip.VipService(*bad)


def test_a_pending_task_keeps_its_slot_says_why_and_is_assigned_when_a_node_qualifies() -> None:
    spec = ServiceSpec("web", "img", replicas=2, constraints=["node.labels.zone==4"])
    pending = [TaskView("p1", 1, UNASSIGNED, 1, "pending"), TaskView("p2", 2, UNASSIGNED, 1, "pending")]
    again = plan(spec, 1, THREE, pending)
    assert (again.create, again.stop, again.assign) == ([], [], [])  # no churn while nothing qualifies
    assert why_pending(spec, THREE) == "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    drained = [NodeView(n.facts, n.ready, "drain") for n in THREE[:1]] + THREE[1:]
    assert why_pending(spec, drained) == ("no suitable node (1 node not available for new tasks; scheduling "
                                          "constraints not satisfied on 2 nodes)")  # fmt: skip
    fourth = nodes(("node1", "manager", True, ""), ("node2", "worker", True, ""), ("node3", "worker", True, ""),
                   ("node4", "worker", True, ""))  # fmt: skip
    placed = plan(spec, 1, fourth, pending)
    assert placed.assign == [("p1", "n4"), ("p2", "n4")] and placed.create == [] and placed.stop == []
    # Scaled down while pending: the extra pending task goes.
    assert plan(ServiceSpec("web", "img", replicas=1, constraints=spec.constraints), 1, THREE, pending).stop == ["p2"]


def test_update_parallelism_and_delay() -> None:
    spec = ServiceSpec("web", "img", replicas=3)
    tasks = [TaskView(f"t{i}", i, f"n{i}", 1, "running", 100.0) for i in (1, 2, 3)]
    assert len(plan(spec, 2, THREE, tasks, parallelism=0).stop) == 3  # all at once
    assert len(plan(spec, 2, THREE, tasks, parallelism=2).stop) == 2
    fresh = [*tasks[:2], TaskView("t9", 3, "n3", 2, "running", 1.0)]
    assert plan(spec, 2, THREE, fresh, delay=5).stop == []  # the last batch has run 1 s of the 5 s delay
    assert plan(spec, 2, THREE, fresh, delay=0.5).stop == ["t1"]
