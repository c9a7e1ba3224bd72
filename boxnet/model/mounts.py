"""What a container mounts, as docker says it: `-v SRC:DST[:OPTS]` (HostConfig.Binds), `--mount
type=bind|volume|tmpfs,...` (HostConfig.Mounts), `--tmpfs DST[:OPTS]` (HostConfig.Tmpfs), and the
anonymous volumes an image's VOLUME asks for. Pure: parsing and checking only (runtime/mounts.py mounts).

Docker's rules kept: a missing host directory is made for `-v` and refused for `--mount`; a name that is
not a path is a named volume, made on first use; a volume that is empty when first mounted gets a copy of
what the image has at that path (unless nocopy).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from boxnet.errors import InvalidArgument
from boxnet.model.process import check_text

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}", re.ASCII)
TMPFS_OPTIONS = ("size", "mode", "uid", "gid", "nr_inodes")
TMPFS_FLAGS = ("rw", "ro", "exec", "noexec", "nosuid", "nodev")
# Where nothing may be mounted over: the kernel's filesystems boxnet builds for the container.
RESERVED = ("/proc", "/sys", "/dev")


@dataclass
class Mount:
    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""  # a host path (bind), a volume name (volume)
    read_only: bool = False
    create_source: bool = False  # -v: a missing host directory is made
    copy_up: bool = True  # volume: an empty volume gets the image's files at target
    tmpfs_options: str = ""  # size=...,mode=... (validated)
    tmpfs_exec: bool = False
    anonymous: bool = False  # a volume named for this container alone (removed with it by --rm)

    @classmethod
    def from_dict(cls, data: dict) -> Mount:
        return cls(**data)


def _normal(path: str) -> str:
    """normpath, and one leading slash: posixpath keeps two (`//proc`), which would pass the checks below."""
    return "/" + posixpath.normpath(path).lstrip("/")


def check_volume_name(name: str) -> str:
    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name):
        raise InvalidArgument(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-], 2 to 255 characters")
    return name


def check_target(target: str) -> str:
    check_text("mount target", target, 4096)
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount target {target!r}: it must be an absolute path")
    normal = _normal(target)
    if normal == "/":
        raise InvalidArgument("invalid mount target '/': the container's root cannot be mounted over")
    for reserved in RESERVED:
        if normal == reserved or normal.startswith(reserved + "/"):
            raise InvalidArgument(f"invalid mount target {target!r}: boxnet builds {reserved} for the container "
                                  "(devices go with --device)")  # fmt: skip
    if ":" in normal or "," in normal:
        raise InvalidArgument(f"invalid mount target {target!r}: ':' and ',' are not allowed")
    return normal


def _check_source_path(source: str) -> str:
    check_text("mount source", source, 4096)
    normal = _normal(source)
    if normal == "/":
        raise InvalidArgument("binding the host's root into a container is refused: bind what it needs")
    return normal


def parse_bind(spec: str) -> Mount:
    """`-v` / Binds: SRC:DST[:OPTS], or DST alone for an anonymous volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        return Mount("volume", check_target(parts[0]), anonymous=True)
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification {spec!r}: expected SRC:DST[:OPTS]")
    source, target = parts[0], check_target(parts[1])
    options = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o]
    read_only, copy_up = False, True
    for option in options:
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option == "nocopy":
            copy_up = False
        elif option in ("z", "Z", "rprivate", "private", "delegated", "cached", "consistent"):
            continue  # SELinux relabelling (no SELinux here), the default propagation, macOS hints
        else:
            raise InvalidArgument(f"invalid volume specification {spec!r}: option {option!r} is not supported "
                                  "(ro, rw, nocopy, z, Z)")  # fmt: skip
    if source.startswith("/"):
        if not copy_up:
            raise InvalidArgument(f"invalid volume specification {spec!r}: nocopy is for volumes, not binds")
        return Mount("bind", target, _check_source_path(source), read_only, create_source=True)
    if source.startswith("."):
        raise InvalidArgument(f"invalid volume specification {spec!r}: a host path must be absolute "
                              "(docker's CLI makes ./dir absolute; write $(pwd)/dir)")  # fmt: skip
    return Mount("volume", target, check_volume_name(source), read_only, copy_up=copy_up)


def parse_mount_flag(spec: str) -> dict:
    """`--mount type=...,source=...,target=...[,readonly]` into the API's Mounts entry."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep and key in ("readonly", "ro"):
            value = "true"
        elif not sep:
            raise InvalidArgument(f"invalid --mount {spec!r}: {item!r} is not KEY=VALUE")
        fields[key] = value
    entry: dict = {"Type": fields.pop("type", "volume")}
    for keys, name in ((("source", "src"), "Source"), (("target", "destination", "dst"), "Target")):
        for key in keys:
            if key in fields:
                entry[name] = fields.pop(key)
    for key in ("readonly", "ro"):
        if key in fields:
            entry["ReadOnly"] = fields.pop(key).lower() in ("true", "1", "")
    if "volume-nocopy" in fields:
        entry["VolumeOptions"] = {"NoCopy": fields.pop("volume-nocopy").lower() in ("true", "1", "")}
    tmpfs = {}
    if "tmpfs-size" in fields:
        tmpfs["SizeBytes"] = parse_size_bytes(fields.pop("tmpfs-size"))
    if "tmpfs-mode" in fields:
        tmpfs["Mode"] = int(fields.pop("tmpfs-mode"), 8)
    if tmpfs:
        entry["TmpfsOptions"] = tmpfs
    if "bind-propagation" in fields:
        entry["BindOptions"] = {"Propagation": fields.pop("bind-propagation")}
    if fields:
        raise InvalidArgument(f"invalid --mount {spec!r}: {', '.join(sorted(fields))} not supported")
    return entry


def parse_size_bytes(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    number, unit = text.rstrip("bBkKmMgG"), text[len(text.rstrip("bBkKmMgG")):].lower().rstrip("b")
    if not number.isdigit() or unit not in units:
        raise InvalidArgument(f"invalid size {text!r}: a number with an optional k, m or g")
    return int(number) * units[unit]


def _options(entry: dict, key: str) -> dict:
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"HostConfig.Mounts: {key} must be an object")
    return value


def from_api_mount(entry: dict) -> Mount:
    """One HostConfig.Mounts entry."""
    if not isinstance(entry, dict):
        raise InvalidArgument("HostConfig.Mounts: each entry must be an object")
    kind = entry.get("Type") or ""
    if not all(isinstance(entry.get(k) or "", str) for k in ("Type", "Source", "Target")):
        raise InvalidArgument("HostConfig.Mounts: Type, Source and Target must be strings")
    target = check_target(entry.get("Target") or "")
    source = entry.get("Source") or ""
    read_only = bool(entry.get("ReadOnly"))
    for key, allowed in (("BindOptions", {"Propagation"}), ("VolumeOptions", {"NoCopy", "DriverConfig"}),
                         ("TmpfsOptions", {"SizeBytes", "Mode"})):
        given = {k for k, v in _options(entry, key).items() if v not in (None, False, "", {}, [])}
        if given - allowed:
            raise InvalidArgument(f"HostConfig.Mounts: {key}.{', '.join(sorted(given - allowed))} is not supported")
    driver_options = _options(_options(entry, "VolumeOptions"), "DriverConfig").get("Options")
    if driver_options:
        raise InvalidArgument("HostConfig.Mounts: VolumeOptions.DriverConfig.Options is not supported")
    if kind == "bind":
        propagation = _options(entry, "BindOptions").get("Propagation") or ""
        if propagation not in ("", "rprivate", "private"):
            raise InvalidArgument(f"bind propagation {propagation!r} is not supported: a container's mounts are "
                                  "private, as Docker's default")  # fmt: skip
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount source {source!r} for a bind: an absolute host path")
        return Mount("bind", target, _check_source_path(source), read_only)
    if kind == "volume":
        options = _options(entry, "VolumeOptions")
        if _options(options, "DriverConfig").get("Name") not in (None, "", "local"):
            raise InvalidArgument("volume drivers other than local are not supported")
        if not source:
            return Mount("volume", target, read_only=read_only, anonymous=True,
                         copy_up=not options.get("NoCopy"))  # fmt: skip
        return Mount("volume", target, check_volume_name(source), read_only, copy_up=not options.get("NoCopy"))
    if kind == "tmpfs":
        if source:
            raise InvalidArgument("a tmpfs mount takes no source")
        options = _options(entry, "TmpfsOptions")
        parts = []
        for key, form in (("SizeBytes", "size={}"), ("Mode", "mode={:o}")):
            value = options.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidArgument(f"HostConfig.Mounts: TmpfsOptions.{key} must be a number")
            if value:
                parts.append(form.format(value))
        return Mount("tmpfs", target, read_only=read_only, tmpfs_options=",".join(parts))
    raise InvalidArgument(f"mount type {kind!r} is not supported: bind, volume or tmpfs")


def parse_tmpfs(target: str, options: str) -> Mount:
    """`--tmpfs DST[:OPTS]` / HostConfig.Tmpfs: size, mode, uid, gid, nr_inodes, and ro|rw, exec|noexec."""
    kept, read_only, executable = [], False, False
    for option in (o.strip() for o in options.split(",") if o.strip()):
        key, sep, value = option.partition("=")
        if sep and key in TMPFS_OPTIONS and re.fullmatch(r"[0-9]+[kmgKMG%]?", value):
            kept.append(f"{key}={value}")
        elif not sep and key in TMPFS_FLAGS:
            read_only = read_only or key == "ro"
            executable = key == "exec" or (executable and key != "noexec")
        else:
            raise InvalidArgument(f"invalid tmpfs option {option!r} for {target}: size, mode, uid, gid, nr_inodes, "
                                  "ro, rw, exec, noexec")  # fmt: skip
    return Mount("tmpfs", check_target(target), read_only=read_only, tmpfs_options=",".join(kept),
                 tmpfs_exec=executable)  # fmt: skip


def check_mounts(mounts: list[Mount]) -> list[Mount]:
    """No two mounts on one target; sorted so that a parent is mounted before what is under it."""
    seen: dict[str, Mount] = {}
    for mount in mounts:
        if mount.target in seen:
            raise InvalidArgument(f"duplicate mount point: {mount.target}")
        seen[mount.target] = mount
    return sorted(mounts, key=lambda m: m.target.count("/"))
