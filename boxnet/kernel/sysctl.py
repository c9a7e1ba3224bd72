"""sysctls of the calling thread's network namespace."""

from __future__ import annotations


def _path(key: str) -> str:
    # Dotted keys (net.ipv4.ip_forward) or slashed ones, which may hold interface names with dots.
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def write(key: str, value: str) -> None:
    with open(_path(key), "w") as handle:
        handle.write(value)


def read(key: str) -> str:
    with open(_path(key)) as handle:
        return handle.read().strip()


def ensure(key: str, value: str) -> None:
    if read(key) != value:
        write(key, value)


def interface_key(family: str, interface: str, name: str) -> str:
    # Interface names may hold dots, which sysctl paths would read as separators.
    return f"net/{family}/conf/{interface}/{name}"
