"""Where a service's tasks should run: a pure function of the service, the nodes and the tasks there are.

Replicated: slots 1..N, each on an eligible node (ready, active, matching the constraints), spread to the node
with the fewest of the service's tasks, then the fewest tasks at all. Global: one task on every eligible node.
A task on a node that is no longer eligible (down, drained, paused for new ones only, or no longer matching)
is stopped and its slot placed again; a task of an older spec is replaced, `parallelism` at a time, once the
others have run for `delay` seconds (a rolling update). A slot no node can take gets a pending task, on no
node, which keeps the slot (and says why) until a node qualifies and it is assigned there, as Docker's do.
The leader applies the plan; nodes run what is assigned to them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from boxnet.model.service import NodeFacts, ServiceSpec

LIVE = ("pending", "new", "assigned", "preparing", "starting", "running")  # preparing: its node pulls the image
UNASSIGNED = ""  # a pending task's node


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
    state: str  # pending | new | assigned | starting | running | complete | failed | shutdown | rejected
    running_for: float = 0.0  # seconds since a running task was seen running

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def pending(self) -> bool:
        return self.node_id == UNASSIGNED


@dataclass
class Plan:
    create: list[tuple[int, str]] = field(default_factory=list)  # (slot, node id; UNASSIGNED: pending)
    stop: list[str] = field(default_factory=list)  # task ids
    assign: list[tuple[str, str]] = field(default_factory=list)  # (pending task id, the node it goes to)
    unplaceable: int = 0  # slots no eligible node can take


def eligible(spec: ServiceSpec, nodes: list[NodeView], for_new_tasks: bool) -> list[NodeView]:
    """Nodes that may run the service's tasks: ready, matching the constraints; active for new tasks (a
    paused node keeps its tasks and gets no new ones; a drained one keeps none)."""
    constraints = spec.placement()
    allowed = ("active",) if for_new_tasks else ("active", "pause")
    return [n for n in nodes if n.ready and n.availability in allowed and all(c.holds(n.facts) for c in constraints)]


def why_pending(spec: ServiceSpec, nodes: list[NodeView]) -> str:
    """Docker's words for a task no node can take, with how many nodes fail which test."""
    constraints = spec.placement()
    down = sum(not n.ready or n.availability != "active" for n in nodes)
    unmatched = sum(n.ready and n.availability == "active" and not all(c.holds(n.facts) for c in constraints)
                    for n in nodes)  # fmt: skip
    reasons = [f"{down} node{'s' * (down != 1)} not available for new tasks"] if down else []
    if unmatched:
        reasons.append(f"scheduling constraints not satisfied on {unmatched} node{'s' * (unmatched != 1)}")
    return f"no suitable node ({'; '.join(reasons) or 'no nodes'})"


def plan(spec: ServiceSpec, spec_version: int, nodes: list[NodeView], tasks: list[TaskView],
         parallelism: int = 1, load: Counter | None = None, delay: float = 0.0) -> Plan:  # fmt: skip
    """load: tasks per node of every service, to spread across services too. parallelism 0: every task at once."""
    result = Plan()
    keep_on = {n.facts.id for n in eligible(spec, nodes, for_new_tasks=False)}
    place_on = eligible(spec, nodes, for_new_tasks=True)
    live = [t for t in tasks if t.live]
    for task in live:
        if task.node_id not in keep_on and not (task.pending and spec.mode == "replicated"):
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
        mine = Counter(t.node_id for t in kept if t.id not in result.stop and not t.pending)
        total = Counter(load or {})
        for slot in range(1, spec.replicas + 1):
            holder = by_slot[slot][0] if slot in by_slot and by_slot[slot][0].id not in result.stop else None
            if holder is not None and not holder.pending:
                continue
            if not place_on:
                result.unplaceable += 1
                if holder is None:
                    result.create.append((slot, UNASSIGNED))
                continue
            node = min(place_on, key=lambda n: (mine[n.facts.id], total[n.facts.id], n.facts.id))
            if holder is not None:
                result.assign.append((holder.id, node.facts.id))
            else:
                result.create.append((slot, node.facts.id))
            mine[node.facts.id] += 1
            total[node.facts.id] += 1
    _roll(result, [t for t in kept if t.id not in result.stop], spec_version, parallelism, delay)
    return result


def _duplicates_per_node(tasks: list[TaskView]) -> list[TaskView]:
    seen: set[str] = set()
    extra = []
    for task in sorted(tasks, key=lambda t: (t.state != "running", t.id)):
        if task.node_id in seen:
            extra.append(task)
        seen.add(task.node_id)
    return extra


def _roll(result: Plan, current: list[TaskView], spec_version: int, parallelism: int, delay: float) -> None:
    """Replaces tasks of an older spec, `parallelism` at a time (0: all), only while nothing else is in flight
    and once the last batch has run for `delay` seconds."""
    if result.create or result.stop or result.assign:
        return
    if any(t.state != "running" for t in current):
        return
    if any(t.spec_version == spec_version and t.running_for < delay for t in current):
        return
    outdated = sorted((t for t in current if t.spec_version < spec_version), key=lambda t: (t.slot, t.id))
    for task in outdated[:parallelism or len(outdated)]:
        result.stop.append(task.id)
        result.create.append((task.slot, task.node_id))
