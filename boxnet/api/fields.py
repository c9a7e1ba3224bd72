"""Typed reading of JSON request bodies: every value is checked for its type as it is read, and an error
names the field by its path (`HostConfig.Memory must be an integer, not "64m"`), so that bad input is a 400,
never a traceback.

Clients send every field they know, most at their zero value (the docker CLI sends about seventy keys for a
plain `docker run`); `refuse_set` tells "left alone" from "asked for", so that what boxnet does not do is
refused by name only when someone actually asked for it.
"""

from __future__ import annotations

from typing import Any

from boxnet.errors import InvalidArgument

_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", list: "a list", dict: "an object"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def is_unset(value: Any) -> bool:
    """A zero value, as clients send for what they were not asked for."""
    return value is None or (isinstance(value, (str, int, float, list, dict)) and not value)


class Fields:
    """A JSON object being read, with the path it sits at."""

    def __init__(self, data: Any, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path or 'the request body'} must be an object, not {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _typed(self, key: str, kind: type, default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgument(f"{self.name(key)} must be {_TYPE_NAMES[kind]}, not {_kind(value)}")
        return value

    def str(self, key: str, default: str = "") -> str:
        return self._typed(key, str, default)

    def bool(self, key: str, default: bool = False) -> bool:
        return self._typed(key, bool, default)

    def int(self, key: str, default: int = 0, low: int | None = None, high: int | None = None) -> int:
        value = self._typed(key, int, default)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"from {low}" if high is None else f"up to {high}" if low is None else f"from {low} to {high}"
            raise InvalidArgument(f"{self.name(key)} must be {bounds}, not {value}")
        return value

    def object(self, key: str) -> Fields:
        return Fields(self.data.get(key), self.name(key))

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self.name(key)}[{i}]") for i, item in enumerate(self._typed(key, list, []))]

    def strings(self, key: str, *, or_string: bool = False) -> list[str]:
        """A list of strings (or, with or_string, a single string standing for a list of one)."""
        value = self.data.get(key)
        if or_string and isinstance(value, str):
            return [value]
        items = self._typed(key, list, [])
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidArgument(f"{self.name(key)}[{index}] must be a string, not {_kind(item)}")
        return list(items)

    def string_map(self, key: str) -> dict[str, str]:
        """An object of string values (labels, options, sysctls)."""
        value = self._typed(key, dict, {})
        for name, item in value.items():
            if not isinstance(item, str):
                raise InvalidArgument(f"{self.name(key)}.{name} must be a string, not {_kind(item)}")
        return dict(value)

    def refuse_set(self, reasons: dict[str, str]) -> None:
        """Refuses each of these keys that carries more than a zero value, with the reason given."""
        for key, reason in reasons.items():
            if not is_unset(self.data.get(key)):
                raise InvalidArgument(f"{self.name(key)} is not supported: {reason}")

    def refuse_unknown(self, known: set[str] | frozenset[str], *, unless_unset: bool = True) -> None:
        """Refuses keys this server does not know; with unless_unset, only those that carry a value (clients
        newer than this server send their new fields at zero)."""
        for key in sorted(set(self.data) - set(known)):
            if not unless_unset or not is_unset(self.data[key]):
                raise InvalidArgument(f"unknown field {self.name(key)}")
