"""Events without a daemon: Docker's filters, since/until, the log's followers, the CLI's times and lines."""

from __future__ import annotations

import threading
import time

import pytest

from boxnet.cli.monitor import docker_time, event_line
from boxnet.engine.events import Event, EventFilter, EventLog, parse_time
from boxnet.errors import InvalidArgument


def event(type_: str = "container", action: str = "start", actor: str = "abc123", **attributes: str) -> Event:
    return Event(type_, action, actor, attributes, "local", 1_700_000_000_123_456_789)


def test_filters_follow_docker() -> None:
    started = event(name="web", image="nginx:1.25", team="blue")
    assert EventFilter({}).matches(started)
    assert EventFilter({"container": ["web"]}).matches(started)
    assert EventFilter({"container": ["abc"]}).matches(started)  # an id prefix
    assert not EventFilter({"container": ["db"]}).matches(started)
    assert EventFilter({"image": ["nginx"]}).matches(started)  # untagged matches every tag
    assert not EventFilter({"image": ["ngin"]}).matches(started)
    assert EventFilter({"event": ["start", "die"], "type": ["container"]}).matches(started)
    assert not EventFilter({"event": ["die"]}).matches(started)
    assert EventFilter({"label": ["team=blue"]}).matches(started)
    assert not EventFilter({"label": ["team=red"]}).matches(started)
    assert EventFilter({"event": ["exec_start"]}).matches(event(action="exec_start: sh -c true"))
    assert not EventFilter({"type": ["network"]}).matches(started)


@pytest.mark.parametrize("filters", [{"colour": ["blue"]}, {"type": ["box"]}, {"scope": ["galaxy"]}])
def test_unknown_filters_are_refused_by_name(filters: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(filters.values()))[0] if "type" in filters or "scope"
                       in filters else "colour"):  # fmt: skip
        EventFilter(filters)


def test_docker_json_has_the_old_fields_for_containers_only() -> None:
    message = event(image="busybox").to_json()
    assert message["status"] == "start" and message["id"] == "abc123" and message["from"] == "busybox"
    assert message["time"] == 1_700_000_000 and message["timeNano"] == 1_700_000_000_123_456_789
    assert "status" not in event("network", "create").to_json()


def test_times() -> None:
    assert parse_time("1700000000.5", "since") == 1_700_000_000_500_000_000
    assert parse_time("", "since") is None
    with pytest.raises(InvalidArgument, match="invalid until"):
        parse_time("1h", "until")
    assert docker_time("10m", now=1000.0) == "400.000000000"
    assert docker_time("1h30m", now=10000.0) == "4600.000000000"
    assert docker_time("1700000000.25") == "1700000000.25"
    assert docker_time("2023-11-14T22:13:20Z") == "1700000000.000000000"
    with pytest.raises(InvalidArgument, match="invalid time"):
        docker_time("10 minutes")


def test_event_line_as_the_docker_cli_prints_it() -> None:
    line = event(name="web", image="busybox").to_json()
    text = event_line(line)
    assert text.split(" ", 1)[1] == "container start abc123 (image=busybox, name=web)"
    assert ".123456789" in text.split(" ")[0]


def test_followers_get_what_comes_and_since_replays() -> None:
    log = EventLog(kept=4)
    first = log.publish("container", "create", "a")
    for action in ("start", "kill", "die", "destroy"):
        log.publish("container", action, "a")
    # only the last four are kept: since before them all starts at the oldest kept
    replay = list(log.follow(0, log.publish("container", "x", "a").time_ns, lambda: True, poll=0.01))
    assert [e.action for e in replay] == ["kill", "die", "destroy", "x"] and first.time_ns < replay[0].time_ns
    gone = threading.Event()
    seen: list[str] = []
    mark = time.time_ns()  # the follower may start after the publishes below: since makes it see them

    def follow() -> None:
        for item in log.follow(mark, None, gone.is_set, poll=0.01):
            seen.append(item.action)
            if item.action == "last":
                gone.set()

    follower = threading.Thread(target=follow)
    follower.start()
    log.publish("network", "create", "n")
    log.publish("network", "last", "n")
    follower.join(5)
    assert not follower.is_alive() and seen == ["create", "last"]
