"""This node's part in encrypted overlays: one WireGuard interface (kernel/wireguard.py), its address leased
in the cluster store, its public key and underlay endpoint published there on the node's lease, and every
other node that published one added as a peer (removed when its key goes: it left, or died).

An encrypted network's VXLAN runs between the nodes' WireGuard addresses, so its frames leave inside
WireGuard; the firewall's sealed rules (firewall/ruleset.py set_sealed) drop that VNI anywhere else, and an
unreachable route for the WireGuard range keeps its packets from ever taking the underlay's default route.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from boxnet.cluster import keys
from boxnet.errors import BoxnetError, Conflict, Exhausted
from boxnet.kernel import wireguard
from boxnet.store.cluster import ClusterStore, Entry, Event, Put, absent, unchanged_since
from boxnet.store.watcher import PrefixWatcher

log = logging.getLogger(__name__)

POOL = ipaddress.ip_network("100.64.0.0/16")  # shared address space: never a container subnet of boxnet's
UNREACHABLE_METRIC = 4294967295  # below any real route to the pool: the interface's own wins while it exists


ROTATE_EVERY = 12 * 3600  # seconds between scheduled key rotations (Docker rotates its overlay keys every 12 h)


def bump_epoch(store: ClusterStore, guard: list | None = None, older_than: float = 0.0) -> int:
    """Asks every node for a new WireGuard key (each makes its own): the epoch goes up by one, by
    compare-and-swap. older_than: only if the last rotation is at least that many seconds old (0 if none was
    ever asked for, which starts the clock instead). Returns the epoch after, or 0 if nothing was done."""
    for _ in range(10):
        entry = store.get(keys.WG_EPOCH)
        current = json.loads(entry.value) if entry is not None else None
        if older_than and (current is None or time.time() - float(current.get("at", 0)) < older_than):
            if current is None:
                store.txn([*(guard or []), absent(keys.WG_EPOCH)],
                          [Put(keys.WG_EPOCH, json.dumps({"epoch": 0, "at": time.time()}))])  # fmt: skip
            return 0
        epoch = (int(current["epoch"]) if current else 0) + 1
        compare = unchanged_since(keys.WG_EPOCH, entry.mod_revision) if entry is not None else absent(keys.WG_EPOCH)
        if store.txn([*(guard or []), compare], [Put(keys.WG_EPOCH, json.dumps({"epoch": epoch, "at": time.time()}))]):
            return epoch
        if guard:
            return 0  # the guard failed (no longer the leader), or someone else rotated meanwhile
    raise Conflict("could not ask for a key rotation: too many concurrent changes")


def interface_name(node_id: str) -> str:
    """Per node (wireguard-go's control sockets are per mount namespace, which lab hosts share)."""
    return f"bxwg{node_id[:10]}"


class NodeEncryption:
    def __init__(self, store: ClusterStore, node_id: str, underlay: str, state_dir: str,
                 lease: Callable[[], int], on_change: Callable[[], None]) -> None:  # fmt: skip
        """on_change: called when peers come or go, or the interface was made again (reprogram the
        encrypted networks)."""
        self.store, self.node_id, self.underlay, self.lease = store, node_id, underlay, lease
        self.key_file = os.path.join(state_dir, "wg.key")
        self.on_change = on_change
        self.name = interface_name(node_id)
        self.link: wireguard.WireGuardLink | None = None
        self.address = ""
        self.public_key = ""
        self.peers: dict[str, dict] = {}  # node id -> its published record
        self._lock = threading.Lock()
        self._watch = PrefixWatcher(store, keys.WG_NODES, self._listed, self._changed)
        self.epoch_file = os.path.join(state_dir, "wg.epoch")  # the epoch this node's key was made for
        self._epoch_watch = PrefixWatcher(store, keys.WG_EPOCH, self._epoch_listed, self._epoch_changed)

    # ---- start and stop ----------------------------------------------------------------------------
    def ensure(self) -> None:
        """The interface up and published (idempotent): before an encrypted network is realized here."""
        with self._lock:
            if self.link is not None:
                return
            private = self._private_key()
            self.address = self._lease_address()
            self._hold_pool()
            link = wireguard.WireGuardLink(self.name, self.key_file, f"{self.address}/{POOL.prefixlen}",
                                           on_restart=self.on_change)  # fmt: skip
            link.start()
            self.link = link
            self.public_key = wireguard.public_key(private)
        self.publish(self.lease())
        self._watch.start()  # peers come as the watch lists them (each change reprograms the networks)
        self._epoch_watch.start()
        self._epoch_watch.synced.wait(5)  # the epoch this key counts as, before any rotation is asked for

    def _private_key(self) -> str:
        """This node's, made once and kept (0600) with the node's swarm state."""
        with contextlib.suppress(FileNotFoundError), open(self.key_file) as handle:
            return handle.read().strip()
        private = wireguard.new_private_key()
        os.makedirs(os.path.dirname(self.key_file), mode=0o700, exist_ok=True)
        descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(private + "\n")
        return private

    def _lease_address(self) -> str:
        """This node's address in the pool: the one it holds, else the first free one, by compare-and-swap."""
        for _ in range(50):
            held = {e.key[len(keys.WG_ADDRESSES):]: e.value for e in self.store.range(keys.WG_ADDRESSES)[0]}
            mine = [address for address, owner in held.items() if owner == self.node_id]
            if mine:
                return mine[0]
            free = next((str(a) for a in POOL.hosts() if str(a) not in held), None)
            if free is None:
                raise Exhausted(f"no WireGuard address left in {POOL}")
            if self.store.txn([absent(keys.WG_ADDRESSES + free)], [Put(keys.WG_ADDRESSES + free, self.node_id)]):
                return free
        raise Conflict("could not lease a WireGuard address: too many concurrent changes")

    def _hold_pool(self) -> None:
        """Nothing for the pool ever leaves by the underlay, WireGuard up or not."""
        with IPRoute() as ipr:
            try:
                ipr.route("add", dst=str(POOL), type="unreachable", priority=UNREACHABLE_METRIC)
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST
                    raise

    def publish(self, lease: int) -> None:
        if self.link is None:
            return
        record = {"public_key": self.public_key, "endpoint": f"{self.underlay}:{wireguard.PORT}",
                  "address": self.address}  # fmt: skip
        self.store.put(keys.WG_NODES + self.node_id, json.dumps(record), lease)

    def stop(self) -> None:
        """The daemon stops: the interface goes with it (encrypted traffic stops, never in clear)."""
        self._watch.stop()
        self._epoch_watch.stop()
        with self._lock:
            link, self.link = self.link, None
        if link is not None:
            link.stop()

    def leave(self) -> None:
        """The node leaves the swarm: also its records and its pool route."""
        self.stop()
        with contextlib.suppress(BoxnetError):
            self.store.delete(keys.WG_NODES + self.node_id)
            if self.address:
                self.store.delete(keys.WG_ADDRESSES + self.address)
        with IPRoute() as ipr, contextlib.suppress(NetlinkError):
            ipr.route("del", dst=str(POOL), type="unreachable", priority=UNREACHABLE_METRIC)

    # ---- key rotation ------------------------------------------------------------------------------
    def _epoch_listed(self, entries: list[Entry]) -> None:
        if not entries and not os.path.exists(self.epoch_file):  # no rotation asked for yet: the key is epoch 0's
            with open(self.epoch_file, "w") as handle:
                handle.write("0")
        for entry in entries:
            self._follow_epoch(entry.value)

    def _epoch_changed(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "put":
                self._follow_epoch(event.value)

    def _follow_epoch(self, value: str) -> None:
        try:
            epoch = int(json.loads(value)["epoch"])
        except (ValueError, KeyError, TypeError):
            log.warning("unusable WireGuard key epoch %r", value)
            return
        try:
            with open(self.epoch_file) as handle:
                if int(handle.read()) >= epoch:
                    return
        except (FileNotFoundError, ValueError):  # a key made before this node saw any epoch: counts as this one
            with open(self.epoch_file, "w") as handle:
                handle.write(str(epoch))
            return
        try:
            self.rotate()
        except BoxnetError as exc:
            log.error("rotating this node's WireGuard key: %s", exc.message)
            return
        with open(self.epoch_file, "w") as handle:
            handle.write(str(epoch))

    def rotate(self) -> None:
        """A new key pair for this node: the private key replaces the old one in place (0600) and on the
        interface, the public key goes to the store, and each peer replaces its entry as its watch sees it;
        connections wait for one handshake meanwhile, and none is dropped."""
        with self._lock:
            link = self.link
            if link is None:
                return
            private = wireguard.new_private_key()
            temporary = self.key_file + ".new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(private + "\n")
            os.replace(temporary, self.key_file)
            link.reload_key()
            self.public_key = wireguard.public_key(private)
        self.publish(self.lease())
        log.info("rotated this node's WireGuard key (public %s)", self.public_key)

    # ---- peers -------------------------------------------------------------------------------------
    def _listed(self, entries: list[Entry]) -> None:
        self.peers = {}
        for entry in entries:
            self._take(entry.key[len(keys.WG_NODES):], entry.value)
        self._apply()

    def _changed(self, events: list[Event]) -> None:
        for event in events:
            node_id = event.key[len(keys.WG_NODES):]
            if event.kind == "put":
                self._take(node_id, event.value)
            else:
                self.peers.pop(node_id, None)
        self._apply()

    def _take(self, node_id: str, value: str) -> None:
        if node_id == self.node_id:
            return
        try:
            record = json.loads(value)
            wireguard.check_key(record["public_key"])
            ipaddress.ip_address(record["address"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("node %s published an unusable WireGuard record: %s", node_id, exc)
            return
        self.peers[node_id] = record

    def _apply(self) -> None:
        link = self.link
        if link is None:
            return
        try:
            link.set_peers({wireguard.Peer(r["public_key"], r["endpoint"], f"{r['address']}/32")
                            for r in self.peers.values()})  # fmt: skip
        except BoxnetError as exc:
            log.error("WireGuard peers of %s: %s", self.name, exc.message)
        self.on_change()

    def address_of(self, node_id: str) -> str:
        record = self.peers.get(node_id)
        return record["address"] if record else ""

    def addresses(self) -> set[str]:
        return {r["address"] for r in self.peers.values()}
