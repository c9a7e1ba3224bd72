"""The connect-time redirect of the host's own connections to published ports (firewall/socket_redirect.py):
its maps, its two programs and their cgroup links, kept in step with the published ports and with the
addresses of the daemon's namespace.

It only speeds things up. The nft DNAT rules stay authoritative, so whenever this part is missing (no
cgroup2, no BPF, a daemon that is down) the host's connections still arrive, through NAT. The links end
with the daemon's process: the kernel detaches a program when the last fd of its link closes, so a killed
daemon leaves nothing attached, and a restarted one attaches afresh.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import tempfile
import threading
from collections.abc import Iterable

from boxnet.firewall import ruleset
from boxnet.firewall import socket_redirect as layout
from boxnet.kernel import bpf, libc
from boxnet.kernel.rtnl import RTMGRP_IPV4_IFADDR, Rtnl

log = logging.getLogger(__name__)

PROGRAM_PREFIX = "boxnet_"


def eligible(rule: ruleset.PortRule) -> bool:
    """TCP to an IPv4 container address, published on every address or on an IPv4 one."""
    return rule.protocol == "tcp" and rule.version == 4 and (not rule.host_ip or ":" not in rule.host_ip)


def _entry(rule: ruleset.PortRule) -> tuple[bytes, bytes]:
    host_ip = None if rule.host_ip in ("", "0.0.0.0") else rule.host_ip
    return layout.port_key(host_ip, rule.host_port), layout.endpoint_bytes(rule.container_ip, rule.container_port)


def open_cgroup2_root() -> int:
    """An fd of the cgroup2 root: the mounted one, else a private mount made and detached at once."""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] == "cgroup2" and fields[3] == "/":
                return os.open(fields[4], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    mountpoint = tempfile.mkdtemp(prefix="boxnet-cgroup2-")
    try:
        libc.mount("cgroup2", mountpoint, "cgroup2", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
        try:
            return os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            libc.umount(mountpoint, libc.MNT_DETACH)
    finally:
        os.rmdir(mountpoint)


class ConnectRedirect:
    def __init__(self) -> None:
        self.enabled = False
        self.reason = "not started"
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._watch_stop: tuple[int, int] | None = None

    def start(self) -> bool:
        """Loads and attaches the programs for the calling thread's namespace; False (and a logged reason)
        when this kernel or machine does not allow it."""
        try:
            self._start()
        except OSError as exc:
            self.close()
            self.reason = f"host connections to published ports go through NAT: {exc}"
            log.warning("connect redirect off: %s", exc)
            return False
        self.enabled, self.reason = True, ""
        return True

    def _start(self) -> None:
        fds = self._fds
        fds["ports"] = bpf.create_map(bpf.MAP_TYPE_HASH, 8, 8, layout.PORTS_MAX, "boxnet_ports", bpf.MAP_F_NO_PREALLOC)
        fds["locals"] = bpf.create_map(bpf.MAP_TYPE_HASH, 4, 4, layout.LOCALS_MAX, "boxnet_locals",
                                       bpf.MAP_F_NO_PREALLOC)  # fmt: skip
        fds["origins"] = bpf.create_map(bpf.MAP_TYPE_LRU_HASH, 8, 8, layout.ORIGINS_MAX, "boxnet_origins")
        connect = layout.connect4(bpf.netns_cookie(), fds["ports"], fds["locals"], fds["origins"])
        fds["connect4"] = bpf.load_program(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, connect, PROGRAM_PREFIX + "connect4",
                                           bpf.CGROUP_INET4_CONNECT)  # fmt: skip
        fds["getpeername4"] = bpf.load_program(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, layout.getpeername4(fds["origins"]),
                                               PROGRAM_PREFIX + "peername4", bpf.CGROUP_INET4_GETPEERNAME)  # fmt: skip
        self._sync_locals()
        self._start_address_watch()
        fds["cgroup"] = open_cgroup2_root()
        # The peer name program first: no redirected socket may exist before it can answer for it.
        fds["link_getpeername4"] = bpf.link_cgroup(fds["getpeername4"], fds["cgroup"], bpf.CGROUP_INET4_GETPEERNAME)
        fds["link_connect4"] = bpf.link_cgroup(fds["connect4"], fds["cgroup"], bpf.CGROUP_INET4_CONNECT)

    def close(self) -> None:
        """Detaches and frees everything; idempotent."""
        self.enabled = False
        if self._watch_stop:
            os.write(self._watch_stop[1], b"x")  # the thread closes both ends
            self._watch_stop = None
        for name in ("link_connect4", "link_getpeername4", *list(self._fds)):
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

    # ---- published ports ---------------------------------------------------------------------------
    def sync(self, rules: Iterable[ruleset.PortRule]) -> None:
        """Makes the ports map say exactly what the rules say (after a rebuild or a restart)."""
        if not self.enabled:
            return
        wanted = dict(_entry(rule) for rule in rules if eligible(rule))
        with self._lock:
            for key in list(bpf.keys(self._fds["ports"], 8)):
                if key not in wanted:
                    bpf.delete(self._fds["ports"], key)
            for key, value in wanted.items():
                bpf.update(self._fds["ports"], key, value)

    def add(self, rules: Iterable[ruleset.PortRule]) -> None:
        if self.enabled:
            for key, value in (_entry(rule) for rule in rules if eligible(rule)):
                bpf.update(self._fds["ports"], key, value)

    def remove(self, rules: Iterable[ruleset.PortRule]) -> None:
        if self.enabled:
            for key, _ in (_entry(rule) for rule in rules if eligible(rule)):
                bpf.delete(self._fds["ports"], key)

    def published(self) -> dict[tuple[str, int], tuple[str, int]]:
        """What the ports map holds: (host address, port) -> (container address, port); 0.0.0.0 for any."""
        if not self.enabled:
            return {}
        ports = self._fds["ports"]
        return {layout.decode_endpoint(key): layout.decode_endpoint(bpf.lookup(ports, key, 8) or bytes(8))
                for key in bpf.keys(ports, 8)}  # fmt: skip

    def destination_for(self, address: str, port: int) -> tuple[str, int] | None:
        """Where a TCP connect() from the daemon's namespace to address:port really goes, by the program's
        own rules (for `boxnet trace`); None when it is not redirected."""
        if not self.enabled or ":" in address:
            return None
        ports = self._fds["ports"]
        found = bpf.lookup(ports, layout.port_key(address, port), 8)
        is_local = address.startswith("127.") or bpf.lookup(self._fds["locals"], layout.local_key(address), 4)
        if found is None and is_local:
            found = bpf.lookup(ports, layout.port_key(None, port), 8)
        return layout.decode_endpoint(found) if found else None

    def status(self) -> dict[str, object]:
        return {"Enabled": self.enabled, "Reason": self.reason, "Ports": len(self.published())}

    # ---- the namespace's own addresses -------------------------------------------------------------
    def _sync_locals(self) -> None:
        with Rtnl() as rtnl:
            wanted = {layout.local_key(address) for address in rtnl.ipv4_addresses()}
        locals_fd = self._fds.get("locals")
        if locals_fd is None:
            return
        with self._lock:
            for key in list(bpf.keys(locals_fd, 4)):
                if key not in wanted:
                    bpf.delete(locals_fd, key)
            for key in wanted:
                bpf.update(locals_fd, key, layout.LOCAL_VALUE)

    def _start_address_watch(self) -> None:
        """A thread that re-reads the addresses whenever one comes or goes. Made here, so that its socket
        is in the daemon's namespace whatever thread runs it."""
        events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        events.bind((0, RTMGRP_IPV4_IFADDR))
        self._watch_stop = os.pipe2(os.O_CLOEXEC)
        threading.Thread(target=self._watch_addresses, args=(events, self._watch_stop), name="address-watch",
                         daemon=True).start()  # fmt: skip

    def _watch_addresses(self, events: socket.socket, stop: tuple[int, int]) -> None:
        with events:
            while True:
                ready, _, _ = select.select([events, stop[0]], [], [])
                if stop[0] in ready:
                    break
                with contextlib.suppress(BlockingIOError):
                    while events.recv(65536, socket.MSG_DONTWAIT):
                        pass
                try:
                    self._sync_locals()
                except OSError as exc:
                    log.warning("connect redirect: could not re-read the addresses: %s", exc)
        for fd in stop:
            os.close(fd)
