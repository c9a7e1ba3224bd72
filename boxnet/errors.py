"""Error categories shared by the engine, the API and the CLI.

Each category maps to one HTTP status (the Docker Engine API's) and one CLI exit code, so a failure reads
the same whichever interface reported it.
"""

from __future__ import annotations


class BoxnetError(Exception):
    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(BoxnetError):
    http_status = 400
    exit_code = 2


class Unsupported(InvalidArgument):
    """The request needs something this host's kernel lacks (802.1q, WireGuard...): refused by name."""


class TooLarge(BoxnetError):
    http_status = 413
    exit_code = 2


class NotFound(BoxnetError):
    http_status = 404
    exit_code = 3


class Conflict(BoxnetError):
    http_status = 409
    exit_code = 4


class Exhausted(BoxnetError):
    http_status = 503
    exit_code = 5


class Unavailable(BoxnetError):
    """Not now, or not on this node (Docker's 503: not a swarm manager, already in a swarm, store down)."""

    http_status = 503
    exit_code = 8


class Forbidden(BoxnetError):
    http_status = 403
    exit_code = 6


class Internal(BoxnetError):
    http_status = 500
    exit_code = 7


_BY_STATUS = {cls.http_status: cls for cls in (InvalidArgument, TooLarge, NotFound, Conflict, Exhausted, Forbidden)}


def from_http_status(status: int, message: str) -> BoxnetError:
    return _BY_STATUS.get(status, Internal)(message)


class ErrorList:
    """Collects errors during best-effort teardown so one failure does not stop the rest."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attempt(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # teardown must go on whatever one step raised
            self.errors.append(f"{what}: {exc}")

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, context: str) -> None:
        if self.errors:
            raise Internal(f"{context}: " + "; ".join(self.errors))
