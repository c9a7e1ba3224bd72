"""A service's life on a lab of three: pending while no node qualifies (and why), assigned once one does;
updates rolled in batches and rolled back; a node that leaves takes its tasks down and they run elsewhere."""

from __future__ import annotations

import time

from test_swarm import lab_factory, running_tasks, tasks_of, wait_for  # noqa: F401 - the fixture


def test_pending_until_a_node_qualifies_batches_rollback_and_a_node_that_leaves(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("lc", hosts=3)
    h1, h2, h3 = lab.hosts
    h1.cli("network", "create", "-d", "overlay", "n")
    h1.cli("service", "create", "--name", "gpu", "--replicas", "2", "--constraint", "node.labels.gpu==yes",
           "--network", "n", "host", "sleep", "600")  # fmt: skip
    pending = wait_for(lambda: [t for t in tasks_of(h1, "gpu") if t["Status"]["State"] == "pending"], 10)
    time.sleep(1)  # a few leader rounds: the pending tasks stay the same ones, on no node
    again = tasks_of(h1, "gpu")
    assert len(again) == 2 and {t["ID"] for t in again} == {t["ID"] for t in tasks_of(h1, "gpu")}
    assert all(t["NodeID"] == "" for t in again)
    assert pending[0]["Status"]["Err"] == "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    shown = h1.cli("service", "ps", "gpu").stdout
    assert "pending" in shown and "no suitable node" in shown
    h1.cli("node", "update", "--label-add", "gpu=yes", "lc-h3")
    wait_for(lambda: len(running_tasks(h1, "gpu")) == 2, 15)
    assert {t["ID"] for t in running_tasks(h1, "gpu")} == {t["ID"] for t in again}  # the same tasks, assigned
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in h1.client.get("/nodes")}
    assert {nodes[t["NodeID"]] for t in running_tasks(h1, "gpu")} == {"lc-h3"}

    # An update two tasks at a time, then a rollback to the spec before it.
    h1.cli("service", "create", "--name", "web", "--replicas", "4", "--network", "n", "host", "sleep", "601")
    wait_for(lambda: len(running_tasks(h1, "web")) == 4, 20)
    h1.cli("service", "update", "--update-parallelism", "2", "--env-add", "V=2", "web")
    in_flight = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = tasks_of(h1, "web")
        in_flight = max(in_flight, 4 - sum(t["Status"]["State"] == "running" for t in current))
        if [t["Status"]["State"] for t in tasks_of(h1, "web", up_to_date=True)] == ["running"] * 4:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the update did not finish")
    assert 1 <= in_flight <= 2, in_flight
    h1.cli("service", "rollback", "web")
    wait_for(lambda: [t["Status"]["State"] for t in tasks_of(h1, "web", up_to_date=True)] == ["running"] * 4, 30)
    assert all("V=2" not in t["Spec"]["ContainerSpec"]["Env"] for t in running_tasks(h1, "web"))
    inspected = h1.client.get("/services/web")
    assert inspected["UpdateStatus"]["State"] == "rollback_started" and "V=2" in str(inspected["PreviousSpec"])

    # A worker with tasks leaves: its task containers go with it, and the service runs them elsewhere.
    on_h2 = [t for t in running_tasks(h1, "web") if nodes[t["NodeID"]] == "lc-h2"]
    assert on_h2 and h2.cli("ps", "-q").stdout.split()
    h2.cli("swarm", "leave")
    assert h2.cli("ps", "-aq").stdout.split() == []
    wait_for(lambda: len(running_tasks(h1, "web")) == 4
             and "lc-h2" not in {nodes[t["NodeID"]] for t in running_tasks(h1, "web")}, 30)  # fmt: skip
    # A container a user put on a swarm network still holds a node back, by name.
    h3.cli("run", "-d", "--name", "mine", "--network", "n", "sleep", "600")
    refused = h3.cli("swarm", "leave", check=False)
    assert refused.returncode != 0 and "mine" in refused.stderr
