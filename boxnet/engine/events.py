"""The daemon's events, as Docker's /events gives them: what happened to which object, kept a while for
`since`, and handed to every follower as it happens.

An event is published after the change it tells of is done (a follower that reacts to "start" finds the
container running). Publishing never blocks on a follower: each reads the shared log at its own pace, and
one that falls more than the log's length behind is told so and ends, rather than holding memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from boxnet.errors import InvalidArgument
from boxnet.model.container import Container
from boxnet.model.names import labels_match

# Docker keeps the last 256 events for `since`; a few more here, as a swarm's tasks make many.
KEPT = 1024

TYPES = ("builder", "config", "container", "daemon", "image", "network", "node", "plugin", "secret", "service",
         "volume")  # fmt: skip
FILTER_KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope",
               "secret", "service", "type", "volume")  # fmt: skip
# Actions that carry a suffix after a colon ("exec_start: sh -c ..."): a filter naming them matches the prefix.
SUFFIXED_ACTIONS = ("exec_create", "exec_start", "health_status")


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    scope: str = "local"
    time_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {}
        if self.type in ("container", "image"):  # Docker's deprecated fields, which older clients read
            message = {"status": self.action, "id": self.actor_id}
            if self.type == "container":
                message["from"] = self.attributes.get("image", "")
        message.update({
            "Type": self.type, "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": self.scope, "time": self.time_ns // 1_000_000_000, "timeNano": self.time_ns,
        })  # fmt: skip
        return message


class EventFilter:
    """Docker's event filters (moby daemon/events/filter.go): every key given must match."""

    def __init__(self, filters: dict[str, list[str]]) -> None:
        for key in filters:
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"invalid filter {key!r}: one of {', '.join(FILTER_KEYS)}")
        for value in filters.get("type", []):
            if value not in TYPES:
                raise InvalidArgument(f"invalid filter 'type={value}': one of {', '.join(TYPES)}")
        for value in filters.get("scope", []):
            if value not in ("local", "swarm"):
                raise InvalidArgument(f"invalid filter 'scope={value}': local or swarm")
        self.filters = filters

    def _exact(self, key: str, *candidates: str) -> bool:
        wanted = self.filters.get(key)
        return not wanted or any(c in wanted for c in candidates if c)

    def _fuzzy(self, key: str, *candidates: str) -> bool:
        wanted = self.filters.get(key)
        return not wanted or any(c == w or c.startswith(w) for w in wanted for c in candidates if c)

    def _name(self, kind: str, event: Event) -> bool:
        return self._fuzzy(kind, event.actor_id, event.attributes.get("name", ""))

    def _action(self, event: Event) -> bool:
        wanted = self.filters.get("event")
        if not wanted:
            return True
        if any(w in SUFFIXED_ACTIONS for w in wanted):
            return any(event.action == w or event.action.startswith(w) for w in wanted)
        return event.action in wanted

    def _image(self, event: Event) -> bool:
        name = event.attributes.get("name" if event.type == "image" else "image", "")
        return self._exact("image", event.actor_id, name, _untagged(event.actor_id), _untagged(name))

    def matches(self, event: Event) -> bool:
        return (self._action(event) and self._exact("type", event.type) and self._exact("scope", event.scope)
                and all(self._name(kind, event) for kind in ("daemon", "container", "plugin", "volume", "network",
                                                             "node", "service", "secret", "config"))
                and self._image(event) and labels_match(event.attributes, self.filters.get("label", [])))  # fmt: skip


def container_attributes(container: Container, **extra: str) -> dict[str, str]:
    """What Docker puts in a container event's Actor.Attributes: its labels, image and name."""
    return {**container.labels, "image": container.image, "name": container.name, **extra}


def _untagged(reference: str) -> str:
    """An image reference without its tag (busybox:1.36 -> busybox); a registry's port stays."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    return reference[:colon] if colon > slash else reference


def parse_time(raw: str, name: str) -> int | None:
    """since/until as the docker CLI sends them: seconds since the epoch, with an optional fraction
    ("1700000000.123456789"); returned in nanoseconds."""
    if not raw:
        return None
    seconds, _, fraction = raw.partition(".")
    if not seconds.lstrip("-").isdigit() or (fraction and not fraction.isdigit()):
        raise InvalidArgument(f"invalid {name} {raw!r}: seconds since the epoch, as 1700000000.000000000")
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


class EventLog:
    """The last KEPT events and the followers' wake-up."""

    def __init__(self, kept: int = KEPT) -> None:
        self._events: deque[tuple[int, Event]] = deque(maxlen=kept)
        self._sequence = 0
        self._changed = threading.Condition()
        self.listeners: list[Callable[[Event], None]] = []

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None,
                scope: str = "local") -> Event:  # fmt: skip
        with self._changed:
            stamp = time.time_ns()
            if self._events and stamp <= self._events[-1][1].time_ns:
                stamp = self._events[-1][1].time_ns + 1  # strictly ordered, for since/until
            event = Event(type_, action, actor_id, dict(attributes or {}), scope, stamp)
            self._sequence += 1
            self._events.append((self._sequence, event))
            self._changed.notify_all()
        return event

    def follow(self, since_ns: int | None, until_ns: int | None, stopped: Callable[[], bool],
               poll: float = 0.5) -> Iterator[Event]:  # fmt: skip
        """The kept events from since (none without it), then each new one, until `until` passes or stopped()
        says the follower has gone."""
        with self._changed:
            if since_ns is None:
                position = self._sequence
            else:
                position = next((seq - 1 for seq, e in self._events if e.time_ns >= since_ns), self._sequence)
        while True:
            with self._changed:
                oldest = self._events[0][0] if self._events else self._sequence + 1
                position = max(position, oldest - 1)  # a follower that fell behind skips what was dropped
                ready = [e for seq, e in self._events if seq > position]
                position = self._sequence
                if not ready:
                    if until_ns is not None and time.time_ns() >= until_ns:
                        return
                    self._changed.wait(poll)
            for event in ready:
                if until_ns is not None and event.time_ns > until_ns:
                    return
                yield event
            if not ready and stopped():
                return
