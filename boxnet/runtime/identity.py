"""Who a container's process is, and what it may use: the user and groups it runs as (from the container's
own /etc/passwd and /etc/group), its resource limits, its OOM score and its namespaced sysctls.

Called by the container's init (and by an exec'd process) inside the container's view, while still root
with every capability; `become` is the last step before exec.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from boxnet.kernel import libc


class IdentityError(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    home: str = "/root"


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path, errors="replace") as handle:
            return [line.rstrip("\n").split(":") for line in handle if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve(user: str, group_add: list[str], passwd: str = "/etc/passwd", group: str = "/etc/group") -> Identity:
    """Docker's rules (moby/sys/user): a name must be in passwd; a numeric uid need not be (its group is 0
    then); a group by name must be in group; supplementary groups are the user's in group plus group_add."""
    users = [e for e in _entries(passwd) if len(e) >= 7]
    groups = [e for e in _entries(group) if len(e) >= 4]
    name_part, _, group_part = (user or "0").partition(":")  # root by default, with root's groups
    entry = next((e for e in users if e[0] == name_part or (name_part.isdigit() and e[2] == name_part)), None)
    if entry is None and not name_part.isdigit():
        raise IdentityError(f"unable to find user {name_part}: no matching entries in passwd file")
    uid = int(entry[2]) if entry else int(name_part)
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry else "/"
    username = entry[0] if entry else ""
    if group_part:
        gid = _group_id(group_part, groups)
    supplementary = [int(g[2]) for g in groups if username and username in g[3].split(",") and g[2].isdigit()]
    supplementary += [_group_id(g, groups) for g in group_add]
    return Identity(uid, gid, tuple(dict.fromkeys(supplementary)), home)


def _group_id(spec: str, groups: list[list[str]]) -> int:
    if spec.isdigit():
        return int(spec)
    found = next((g for g in groups if g[0] == spec and g[2].isdigit()), None)
    if found is None:
        raise IdentityError(f"unable to find group {spec}: no matching entries in group file")
    return int(found[2])


def apply_limits(ulimits: list[dict], oom_score_adj: int) -> None:
    """Resource limits and the OOM score (both may need CAP_SYS_RESOURCE: before capabilities drop)."""
    from boxnet.model.process import ULIMITS

    for limit in ulimits:
        soft = resource.RLIM_INFINITY if limit["soft"] == -1 else limit["soft"]
        hard = resource.RLIM_INFINITY if limit["hard"] == -1 else limit["hard"]
        try:
            resource.setrlimit(ULIMITS[limit["name"]], (soft, hard))
        except (ValueError, OSError) as exc:
            current = resource.getrlimit(ULIMITS[limit["name"]])[1]
            raise IdentityError(f"ulimit {limit['name']}={limit['soft']}:{limit['hard']} cannot be set ({exc}): "
                                f"raising the hard limit above {'unlimited' if current < 0 else current} needs "
                                "CAP_SYS_RESOURCE, which boxnetd lacks on this host") from None  # fmt: skip
    if oom_score_adj:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(oom_score_adj))


def write_sysctls(sysctls: dict[str, str]) -> None:
    """Namespaced kernel settings, through the container's own /proc/sys (before it turns read-only)."""
    for key, value in sysctls.items():
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise IdentityError(f"sysctl {key}={value}: {exc.strerror}") from None


def become(identity: Identity, capabilities: list[int], no_new_privileges: bool) -> None:
    """Drops to the container's capability set and identity. A non-root uid keeps no effective capability
    (the kernel clears them on setuid), as in Docker."""
    libc.drop_bounding_capabilities(capabilities)
    if no_new_privileges:
        libc.set_no_new_privileges()
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
