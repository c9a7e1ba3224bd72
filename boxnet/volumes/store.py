"""Named volumes (the `local` driver): a directory each under the daemon's root, Docker's layout.

    volumes/NAME/volume.json   its name, labels and creation time; written before _data is made
    volumes/NAME/_data/        what containers mount

A volume is made by `volume create` or on a container's first use of its name, and goes only when asked
(`volume rm`, `volume prune`, or `run --rm` for the anonymous ones a container made), never while a
container uses it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from boxnet.errors import Conflict, InvalidArgument, NotFound
from boxnet.model.mounts import check_volume_name

ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass
class Volume:
    name: str
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    mountpoint: str = ""

    def as_docker(self) -> dict:
        return {"Name": self.name, "Driver": "local", "Mountpoint": self.mountpoint, "CreatedAt": self.created_at,
                "Labels": self.labels or None, "Scope": "local", "Options": None}  # fmt: skip


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.lock = threading.RLock()
        # Told of each volume made or removed ("create" / "destroy", its name): the daemon's events.
        self.on_change: Callable[[str, str], None] = lambda action, name: None

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, check_volume_name(name))

    def get(self, name: str) -> Volume:
        try:
            with open(os.path.join(self._dir(name), "volume.json")) as handle:
                volume = Volume(**json.load(handle))
        except FileNotFoundError:
            raise NotFound(f"get {name}: no such volume") from None
        volume.mountpoint = os.path.join(self._dir(name), "_data")
        return volume

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self._dir(name), "volume.json"))

    def create(self, name: str = "", labels: dict[str, str] | None = None, driver: str = "local",
               options: dict[str, str] | None = None, anonymous: bool = False) -> Volume:  # fmt: skip
        """Makes the volume, or returns it if it exists (as Docker's create does); with no name, or anonymous,
        one a container made for itself."""
        if driver not in ("", "local"):
            raise InvalidArgument(f"volume driver {driver!r} is not supported: local only")
        if options:
            raise InvalidArgument(f"volume driver options ({', '.join(sorted(options))}) are not supported: "
                                  "boxnet's local volumes are directories")  # fmt: skip
        anonymous = anonymous or not name
        name = name or secrets.token_hex(32)
        with self.lock:
            if self.exists(name):
                return self.get(name)
            directory = self._dir(name)
            os.makedirs(directory, mode=0o701, exist_ok=True)
            labels = dict(labels or {})
            if anonymous:
                labels[ANONYMOUS_LABEL] = ""
            volume = Volume(name, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), labels)
            record = asdict(volume)
            record.pop("mountpoint")
            tmp = os.path.join(directory, "volume.json.tmp")
            with open(tmp, "w") as handle:
                json.dump(record, handle)
            os.makedirs(os.path.join(directory, "_data"), mode=0o755, exist_ok=True)
            os.replace(tmp, os.path.join(directory, "volume.json"))
        self.on_change("create", name)
        return self.get(name)

    def list(self) -> list[Volume]:
        found = []
        for name in sorted(os.listdir(self.root)):
            try:
                found.append(self.get(name))
            except (NotFound, InvalidArgument):
                continue
        return found

    def remove(self, name: str, users: list[str]) -> None:
        """Removes the volume; Conflict if containers (users) use it."""
        with self.lock:
            self.get(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            directory = self._dir(name)
            # The record goes first: a crash half-way leaves a directory no volume is listed for, not a volume
            # with half its files.
            os.unlink(os.path.join(directory, "volume.json"))
            shutil.rmtree(directory, ignore_errors=True)
        self.on_change("destroy", name)

    def anonymous(self, name: str) -> bool:
        try:
            return ANONYMOUS_LABEL in self.get(name).labels
        except NotFound:
            return False

    def size(self, volume: Volume) -> int:
        total = 0
        for directory, _, files in os.walk(volume.mountpoint):
            for name in files:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_size
                except OSError:
                    continue
        return total
