"""The engine's volume operations: create, list, inspect, remove and prune, never of a volume in use."""

from __future__ import annotations

from boxnet.engine.context import EngineContext
from boxnet.errors import InvalidArgument
from boxnet.model.names import labels_match, parse_key_values
from boxnet.volumes.store import ANONYMOUS_LABEL, Volume


class VolumeService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store = ctx.volumes

    def users(self, name: str) -> list[str]:
        with self.ctx.lock:
            return self.ctx.registry.volume_users(name)

    def create(self, name: str, driver: str, options: dict[str, str], labels: dict[str, str]) -> Volume:
        return self.store.create(name, parse_key_values("label", labels), driver, options)

    def get(self, name: str) -> Volume:
        return self.store.get(name)

    def list(self, filters: dict[str, list[str]]) -> list[Volume]:
        for key in filters:
            if key not in ("name", "label", "dangling", "driver"):
                raise InvalidArgument(f"invalid filter {key!r}: boxnet filters volumes by name, label, dangling, "
                                      "driver")  # fmt: skip
        return [v for v in self.store.list() if self._matches(v, filters)]

    def _matches(self, volume: Volume, filters: dict[str, list[str]]) -> bool:
        if filters.get("name") and not any(n in volume.name for n in filters["name"]):
            return False
        if filters.get("driver") and "local" not in filters["driver"]:
            return False
        if not labels_match(volume.labels, filters.get("label", [])):
            return False
        for wanted in filters.get("dangling", []):
            if wanted.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid dangling filter {wanted!r}: true or false")
            if (wanted.lower() in ("true", "1")) == bool(self.users(volume.name)):
                return False
        return True

    def remove(self, name: str, force: bool = False) -> None:
        del force  # Docker's force only ignores a missing volume of a plugin driver; in use stays refused
        with self.ctx.lock:
            self.store.remove(name, self.users(name))

    def prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """Unused anonymous volumes, or with all=true every unused volume (Docker 23's rule)."""
        every = filters.pop("all", ["false"])[-1].lower() in ("true", "1")
        removed, reclaimed = [], 0
        for volume in self.list({**filters, "dangling": ["true"]}):
            if not every and ANONYMOUS_LABEL not in volume.labels:
                continue
            size = self.store.size(volume)
            with self.ctx.lock:
                if self.users(volume.name):
                    continue
                self.store.remove(volume.name, [])
            removed.append(volume.name)
            reclaimed += size
        return removed, reclaimed
