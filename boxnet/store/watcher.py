"""Following a prefix of the cluster store: a full listing first, then every change, forever.

After a disconnect the watch resumes from the revision after the last one seen (nothing missed, nothing
twice); after a compaction it lists again and hands the whole state over, for the caller to diff against
what it made (the kernel). libnetwork's watches over libkv did neither, and left dead peers behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from boxnet.store.cluster import ClusterStore, Compacted, Entry, Event, StoreUnavailable, Watch

log = logging.getLogger(__name__)


class PrefixWatcher:
    def __init__(self, store: ClusterStore, prefix: str, on_snapshot: Callable[[list[Entry]], None],
                 on_events: Callable[[list[Event]], None], retry_seconds: float = 0.5) -> None:  # fmt: skip
        self.store, self.prefix = store, prefix
        self.on_snapshot, self.on_events = on_snapshot, on_events
        self.retry_seconds = retry_seconds
        self.revision = 0  # the last revision handed over
        self.resyncs = 0  # how many full listings (the first one included)
        self._watch: Watch | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set once the first listing is handed over

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch {self.prefix}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _resync(self) -> None:
        entries, revision = self.store.range(self.prefix)
        self.resyncs += 1
        self.on_snapshot(entries)
        self.revision = revision
        self.synced.set()

    def _run(self) -> None:
        need_listing = True
        while not self._stopping.is_set():
            try:
                if need_listing:
                    self._resync()
                    need_listing = False
                self._watch = self.store.watch(self.prefix, self.revision + 1)
                for events in self._watch:
                    if self._stopping.is_set():
                        return
                    self.on_events(events)
                    self.revision = events[-1].revision
            except Compacted as exc:
                log.info("watch of %s: history compacted up to %d; listing again", self.prefix, exc.revision)
                need_listing = True
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    return
                log.warning("watch of %s: %s; resuming from revision %d", self.prefix, exc.message, self.revision + 1)
                time.sleep(self.retry_seconds)
            except Exception:  # a callback's bug must not end the watch for good
                log.exception("watch of %s failed; listing again", self.prefix)
                need_listing = True
                time.sleep(self.retry_seconds)
