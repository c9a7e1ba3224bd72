"""An etcd member supervised by a manager's boxnetd: started with the node's certificates, restarted if it
dies, ended with the daemon (parent-death signal: it is spawned from the supervising thread, which lives as
long as the daemon does), and ended by PID.

Facts it relies on (etcd 3.4.23, ../shared/notes/multihost-facts.md): healthy ~0.2-1 s after exec; each
data directory preallocates a 123 MB write-ahead log; a member added to a running cluster must be started
with --initial-cluster-state existing and the member list at the time of the add.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from boxnet.errors import Internal
from boxnet.runtime.procs import die_with_parent, end_child, proc_start_time, wait_gone
from boxnet.store.etcd import Credentials

log = logging.getLogger(__name__)

CLIENT_PORT, PEER_PORT = 2379, 2380
HEALTHY_WITHIN = 20.0


@dataclass(frozen=True)
class MemberConfig:
    directory: str  # the member's data directory, its log and its pid record live here
    name: str  # the node's ID
    address: str  # the advertised underlay address
    cluster_token: str  # the cluster's ID: members of another cluster are refused
    credentials: Credentials
    client_port: int = CLIENT_PORT
    peer_port: int = PEER_PORT

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:{self.peer_port}"

    @property
    def data_dir(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.directory, "etcd.pid")

    def argv(self, initial_cluster: str, state: str) -> list[str]:
        creds = self.credentials
        return [
            "etcd", "--name", self.name, "--data-dir", self.data_dir,
            "--listen-client-urls", f"{self.client_url},https://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", self.cluster_token,
            "--client-cert-auth", "--trusted-ca-file", creds.ca, "--cert-file", creds.cert, "--key-file", creds.key,
            "--peer-client-cert-auth", "--peer-trusted-ca-file", creds.ca, "--peer-cert-file", creds.cert,
            "--peer-key-file", creds.key,
            "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip


def end_recorded(config: MemberConfig) -> None:
    """Ends a member a previous daemon left running (by the PID and start time it recorded)."""
    try:
        with open(config.pid_file) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return
    if proc_start_time(record["pid"]) == record["start_time"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record["pid"], signal.SIGKILL)
        wait_gone(record["pid"], record["start_time"])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(config.pid_file)


class EtcdMember:
    def __init__(self, config: MemberConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._healthy = threading.Event()
        self._failed: str = ""
        self._thread: threading.Thread | None = None

    def start(self, initial_cluster: str, state: str) -> None:
        """Starts the member and returns once it answers /health (Internal if it does not)."""
        os.makedirs(self.config.directory, mode=0o700, exist_ok=True)
        end_recorded(self.config)
        self._thread = threading.Thread(target=self._supervise, args=(initial_cluster, state), daemon=True,
                                        name="etcd member")  # fmt: skip
        self._thread.start()
        if not self._healthy.wait(HEALTHY_WITHIN) or self._failed:
            detail = self._failed or f"not healthy within {HEALTHY_WITHIN:.0f} s"
            self.stop()
            raise Internal(f"the etcd member did not start: {detail}; its log: {self.log_path}")

    @property
    def log_path(self) -> str:
        return os.path.join(self.config.directory, "etcd.log")

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def _spawn(self, initial_cluster: str, state: str) -> subprocess.Popen:
        with open(self.log_path, "ab") as log_file:
            process = subprocess.Popen(self.config.argv(initial_cluster, state), stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=log_file, preexec_fn=die_with_parent,
                                       start_new_session=True)  # fmt: skip
        record = {"pid": process.pid, "start_time": proc_start_time(process.pid)}
        with open(self.config.pid_file, "w") as handle:
            json.dump(record, handle)
        return process

    def _supervise(self, initial_cluster: str, state: str) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            self.process = self._spawn(initial_cluster, state)
            started = time.monotonic()
            while self.process.poll() is None and not self._stopping.is_set():
                if not self._healthy.is_set() and self.healthy():
                    self._healthy.set()
                self._stopping.wait(0.1 if not self._healthy.is_set() else 0.5)
            if self._stopping.is_set():
                return
            code = self.process.returncode
            if not self._healthy.is_set():
                self._failed = f"etcd exited with status {code} before it was healthy"
                self._healthy.set()
                return
            # Once it has a data directory, the flags for a new member no longer matter.
            log.warning("the etcd member exited (status %s); restarting it", code)
            self.restarts += 1
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 5.0)
            self._stopping.wait(backoff)

    def healthy(self) -> bool:
        connection = http.client.HTTPSConnection("127.0.0.1", self.config.client_port, timeout=1,
                                                 context=self.config.credentials.context())  # fmt: skip
        try:
            connection.request("GET", "/health")
            return json.loads(connection.getresponse().read()).get("health") == "true"
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; by PID. Idempotent."""
        self._stopping.set()
        end_child(self.process)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.pid_file)
