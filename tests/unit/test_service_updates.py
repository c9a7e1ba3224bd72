"""Rolling updates as the API takes them (UpdateConfig, RollbackConfig: what boxnet does, the rest refused by
name), rollback to the previous spec, and the CLI's durations."""

from __future__ import annotations

import pytest

from boxnet.api.service_routes import parse_spec, service_json
from boxnet.cli.service import parse_duration
from boxnet.cluster.networks import ClusterNetworks
from boxnet.errors import Conflict, InvalidArgument
from boxnet.services.records import ServiceRecords
from boxnet.store.cluster_memory import MemoryClusterStore


def body(**update: object) -> dict:
    return {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "host", "Args": ["sleep", "1d"]}},
            "UpdateConfig": {"Parallelism": 2, "Delay": 3_000_000_000, "FailureAction": "pause",
                             "Monitor": 500_000_000, "MaxFailureRatio": 0, "Order": "stop-first",
                             **update}}  # fmt: skip


def test_update_config_is_taken_or_refused_by_name() -> None:
    spec = parse_spec(body())
    assert (spec.update_parallelism, spec.update_delay, spec.update_monitor) == (2, 3.0, 0.5)
    assert spec.rollback_parallelism == 1  # no RollbackConfig: Docker's default
    for change, message in (({"FailureAction": "continue"}, "only pause"), ({"Order": "start-first"}, "stop-first"),
                            ({"MaxFailureRatio": 0.5}, "MaxFailureRatio"), ({"Parallelism": -1}, "Parallelism"),
                            ({"Colour": "red"}, "Colour")):  # fmt: skip
        with pytest.raises(InvalidArgument, match=message):
            parse_spec(body(**change))


def test_rollback_returns_to_the_previous_spec_and_says_so() -> None:
    store = MemoryClusterStore()
    services = ServiceRecords(store, ClusterNetworks(store, "m1"))
    record = services.create(parse_spec(body()), [])
    with pytest.raises(Conflict, match="no previous spec"):
        services.update("web", record.version, parse_spec(body()), rollback=True)
    changed = parse_spec(body())
    changed.args = ["sleep", "2d"]
    record = services.update("web", record.version, changed)
    assert record.task_version == 2 and record.previous is not None and record.previous.args == ["sleep", "1d"]
    record = services.update("web", record.version, changed, rollback=True)
    assert record.spec.args == ["sleep", "1d"] and record.previous.args == ["sleep", "2d"] and record.task_version == 3
    shown = service_json(record, {}, 0, 1)
    assert shown["UpdateStatus"]["State"] == "rollback_started"
    assert shown["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", "2d"]


def test_durations_as_the_docker_cli_takes_them() -> None:
    assert parse_duration("1m30s") == 90 * 10**9 and parse_duration("500ms") == 5 * 10**8
    assert parse_duration("1.5s") == 15 * 10**8
    for bad in ("10", "s", "5 s", "-1s"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad)
