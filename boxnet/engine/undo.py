"""An undo stack: each step that changed something registers how to take it back; on failure, unwind."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class UndoStack:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, undo: Callable[[], object]) -> None:
        self._steps.append((what, undo))

    def unwind(self) -> list[str]:
        """Runs every undo step in reverse order, whatever fails; returns the failures."""
        failures = []
        while self._steps:
            what, undo = self._steps.pop()
            try:
                undo()
            except Exception as exc:  # the remaining steps must still run
                log.warning("undo %s failed: %s", what, exc)
                failures.append(f"{what}: {exc}")
        return failures

    def __enter__(self) -> UndoStack:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.unwind()
