"""One WireGuard interface on this node: the kernel's where it has WireGuard, else `wireguard-go`, supervised
(restarted when it dies, and reconfigured: its TUN, address and peers die with it). Configured with `wg`
(wireguard-tools), which speaks the kernel's netlink and wireguard-go's control socket alike.

Keys are X25519 (pyca `cryptography`), made here; the private key stays in a 0600 file on this node and goes
to `wg` as a file, never on a command line. wireguard-go's control socket is /var/run/wireguard/NAME.sock,
per mount namespace rather than per network namespace, so each node names its interface after itself.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from boxnet.errors import Internal, Unsupported
from boxnet.kernel import links
from boxnet.runtime.procs import die_with_parent, end_child

log = logging.getLogger(__name__)

PORT = 51820
# What WireGuard adds to a packet (IPv6 outer header, the worst case; wg-quick's 1420 on a 1500 link).
OVERHEAD = 80


def new_private_key() -> str:
    raw = X25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                    serialization.NoEncryption())  # fmt: skip
    return base64.b64encode(raw).decode()


def public_key(private: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)).decode()  # fmt: skip


def check_key(text: str) -> str:
    """A public key as another node published it: 32 bytes of base64, or ValueError."""
    if len(base64.b64decode(text, validate=True)) != 32:
        raise ValueError(f"not a WireGuard key: {text!r}")
    return text


@dataclass(frozen=True)
class Peer:
    public_key: str
    endpoint: str  # address:port on the underlay
    allowed: str  # the peer's WireGuard address, /32


@dataclass(frozen=True)
class PeerState:
    public_key: str
    endpoint: str
    allowed: str
    latest_handshake: int  # seconds since the epoch, 0 before the first
    received: int
    sent: int


def _wg(*args: str) -> str:
    try:
        return subprocess.run(["wg", *args], capture_output=True, text=True, check=True, timeout=10).stdout
    except FileNotFoundError:
        raise Unsupported("wg (wireguard-tools) is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise Internal(f"wg {' '.join(args[:2])}: {exc.stderr.strip()}") from None


def peer_states(name: str) -> list[PeerState]:
    """What a WireGuard interface reports of each peer (`wg show NAME dump`)."""
    found = []
    for line in _wg("show", name, "dump").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 8:
            found.append(PeerState(fields[0], fields[2], fields[3], int(fields[4]), int(fields[5]), int(fields[6])))
    return found


class WireGuardLink:
    def __init__(self, name: str, key_file: str, address: str, port: int = PORT,
                 on_restart: Callable[[], None] | None = None) -> None:  # fmt: skip
        """address: this node's WireGuard address with its prefix (the route to every peer's)."""
        self.name, self.key_file, self.address, self.port = name, key_file, address, port
        self.on_restart = on_restart
        self.userspace = False
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._peers: set[Peer] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = ""

    # ---- the interface ------------------------------------------------------------------------------
    def start(self) -> None:
        """The interface up, configured, with its address; Internal if it cannot be."""
        if self._kernel_link():
            self._configure()
            return
        self.userspace = True
        binary = shutil.which("wireguard-go")
        if binary is None:
            raise Unsupported("this kernel has no WireGuard and wireguard-go is not installed: encrypted overlay "
                              "networks cannot be realized here")  # fmt: skip
        self._thread = threading.Thread(target=self._supervise, args=(binary,), name=f"wireguard {self.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        if not self._ready.wait(10) or self._failed:
            self.stop()
            raise Internal(f"wireguard-go did not bring {self.name} up: {self._failed or 'not within 10 s'}")

    def _kernel_link(self) -> bool:
        """The kernel's WireGuard interface (made if missing); False if this kernel has none."""
        if links.link_exists(self.name):
            return not self.userspace
        with IPRoute() as ipr:
            try:
                ipr.link("add", ifname=self.name, kind="wireguard")
                return True
            except NetlinkError as exc:
                if exc.code in (95, 22, 2):  # EOPNOTSUPP, EINVAL, ENOENT: no such link kind here
                    return False
                raise

    def _supervise(self, binary: str) -> None:
        while not self._stopping.is_set():
            env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
            self.process = subprocess.Popen([binary, "-f", self.name], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                            preexec_fn=die_with_parent, start_new_session=True)  # fmt: skip
            try:
                self._wait_for_link()
                self._configure()
                self._ready.set()
                if self.restarts and self.on_restart is not None:
                    self.on_restart()
            except Exception as exc:  # reported to whoever waits on start(), or logged after a restart
                log.error("wireguard %s: %s", self.name, exc)
                if not self._ready.is_set():
                    self._failed = str(exc)
                    self._ready.set()
                    return
            while self.process.poll() is None and not self._stopping.is_set():
                self._stopping.wait(0.2)
            if self._stopping.is_set():
                return
            self.restarts += 1
            log.warning("wireguard-go for %s exited (status %s); restarting it", self.name, self.process.returncode)
            self._stopping.wait(0.2)

    def _wait_for_link(self) -> None:
        for _ in range(100):
            if links.link_exists(self.name):
                return
            if self.process is not None and self.process.poll() is not None:
                raise Internal(f"wireguard-go exited with status {self.process.returncode}")
            time.sleep(0.05)
        raise Internal(f"{self.name} did not appear")

    def _configure(self) -> None:
        _wg("set", self.name, "private-key", self.key_file, "listen-port", str(self.port))
        interface = ipaddress.ip_interface(self.address)
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.name)[0]
            try:
                ipr.addr("add", index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen)
            except NetlinkError as exc:
                if exc.code != links.EEXIST:
                    raise
            ipr.link("set", index=index, state="up")
        with self._lock:
            peers = set(self._peers)
        for peer in peers:
            self._add_peer(peer)

    def reload_key(self) -> None:
        """The key file changed (a rotation): the interface takes the new private key."""
        _wg("set", self.name, "private-key", self.key_file)

    @property
    def alive(self) -> bool:
        return links.link_exists(self.name) and (not self.userspace or (self.process is not None
                                                                        and self.process.poll() is None))

    # ---- peers -------------------------------------------------------------------------------------
    def set_peers(self, wanted: set[Peer]) -> None:
        with self._lock:
            gone, new = self._peers - wanted, wanted - self._peers
            self._peers = set(wanted)
        for peer in gone:
            if peer.public_key not in {p.public_key for p in wanted}:
                with contextlib.suppress(Internal):
                    _wg("set", self.name, "peer", peer.public_key, "remove")
        for peer in new:
            self._add_peer(peer)

    def _add_peer(self, peer: Peer) -> None:
        _wg("set", self.name, "peer", check_key(peer.public_key), "endpoint", peer.endpoint, "allowed-ips",
            peer.allowed, "persistent-keepalive", "25")  # fmt: skip

    def peers(self) -> list[PeerState]:
        return peer_states(self.name)

    # ---- the end -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """The interface goes (and wireguard-go, by PID). Idempotent."""
        self._stopping.set()
        end_child(self.process)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        links.delete_link(self.name)
