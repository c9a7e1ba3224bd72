"""The store protocol: get, put with compare-and-swap, delete, list by prefix."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    def get(self, key: str) -> tuple[str, int] | None:
        """The value and its revision, or None."""

    def put(self, key: str, value: str, expect_revision: int | None = None) -> int:
        """Writes value; with expect_revision, only if the key is still at that revision (0: absent).
        Returns the new revision; raises Conflict when the expectation fails."""

    def delete(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[tuple[str, str]]: ...

    def close(self) -> None: ...
