"""Service logs' pure parts: the details the docker CLI parses its prefix from, times and tails."""

from __future__ import annotations

import urllib.parse

import pytest

from boxnet.errors import InvalidArgument
from boxnet.services.logs import details, epoch, parse_tail


def test_details_carry_the_node_service_and_task_as_the_cli_parses_them() -> None:
    text = details({"node_id": "n1", "service_id": "s=1", "id": "t,1"})
    parsed = dict(pair.split("=", 1) for pair in text.split(","))  # as docker/cli's ParseLogDetails splits
    assert {k: urllib.parse.unquote(v) for k, v in parsed.items()} == {
        "com.docker.swarm.node.id": "n1", "com.docker.swarm.service.id": "s=1", "com.docker.swarm.task.id": "t,1"}


def test_entry_times_and_tails() -> None:
    assert epoch("1970-01-01T00:00:01.500000000Z") == 1.5
    assert epoch("2026-12-01T00:00:00Z") == 1796083200.0
    assert parse_tail("all") is None and parse_tail("") is None and parse_tail("0") == 0
    with pytest.raises(InvalidArgument, match="invalid tail"):
        parse_tail("-1")
