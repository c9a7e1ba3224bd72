"""The connect-time redirect of the host's own connections to published ports (firewall/socket_redirect.py):
its maps, its two programs and their cgroup links, kept in step with the published ports and with the
addresses of the daemon's namespace.

It only speeds things up. The nft DNAT rules stay authoritative, so whenever this part is missing (no
cgroup2, no BPF, a daemon that is down) the host's connections still arrive, through NAT. The links end
with the daemon's process: the kernel detaches a program when the last fd of its link closes, so a killed
daemon leaves nothing attached, and a restarted one attaches afresh.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import tempfile
import threading
from collections.abc import Iterable

from boxnet.firewall import ruleset
from boxnet.firewall import socket_redirect as layout
from boxnet.kernel import bpf, libc
from boxnet.kernel.readiness import readable
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
        self.reason = "off (boxnetd --no-connect-redirect)"
        self._fds: dict[str, int] = {}
        # Over the fds and the maps: API threads, the address watch and close() all use them.
        self._lock = threading.RLock()
        self._watch: tuple[threading.Thread, int] | None = None  # the thread, and the write end of its stop pipe
        # Every eligible published port, whether the map holds it or not (see hold).
        self._wanted: dict[bytes, bytes] = {}
        self.held = ""  # why host connections go through NAT for now, although the redirect is on

    def start(self) -> bool:
        """Loads and attaches the programs for the calling thread's namespace; False (and a logged reason)
        when this kernel or machine does not allow it."""
        if platform.machine() != "x86_64":  # kernel/bpf.py's syscall number; the programs read little-endian
            self.reason = f"host connections to published ports go through NAT: not built for {platform.machine()}"
            return False
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
        with self._lock:
            fds = self._fds
            fds["ports"] = bpf.create_map(bpf.MAP_TYPE_HASH, 8, 8, layout.PORTS_MAX, "boxnet_ports",
                                          bpf.MAP_F_NO_PREALLOC)  # fmt: skip
            fds["locals"] = bpf.create_map(bpf.MAP_TYPE_HASH, 4, 4, layout.LOCALS_MAX, "boxnet_locals",
                                           bpf.MAP_F_NO_PREALLOC)  # fmt: skip
            fds["origins"] = bpf.create_map(bpf.MAP_TYPE_LRU_HASH, 8, layout.ORIGIN_SIZE, layout.ORIGINS_MAX,
                                            "boxnet_origins")  # fmt: skip
            connect = layout.connect4(bpf.netns_cookie(), fds["ports"], fds["locals"], fds["origins"])
            fds["connect4"] = bpf.load_program(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, connect, PROGRAM_PREFIX + "connect4",
                                               bpf.CGROUP_INET4_CONNECT)  # fmt: skip
            fds["getpeername4"] = bpf.load_program(bpf.PROG_TYPE_CGROUP_SOCK_ADDR, layout.getpeername4(fds["origins"]),
                                                   PROGRAM_PREFIX + "peer4", bpf.CGROUP_INET4_GETPEERNAME)  # fmt: skip
            # Subscribed before the first reading, so that no change falls between the two.
            events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            events.bind((0, RTMGRP_IPV4_IFADDR))
            self._sync_locals()
            stop_read, stop_write = os.pipe2(os.O_CLOEXEC)
            thread = threading.Thread(target=self._watch_addresses, args=(events, stop_read), name="address-watch",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._watch = (thread, stop_write)
            fds["cgroup"] = open_cgroup2_root()
            # The peer name program first: no redirected socket may exist before it can answer for it.
            fds["link_getpeername4"] = bpf.link_cgroup(fds["getpeername4"], fds["cgroup"],
                                                       bpf.CGROUP_INET4_GETPEERNAME)  # fmt: skip
            fds["link_connect4"] = bpf.link_cgroup(fds["connect4"], fds["cgroup"], bpf.CGROUP_INET4_CONNECT)

    def close(self) -> None:
        """Detaches and frees everything; idempotent."""
        with self._lock:
            self.enabled = False
            watch, self._watch = self._watch, None
        if watch:  # joined outside the lock: the thread may be waiting for it
            thread, stop_write = watch
            os.write(stop_write, b"x")
            if thread is not threading.current_thread():  # the watch itself may be what turns the redirect off
                thread.join(timeout=5)
            os.close(stop_write)
        with self._lock:
            for name in ("link_connect4", "link_getpeername4", *list(self._fds)):
                fd = self._fds.pop(name, None)
                if fd is not None:
                    os.close(fd)

    def _turn_off(self, why: str) -> None:
        """A map that cannot be kept right must not be used: NAT takes over (correct, only slower)."""
        log.error("connect redirect off: %s", why)
        self.close()
        self.reason = f"host connections to published ports go through NAT: {why}"

    # ---- published ports ---------------------------------------------------------------------------
    def sync(self, rules: Iterable[ruleset.PortRule]) -> None:
        """Makes the ports map say exactly what the rules say (after a rebuild or a restart)."""
        with self._lock:
            self._wanted = dict(_entry(rule) for rule in rules if eligible(rule))
            self._reconcile("ports", 8, {} if self.held else self._wanted)

    def hold(self, reason: str) -> None:
        """With a reason, every host connection goes through NAT (and the nft rules on its way) until the
        reason is cleared; then the map is filled again from every port published meanwhile."""
        with self._lock:
            if reason == self.held:
                return
            self.held = reason
            self._reconcile("ports", 8, {} if reason else self._wanted)
        if reason:
            log.info("connect redirect held: %s", reason)

    def _reconcile(self, name: str, key_size: int, wanted: dict[bytes, bytes]) -> None:
        """Makes one map hold exactly `wanted`. An entry that cannot be added only costs speed (NAT serves
        it); one that cannot be removed would send connections where they must not go: off, then."""
        failure = None
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                return
            try:
                for key in [key for key in bpf.keys(fd, key_size) if key not in wanted]:
                    bpf.delete(fd, key)
            except OSError as exc:
                failure = f"could not remove a stale entry of the {name} map: {exc}"
            for key, value in wanted.items():
                try:
                    bpf.update(fd, key, value)
                except OSError as exc:
                    log.warning("connect redirect: an entry of the %s map stays with NAT: %s", name, exc)
        if failure:
            self._turn_off(failure)

    def add(self, rules: Iterable[ruleset.PortRule]) -> None:
        entries = dict(_entry(rule) for rule in rules if eligible(rule))
        with self._lock:
            self._wanted.update(entries)
            if not self.held:
                self._update(entries.items())

    def remove(self, rules: Iterable[ruleset.PortRule]) -> None:
        keys = [_entry(rule)[0] for rule in rules if eligible(rule)]
        with self._lock:
            for key in keys:
                self._wanted.pop(key, None)
            if not self.held:
                self._remove_keys(keys)

    def _update(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """A port that cannot be added is only slower: its host connections go through DNAT."""
        with self._lock:
            if not self.enabled:
                return
            for key, value in entries:
                try:
                    bpf.update(self._fds["ports"], key, value)
                except OSError as exc:
                    log.warning("connect redirect: %s stays with NAT: %s", layout.decode_endpoint(key), exc)

    def _remove_keys(self, keys: list[bytes]) -> None:
        """A port that cannot be removed would send connections to a container no longer there: off, then."""
        failure = None
        with self._lock:
            if not self.enabled:
                return
            for key in keys:
                try:
                    bpf.delete(self._fds["ports"], key)
                except OSError as exc:
                    failure = f"could not remove {layout.decode_endpoint(key)}: {exc}"
                    break
        if failure:
            self._turn_off(failure)

    def published(self) -> dict[tuple[str, int], tuple[str, int]]:
        """What the ports map holds: (host address, port) -> (container address, port); 0.0.0.0 for any."""
        with self._lock:
            if not self.enabled:
                return {}
            ports = self._fds["ports"]
            return {layout.decode_endpoint(key): layout.decode_endpoint(bpf.lookup(ports, key, 8) or bytes(8))
                    for key in bpf.keys(ports, 8)}  # fmt: skip

    def destination_for(self, address: str, port: int) -> tuple[str, int] | None:
        """Where a TCP connect() from the daemon's namespace to address:port really goes, by the program's
        own rules (for `boxnet trace`); None when it is not redirected."""
        if ":" in address:
            return None
        with self._lock:
            if not self.enabled:
                return None
            if not address.startswith("127.") and not bpf.lookup(self._fds["locals"], layout.local_key(address), 4):
                return None
            found = bpf.lookup(self._fds["ports"], layout.port_key(address, port), 8) or bpf.lookup(
                self._fds["ports"], layout.port_key(None, port), 8)
        return layout.decode_endpoint(found) if found else None

    # ---- the namespace's own addresses -------------------------------------------------------------
    def _sync_locals(self) -> None:
        """The locals map, made to say what the namespace's addresses are now."""
        with Rtnl() as rtnl:
            wanted = {layout.local_key(address): layout.LOCAL_VALUE for address in rtnl.ipv4_addresses()}
        self._reconcile("locals", 4, wanted)

    def _watch_addresses(self, events: socket.socket, stop_read: int) -> None:
        """Re-reads the addresses whenever one comes or goes. The socket was made by _start, in the
        daemon's namespace; what it reads does not matter, only that something changed."""
        with events:
            while True:
                ready = readable([events, stop_read])
                if stop_read in ready:
                    break
                try:
                    while events.recv(65536, socket.MSG_DONTWAIT):
                        pass
                except BlockingIOError:
                    pass
                except OSError as exc:  # ENOBUFS: events were lost, which the full re-read below makes up for
                    log.info("connect redirect: address events: %s", exc)
                try:
                    self._sync_locals()
                except OSError as exc:
                    log.warning("connect redirect: could not re-read the addresses: %s", exc)
        os.close(stop_read)
