"""Each node's agent: runs the tasks the leader assigned to it as containers, and reports what it sees.

Each round it makes the node's task containers equal to its desired tasks: a task without a container gets
one (named and labelled as Docker names and labels them), a container whose task is gone is removed, and
each task's state (running, failed with its exit code, rejected with the reason) goes to `status/<task>`,
which only this node writes.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

from boxnet.cluster import keys
from boxnet.engine.container_requests import ContainerRequest
from boxnet.engine.images import is_builtin
from boxnet.errors import BoxnetError, NotFound
from boxnet.images.reference import parse
from boxnet.model.container import Container
from boxnet.model.service import TASK_LABEL, task_spec
from boxnet.services.records import ServiceRecord, ServicesState, now
from boxnet.store.cluster import ClusterStore

if TYPE_CHECKING:
    from boxnet.engine.controller import Engine

log = logging.getLogger(__name__)



def task_name(service: str, task: dict) -> str:
    """Docker's: SERVICE.SLOT.TASKID, or SERVICE.NODEID.TASKID for a global service."""
    return f"{service}.{task['slot'] or task['node_id']}.{task['id']}"


def request_for(service: ServiceRecord, task: dict, network_names: dict[str, str], ingress: str = ""
                ) -> ContainerRequest:  # fmt: skip
    """ingress: the ingress network's name, which a task of a service that publishes ports joins last (no
    names there: only the routing mesh addresses it)."""
    spec = service.spec
    name = task_name(spec.name, task)
    aliases = [f"tasks.{spec.name}"] + ([spec.name] if spec.endpoint_mode == "dnsrr" else [])
    networks: dict[str, dict] = {network_names[n]: {"aliases": aliases} for n in service.networks}
    if ingress:
        networks[ingress] = {}
    own = task.get("spec") or task_spec(spec)  # the task's own (tasks made before it was recorded: the service's)
    labels = {**own["container_labels"], "com.docker.swarm.service.name": spec.name,
              "com.docker.swarm.service.id": service.id, TASK_LABEL: task["id"], "com.docker.swarm.task.name": name,
              "com.docker.swarm.node.id": task["node_id"]}  # fmt: skip
    return ContainerRequest(name=name, image=own["image"], cmd=list(own["args"]), env=list(own["env"]), labels=labels,
                            network_mode=next(iter(networks), "bridge"), networks=networks)  # fmt: skip


class TaskAgent:
    def __init__(self, engine: Engine, store: ClusterStore, node_id: str,
                 stopping: threading.Event | None = None) -> None:  # fmt: skip
        self.engine = engine
        # Set as the daemon shuts down: a task started then would outlive it untracked by any agent.
        self.stopping = stopping or threading.Event()
        self.store = store
        self.node_id = node_id
        self._reported: dict[str, str] = {}  # task id -> the last status written
        # Images being pulled for tasks, and the errors of pulls that failed (until a task is rejected with it).
        self._pulls: set[str] = set()
        self._pull_failures: dict[str, BoxnetError] = {}
        self._pulls_lock = threading.Lock()

    def _local_tasks(self) -> dict[str, Container]:
        return {c.labels[TASK_LABEL]: c for c in self.engine.registry.containers.values() if TASK_LABEL in c.labels}

    def reconcile(self, state: ServicesState) -> None:
        mine = {task_id: task for task_id, task in state.tasks.items() if task["node_id"] == self.node_id}
        local = self._local_tasks()
        for task_id, container in local.items():
            if task_id not in mine:
                self._remove(task_id, container)
        services = {r.id: r for r in state.services}
        for task_id, task in mine.items():
            container = local.get(task_id)
            if container is None:
                service = services.get(task["service_id"])
                if service is not None and not self.stopping.is_set():
                    self._run_task(service, task)
                continue
            self._report(task_id, container)

    def _run_task(self, service: ServiceRecord, task: dict) -> None:
        names = {n.id: n.name for n in self.engine.registry.networks.values()}
        ingress = next((n.name for n in self.engine.registry.networks.values() if n.ingress), "")
        if [n for n in service.networks if n not in names] or (service.spec.ports and not ingress):
            return  # a network is not realized here yet: next round
        try:
            if not self._image_ready(task["id"], service.spec.image):
                return  # being pulled: a later round creates the task
            container = self.engine.containers.create(request_for(service, task, names,
                                                                  ingress if service.spec.ports else ""))
            self.engine.containers.start(container.id)
        except BoxnetError as exc:
            log.warning("task %s of %s: %s", task["id"], service.spec.name, exc.message)
            self._write(task["id"], {"state": "rejected", "message": exc.message})
            return
        self._report(task["id"], self.engine.registry.containers[container.id])

    def _image_ready(self, task_id: str, image: str) -> bool:
        """Whether the task's image is on this node; if not, a pull of it starts in the background (the
        agent's round goes on: other tasks, and the services' endpoints, do not wait for a download), as
        Docker's agents pull, anonymously (credentials are not passed to the nodes). A pull that failed
        raises its error once, which rejects the task."""
        if is_builtin(image) or image.startswith("/"):
            return True
        with self._pulls_lock:
            failure = self._pull_failures.pop(image, None)
            if failure is not None:
                raise failure
            if image in self._pulls:
                return False
            try:
                self.engine.images.find(image)
                return True
            except NotFound:
                pass
            self._pulls.add(image)
        self._write(task_id, {"state": "preparing", "message": f"pulling {image}"})
        threading.Thread(target=self._pull, args=(image,), name=f"pull {image}", daemon=True).start()
        return False

    def _pull(self, image: str) -> None:
        try:
            for _ in self.engine.images.pull(parse(image)):
                if self.stopping.is_set():
                    break
        except BoxnetError as exc:
            with self._pulls_lock:
                self._pull_failures[image] = exc
        finally:
            with self._pulls_lock:
                self._pulls.discard(image)

    def _report(self, task_id: str, container: Container) -> None:
        state = container.state
        if state.status == "running":
            observed = {"state": "running", "container": container.id,
                        "addresses": {n: e.address(4) for n, e in container.endpoints.items()}}  # fmt: skip
        elif state.status in ("exited", "created"):
            observed = {"state": "complete" if state.exit_code == 0 and state.status == "exited" else "failed",
                        "container": container.id, "exit_code": state.exit_code, "message": state.error}  # fmt: skip
        else:
            observed = {"state": "starting", "container": container.id}
        self._write(task_id, observed)

    def _write(self, task_id: str, observed: dict) -> None:
        text = json.dumps({**observed, "node_id": self.node_id}, sort_keys=True)
        if self._reported.get(task_id) == text:
            return
        self.store.put(keys.STATUS + task_id, json.dumps({**observed, "node_id": self.node_id, "timestamp": now()},
                                                         sort_keys=True))  # fmt: skip
        self._reported[task_id] = text

    def _remove(self, task_id: str, container: Container) -> None:
        try:
            self.engine.containers.remove(container.id, force=True)
        except BoxnetError as exc:
            log.warning("removing task %s's container: %s", task_id, exc.message)
            return
        self.store.delete(keys.STATUS + task_id)
        self._reported.pop(task_id, None)
