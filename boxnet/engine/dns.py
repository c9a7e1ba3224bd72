"""The engine's side of the embedded DNS: which containers get it, and keeping the resolver told.

Every change of names is sent before the API call that made it returns, so a container is resolvable by
the time `run` or `connect` returns and gone by the time `rm` or `disconnect` does. Before the resolver runs
(early in start-up) changes are not sent: `start` hands it the whole state from the ledger, as it does
after a daemon restart and if the resolver ever dies.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from boxnet.dns import redirect
from boxnet.dns.control import ResolverGone, ResolverProcess
from boxnet.drivers import registry as drivers
from boxnet.errors import Internal
from boxnet.kernel import netns
from boxnet.model.container import Container, Endpoint
from boxnet.model.network import Network
from boxnet.runtime import files

if TYPE_CHECKING:
    from boxnet.engine.context import EngineContext

log = logging.getLogger(__name__)


class DnsService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.registry = ctx.registry
        self.process: ResolverProcess | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        with self.ctx.lock:
            self.process = ResolverProcess()
            self.process.start()
            self._sync()
            threading.Thread(target=self._watch, args=(self.process,), name="dns-watch", daemon=True).start()

    def _watch(self, process: ResolverProcess) -> None:
        """A resolver that dies on its own is replaced at once, not at the next change of names."""
        status = process.wait()
        with self.ctx.lock:
            if self.process is process:
                log.error("the DNS resolver (pid %d) ended with status %d; starting a new one", process.pid, status)
                self.process = None
                process.stop()
                self.start()

    def stop(self) -> None:
        with self.ctx.lock:
            process, self.process = self.process, None
        if process is not None:
            process.stop()

    def _sync(self) -> None:
        """Hands a fresh resolver everything: networks, every running container's names, and new sockets
        for the containers that use it (on the ports their redirect rules already name, where free); in a
        swarm, the names of the containers on other nodes too."""
        self._sync_local()
        if self.ctx.cluster is not None:
            self.ctx.cluster.name_all()

    def _sync_local(self) -> None:
        for network in self.registry.networks.values():
            self.network_added(network)
        for container in self.registry.containers.values():
            if container.state.status != "running":
                continue
            for endpoint in container.endpoints.values():
                network = self.registry.networks.get(endpoint.network_id)
                if network is not None:
                    self.endpoint_added(container, network, endpoint)
            if self.embedded(container) and container.sandbox_key:
                try:
                    self.serve(container)
                except (OSError, Internal) as exc:  # its namespace is gone: the monitor will see it exited
                    log.warning("DNS for %s not restored: %s", container.name, exc)

    def _send(self, message: dict, fds: list[int] | None = None) -> None:
        if self.process is None:
            return
        try:
            self.process.request(message, fds)
        except ResolverGone as exc:
            # A fresh one gets everything from the ledger, then this change again: a container that is
            # still starting is not in the ledger as running yet. Every change can be applied twice.
            log.error("%s; starting a new resolver", exc)
            self.stop()
            self.start()
            if self.process is not None:
                self.process.request(message, fds)

    # ---- what gets it --------------------------------------------------------------------------------
    def embedded(self, container: Container) -> bool:
        """Docker's rule: a container whose first network is user-defined gets 127.0.0.11; on the default
        bridge, in host or none mode it gets the host's nameservers; container:X shares X's resolv.conf."""
        mode = container.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            return False
        network = self.registry.network_by_name(mode)
        return (network is not None and drivers.of(network).capabilities.embedded_dns
                and not network.is_default_bridge)  # fmt: skip

    def upstreams(self, container: Container) -> list[str]:
        if container.dns:
            return list(container.dns)
        if self.ctx.config.dns_upstreams:
            return list(self.ctx.config.dns_upstreams)
        # Forwarded from the daemon's namespace, so the host's own loopback resolver works too.
        nameservers, _, _ = files.parse_resolv_conf(self.host_resolv_conf())
        return nameservers

    def host_resolv_conf(self) -> str:
        try:
            with open(self.ctx.config.resolv_conf) as handle:
                return handle.read()
        except OSError:
            return ""

    def resolv_conf(self, container: Container) -> str:
        host = self.host_resolv_conf()
        if self.embedded(container):
            return files.embedded_resolv_conf(host, container.dns_search, container.dns_options)
        return files.container_resolv_conf(host, container.dns, container.dns_search, container.dns_options)

    # ---- changes -------------------------------------------------------------------------------------
    def network_added(self, network: Network) -> None:
        if not drivers.of(network).capabilities.endpoints:
            return
        self._send({"op": "network", "id": network.id, "name": network.name, "internal": network.internal,
                    "subnets": [s.subnet for s in network.subnets],
                    "discoverable": network.serves_names})  # fmt: skip

    def network_removed(self, network: Network) -> None:
        self._send({"op": "drop-network", "id": network.id})

    def _tells_resolver(self, container: Container, network: Network | None) -> bool:
        """The default bridge serves no names; it only counts as a way out for a container that uses the
        resolver. Anything else there is none of the resolver's business (and costs no round trip)."""
        return network is None or not network.is_default_bridge or self.embedded(container)

    def endpoint_added(self, container: Container, network: Network, endpoint: Endpoint) -> None:
        if not self._tells_resolver(container, network):
            return
        self._send({
            "op": "register", "container": container.id, "network": network.id, "network_name": network.name,
            "name": container.name, "hostname": container.hostname, "aliases": endpoint.aliases,
            "ipv4": _address(endpoint.ipv4), "ipv6": _address(endpoint.ipv6),
        })  # fmt: skip

    def remote_endpoint_added(self, network: Network, endpoint_id: str, name: str, hostname: str,
                              aliases: list[str], ipv4: str) -> None:  # fmt: skip
        """A container on another node of the swarm, on a network containers here share: its names."""
        self._send({
            "op": "register", "container": f"remote:{endpoint_id}", "network": network.id,
            "network_name": network.name, "name": name, "hostname": hostname, "aliases": aliases, "ipv4": ipv4,
            "ipv6": "",
        })  # fmt: skip

    def remote_endpoint_removed(self, network_id: str, endpoint_id: str) -> None:
        self._send({"op": "unregister", "container": f"remote:{endpoint_id}", "network": network_id})

    def endpoint_removed(self, container: Container, network_id: str) -> None:
        if not self._tells_resolver(container, self.registry.networks.get(network_id)):
            return
        self._send({"op": "unregister", "container": container.id, "network": network_id})

    def serve(self, container: Container) -> None:
        """Makes 127.0.0.11 answer inside the container's namespace."""
        if self.process is None:
            return
        udp, tcp = netns.run_in(container.sandbox_key, redirect.install)
        try:
            self._send({"op": "serve", "container": container.id, "upstreams": self.upstreams(container)},
                       [udp.fileno(), tcp.fileno()])  # fmt: skip
        finally:
            udp.close()  # the resolver holds its own copies now
            tcp.close()

    def unserve(self, container: Container) -> None:
        self._send({"op": "unserve", "container": container.id})

    def forget(self, container: Container) -> None:
        self._send({"op": "forget", "container": container.id})

    def status(self) -> dict:
        process = self.process
        return {"Pid": process.pid if process else 0, "Address": redirect.ADDRESS,
                "Upstreams": self.ctx.config.dns_upstreams or files.parse_resolv_conf(self.host_resolv_conf())[0]}

    def query_log(self, container: Container, tail: int) -> list[dict]:
        if self.process is None:
            return []
        return self.process.request({"op": "log", "container": container.id, "tail": tail})["entries"]


def _address(cidr: str) -> str:
    return cidr.split("/", 1)[0] if cidr else ""
