"""Notices changes that other processes make to boxnet's tables, and answers them within a fraction of a
second instead of at the next restart (a firewall reload or `nft flush ruleset` used to leave published
ports and isolation gone until then; netavark#230 and friends).

- A change to boxnet's own chains, sets or maps, or the tables' removal: the ruleset is rebuilt from the
  ledger in one transaction (the administrator's chain stays as it is).
- A change to the administrator's chain alone: nothing to repair, but the connect redirect follows it
  (see Firewall.follow_user_chain).

boxnetd's own transactions (any of its threads') are ignored. Changes come in bursts (a script of nft
commands), so the answer waits until the burst has been quiet for DEBOUNCE seconds.
"""

from __future__ import annotations

import logging
import os
import threading

from boxnet.engine.context import EngineContext
from boxnet.firewall import ruleset
from boxnet.kernel.netlink import committed_by_this_process
from boxnet.kernel.nft_events import LostEvents, NftEvents, Transaction

log = logging.getLogger(__name__)

DEBOUNCE = 0.15
OWNED = {("inet", ruleset.TABLE), ("bridge", ruleset.TABLE)}


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return f"pid {pid} ({handle.read().strip()})"
    except OSError:
        return f"pid {pid}"


class FirewallWatch:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._thread: threading.Thread | None = None
        self._stop_write = -1
        self.repairs = 0  # how many times foreign changes were repaired, for tests and status

    def start(self) -> None:
        """Subscribes in the calling thread's namespace (the daemon's), then watches on a thread."""
        events = NftEvents()
        stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, args=(events, stop_read), name="firewall-watch",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_write)
        self._thread = None

    def _run(self, events: NftEvents, stop_read: int) -> None:
        try:
            while True:
                damaged, user_changed = "", False
                try:
                    batch = events.read(stop_read)
                    if batch is None:
                        return
                    damaged, user_changed = self._classify(batch, damaged, user_changed)
                    while (damaged or user_changed) and (batch := events.read(stop_read, DEBOUNCE)):
                        damaged, user_changed = self._classify(batch, damaged, user_changed)
                    if batch is None:
                        return
                except LostEvents as exc:
                    damaged = f"nftables events were lost ({exc})"
                if damaged or user_changed:
                    self._answer(damaged)
        finally:
            events.close()
            os.close(stop_read)

    @staticmethod
    def _classify(batch: list[Transaction], damaged: str, user_changed: bool) -> tuple[str, bool]:
        for transaction in batch:
            if committed_by_this_process(transaction.pid):
                continue
            ours = {(family, table, chain) for family, table, chain in transaction.touched
                    if (family, table) in OWNED}  # fmt: skip
            if not ours:
                continue
            if ours == {("inet", ruleset.TABLE, ruleset.USER_CHAIN)}:
                user_changed = True
            elif not damaged:
                damaged = f"{_describe(transaction.pid)} changed boxnet's rules"
        return damaged, user_changed

    def _answer(self, damaged: str) -> None:
        try:
            with self.ctx.lock:
                if damaged:
                    self.ctx.firewall.rebuild(self.ctx.registry)
                    self.repairs += 1
                    log.warning("%s: rebuilt them from the ledger", damaged)
                else:
                    self.ctx.firewall.follow_user_chain()
        except Exception:  # the watch must outlive one failed repair; the next change tries again
            log.exception("could not answer a change of the ruleset")
