"""Names and identifiers: Docker's rules for object names, and the kernel's for interface names."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import TypeVar

from boxnet.errors import Conflict, InvalidArgument, NotFound

T = TypeVar("T")

# Docker's rule for container and network names.
_OBJECT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# IFNAMSIZ is 16 including the terminating NUL.
MAX_IFNAME = 15
_IFNAME_FORBIDDEN = re.compile(r"[\s/:]")
_LABEL_KEY = re.compile(r"^[^=\s\x00-\x1f\x7f]+$")


def new_id() -> str:
    return secrets.token_hex(32)


def short_id(full_id: str) -> str:
    return full_id[:12]


def check_object_name(kind: str, name: str) -> str:
    if not name or not _OBJECT_NAME.match(name):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if len(name) > 128:
        raise InvalidArgument(f"invalid {kind} name {name!r}: longer than 128 characters")
    return name


def check_ifname(name: str, what: str = "interface name") -> str:
    if not name or name in (".", ".."):
        raise InvalidArgument(f"invalid {what} {name!r}")
    if len(name) > MAX_IFNAME:
        raise InvalidArgument(
            f"{what} {name!r} is {len(name)} characters long; the kernel allows at most {MAX_IFNAME}"
        )
    if _IFNAME_FORBIDDEN.search(name):
        raise InvalidArgument(f"invalid {what} {name!r}: no spaces, '/' or ':' allowed")
    return name


def resolve_ref(candidates: list[T], ref: str, kind: str, ident: Callable[[T], str],
                name: Callable[[T], str]) -> T:  # fmt: skip
    """Docker's way to find a swarm object: by full ID, by name, then by a unique ID prefix."""
    for match in (lambda c: ident(c) == ref, lambda c: name(c) == ref, lambda c: ident(c).startswith(ref)):
        found = [c for c in candidates if match(c)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Conflict(f"{kind} {ref} is ambiguous ({len(found)} matches)")
    raise NotFound(f"{kind} {ref} not found")


def parse_key_values(kind: str, items: list[str] | dict[str, str] | None) -> dict[str, str]:
    """Parses K=V strings (labels, options, environment) into a dict, rejecting malformed ones."""
    if items is None:
        return {}
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep and kind != "label":
                raise InvalidArgument(f"invalid {kind} {item!r}: expected KEY=VALUE")
            pairs.append((key, value))
    result: dict[str, str] = {}
    for key, value in pairs:
        if not key or not _LABEL_KEY.match(key):
            raise InvalidArgument(f"invalid {kind} key {key!r}")
        result[key] = str(value)
    return result


def labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's label filter: every KEY is among labels, and each KEY=VALUE has that value."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True
