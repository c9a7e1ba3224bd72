"""Where a service's tasks should run: a pure function of the service, the nodes and the tasks there are.

Replicated: slots 1..N, each on an eligible node (ready, active, matching the constraints), spread to the node
with the fewest of the service's tasks, then the fewest tasks at all. Global: one task on every eligible node.
A task on a node that is no longer eligible (down, drained, paused for new ones only, or no longer matching)
is stopped and its slot placed again; a task of an older spec is replaced, `parallelism` at a time, once the
others run (a rolling update). The leader applies the plan; nodes run what is assigned to them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from boxnet.model.service import NodeFacts, ServiceSpec

LIVE = ("new", "assigned", "starting", "running")


@dataclass(frozen=True)
class NodeView:
    facts: NodeFacts
    ready: bool
    availability: str  # active | pause | drain


@dataclass(frozen=True)
class TaskView:
    id: str
    slot: int  # 1..N for replicated services, 0 for global ones
    node_id: str
    spec_version: int
    state: str  # new | assigned | starting | running | complete | failed | shutdown | rejected

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass
class Plan:
    create: list[tuple[int, str]] = field(default_factory=list)  # (slot, node id)
    stop: list[str] = field(default_factory=list)  # task ids
    unplaceable: int = 0  # slots no eligible node can take


def eligible(spec: ServiceSpec, nodes: list[NodeView], for_new_tasks: bool) -> list[NodeView]:
    """Nodes that may run the service's tasks: ready, matching the constraints; active for new tasks (a
    paused node keeps its tasks and gets no new ones; a drained one keeps none)."""
    constraints = spec.placement()
    allowed = ("active",) if for_new_tasks else ("active", "pause")
    return [n for n in nodes if n.ready and n.availability in allowed and all(c.holds(n.facts) for c in constraints)]


def plan(spec: ServiceSpec, spec_version: int, nodes: list[NodeView], tasks: list[TaskView],
         parallelism: int = 1, load: Counter | None = None) -> Plan:  # fmt: skip
    """load: tasks per node of every service, to spread across services too."""
    result = Plan()
    keep_on = {n.facts.id for n in eligible(spec, nodes, for_new_tasks=False)}
    place_on = eligible(spec, nodes, for_new_tasks=True)
    live = [t for t in tasks if t.live]
    for task in live:
        if task.node_id not in keep_on:
            result.stop.append(task.id)
    kept = [t for t in live if t.id not in result.stop]
    if spec.mode == "global":
        covered = {t.node_id for t in kept}
        for node in place_on:
            if node.facts.id not in covered:
                result.create.append((0, node.facts.id))
        for task in _duplicates_per_node(kept):
            result.stop.append(task.id)
    else:
        by_slot: dict[int, list[TaskView]] = {}
        for task in kept:
            by_slot.setdefault(task.slot, []).append(task)
        for slot, slot_tasks in by_slot.items():
            extra = slot_tasks[1:] if slot <= spec.replicas else slot_tasks
            result.stop += [t.id for t in extra]
        mine = Counter(t.node_id for t in kept if t.id not in result.stop)
        total = Counter(load or {})
        for slot in range(1, spec.replicas + 1):
            if slot in by_slot and by_slot[slot][0].id not in result.stop:
                continue
            if not place_on:
                result.unplaceable += 1
                continue
            node = min(place_on, key=lambda n: (mine[n.facts.id], total[n.facts.id], n.facts.id))
            result.create.append((slot, node.facts.id))
            mine[node.facts.id] += 1
            total[node.facts.id] += 1
    _roll(result, [t for t in kept if t.id not in result.stop], spec_version, parallelism)
    return result


def _duplicates_per_node(tasks: list[TaskView]) -> list[TaskView]:
    seen: set[str] = set()
    extra = []
    for task in sorted(tasks, key=lambda t: (t.state != "running", t.id)):
        if task.node_id in seen:
            extra.append(task)
        seen.add(task.node_id)
    return extra


def _roll(result: Plan, current: list[TaskView], spec_version: int, parallelism: int) -> None:
    """Replaces tasks of an older spec, `parallelism` at a time, and only while nothing else is in flight."""
    if result.create or result.stop:
        return
    if any(t.state != "running" for t in current):
        return
    outdated = sorted((t for t in current if t.spec_version < spec_version), key=lambda t: (t.slot, t.id))
    for task in outdated[:parallelism]:
        result.stop.append(task.id)
        result.create.append((task.slot, task.node_id))
