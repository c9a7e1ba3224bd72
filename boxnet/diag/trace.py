"""`boxnet trace SRC DST[:PORT][/tcp|udp]`: the path a packet takes, where it is dropped, and a real probe.

The path is read from the kernel: the route lookup in SRC's namespace, SRC's veth and bridge, the host's
route onwards. Then one real packet goes along it: a TCP SYN, a UDP datagram or an ICMP echo from SRC's
namespace, with a source port (or echo id) chosen for it. A temporary table (`boxnet_trace_<port>`,
removed afterwards) sets nftrace on that packet alone, and `nft monitor trace` reports every chain it passes, the
rule that decides and any NAT on the way. The probe's own outcome (an answer, a refusal, silence) and the
trace together say whether it was delivered; the rule that dropped it is the reason.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from boxnet.checksum import internet_checksum
from boxnet.drivers import registry as drivers
from boxnet.engine.view import EngineView
from boxnet.errors import InvalidArgument, NotFound
from boxnet.kernel import conntrack, netns, nft
from boxnet.kernel.readiness import readable
from boxnet.model.container import Container
from boxnet.runtime.procs import dies_with_its_thread

PROBE_SECONDS = 1.5
TRACE_TABLE = "boxnet_trace"
TRACE_LINE = re.compile(r"^trace id (\w+) (\w+) (\S+) (\S+) (.*)$")
VERDICT = re.compile(r"\(verdict (\w+)(?: (\S+))?\)\s*$")
COUNTER = re.compile(r"counter packets \d+ bytes \d+")

REASONS = {
    "isolation": "traffic between networks is isolated (it would need a shared network or a published port)",
    "icc off": "the network has inter-container communication turned off (enable_icc=false)",
    "fwd_in": "the source network is internal: nothing leaves it",
}


@dataclass
class Endpoint:
    label: str
    address: str
    namespace: str | None  # a path; None for the daemon's namespace (the host)


@dataclass
class TraceResult:
    steps: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    delivered: bool = False
    probe: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"Steps": self.steps, "Chains": self.chains, "Delivered": self.delivered, "Probe": self.probe,
                "Reason": self.reason}  # fmt: skip


def parse_target(text: str) -> tuple[str, int, str]:
    """DST[:PORT][/tcp|udp] -> (name or address, port (0: ICMP echo), protocol)."""
    target, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise InvalidArgument(f"protocol must be tcp or udp, not {protocol!r}")
    port = 0
    if target.startswith("["):  # [v6]:port
        host, _, rest = target[1:].partition("]")
        target, port_text = host, rest.lstrip(":")
    elif target.count(":") == 1:
        target, port_text = target.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidArgument(f"invalid port {port_text!r}")
        port = int(port_text)
    if not target:
        raise InvalidArgument("trace needs a destination")
    return target, port, protocol if port else "icmp"


def parse_trace(lines: list[str]) -> tuple[list[str], str | None, str]:
    """From `nft monitor trace` output: each rule that matched, as 'table chain: rule (verdict)', the final
    verdict (accept, drop, or None if no chain decided), and the rule that dropped the packet.

    Only the first packet's path is kept: it ends where a step comes round again (a retransmission, or the
    next packet of the connection, which skips the NAT chains). Trace ids are no help here: the kernel gives
    the same packet a new one at another hook."""
    path: list[str] = []
    for line in lines:
        match = TRACE_LINE.match(line.strip())
        if not match:
            continue
        _, family, table, chain, rest = match.groups()
        if table.startswith(TRACE_TABLE) or not rest.startswith(("rule ", "policy ")):
            continue
        step = f"{family} {table} {chain}: {COUNTER.sub('counter', rest.removeprefix('rule '))}"
        if step in path:
            break
        path.append(step)
    final, dropper = None, ""
    for step in path:
        where, _, what = step.partition(": ")
        verdict = VERDICT.search(what)
        decided = verdict.group(1) if verdict else (what.split()[1] if what.startswith("policy ") else "")
        if decided in ("drop", "reject"):
            final, dropper = "drop", f"{where}: {VERDICT.sub('', what).strip()}"
            break
        if decided == "accept":
            final = "accept"
    return path, final, dropper


def reason_for(dropper: str) -> str:
    for key, text in REASONS.items():
        if key in dropper:
            return text
    return "dropped by this rule"


class Tracer:
    def __init__(self, view: EngineView, remote: Any = None) -> None:
        """remote: the swarm's side of a trace (diag/remote_trace.py), when this node is in one."""
        self.view = view
        self.registry = view
        self.remote = remote

    def trace(self, source: str, target: str) -> TraceResult:
        destination, port, protocol = parse_target(target)
        self.path_network: Any = None  # the network the probe leaves its source by
        with self.view.lock:
            src = self._source(source)
            dst_address = self._destination(destination, src)
        result = TraceResult()
        result.steps.append(f"from {src.label} ({src.address}) to {destination} ({dst_address})"
                            + (f" port {port}/{protocol}" if port else " (ICMP echo)"))  # fmt: skip
        if src.namespace is None and protocol == "tcp" and port:
            redirected = self.view.connect_redirect.destination_for(dst_address, port)
            if redirected:
                result.steps.append(f"connect() redirected by boxnet's connect4 program: {dst_address}:{port} -> "
                                    f"{redirected[0]}:{redirected[1]}, straight to the container (no NAT)")
                dst_address, port = redirected
        chosen = self._route_steps(result, src, dst_address)
        if chosen:
            src.address = chosen  # the address the kernel will put on the probe, which the trace rule matches
        self._probe(result, src, dst_address, port, protocol)
        return result

    # ---- who is who ----------------------------------------------------------------------------------
    def _container_endpoint(self, container: Container, near: Endpoint | None = None) -> Endpoint:
        if container.state.status != "running":
            raise InvalidArgument(f"container {container.name} is not running")
        owner = self.registry.netns_owner(container)
        if owner.network_mode == "host":
            return Endpoint(f"container {container.name} (host network)", self._host_address(), None)
        endpoints = list(owner.endpoints.values())
        if not endpoints:
            raise InvalidArgument(f"container {container.name} has no network interface to trace from or to")
        chosen = endpoints[0]
        if near is not None and near.namespace:
            source = self._container_of(near.namespace)
            shared = [e for e in endpoints if source is not None and e.network_id in source.endpoints]
            chosen = shared[0] if shared else chosen
        return Endpoint(f"container {container.name}", chosen.ipv4.split("/")[0] or chosen.ipv6.split("/")[0],
                        owner.sandbox_key)  # fmt: skip

    def _container_of(self, namespace: str) -> Container | None:
        return next((c for c in self.registry.containers.values() if c.sandbox_key == namespace), None)

    def _by_address(self, address: str) -> Container | None:
        for container in self.registry.containers.values():
            if container.state.status != "running":
                continue
            for endpoint in container.endpoints.values():
                if address in (endpoint.ipv4.split("/")[0], endpoint.ipv6.split("/")[0]):
                    return container
        return None

    @staticmethod
    def _host_address() -> str:
        with IPRoute() as ipr:
            for route in ipr.get_routes(family=socket.AF_INET, table=254):
                if route.get_attr("RTA_DST") is None and route["dst_len"] == 0:
                    found = ipr.route("get", dst=route.get_attr("RTA_GATEWAY"))
                    return found[0].get_attr("RTA_PREFSRC")
        return "127.0.0.1"

    def _source(self, text: str) -> Endpoint:
        if text == "host":
            return Endpoint("the host", self._host_address(), None)
        container = self.registry.container_by_name(text)
        if container is None:
            try:
                address = str(ipaddress.ip_address(text))
            except ValueError:
                container = self.registry.find_container(text)  # an id or prefix, or a clear NotFound
            else:
                owner = self._by_address(address)
                if owner is not None:
                    return self._container_endpoint(owner)
                if address == self._host_address():
                    return Endpoint("the host", address, None)
                raise InvalidArgument(f"{address} is not a container's or the host's: boxnet can only send the "
                                      "probe from a namespace it owns (a container or the host)")  # fmt: skip
        return self._container_endpoint(container)

    def _destination(self, text: str, near: Endpoint) -> str:
        if text == "host":
            return self._host_address()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            pass
        try:
            return self._container_endpoint(self.registry.find_container(text), near).address
        except NotFound:
            # A container on another node of the swarm, on a network the source shares.
            source = self._container_of(near.namespace) if near.namespace else None
            networks = set(source.endpoints) if source else set()
            remote = self.view.remote_address(text, networks)
            if remote:
                return remote
            # A service of the swarm: its VIP on a network the source shares.
            vip = self.remote.service_address(text, networks) if self.remote is not None else ""
            if vip:
                return vip
            raise

    # ---- the path, from the kernel's routing tables ----------------------------------------------------
    def _route_steps(self, result: TraceResult, src: Endpoint, dst: str) -> str:
        """The route lookups along the way; returns the source address the kernel chose."""
        lookup = _route_get if src.namespace is None else (lambda d: netns.run_in(src.namespace, _route_get, d))
        route = lookup(dst)
        if route is None:
            result.steps.append(f"route in {src.label}: none to {dst} (network unreachable)")
            result.reason = f"no route from {src.label} to {dst}" + (
                " (its networks are internal: no default route, no way out)" if self._internal_only(src) else "")
            return ""
        via = f" via {route['gateway']}" if route["gateway"] else ""
        result.steps.append(f"route in {src.label}: {dst}{via} dev {route['dev']} src {route['src']}")
        if src.namespace is None:
            return route["src"]
        container = self._container_of(src.namespace)
        endpoint = next((e for e in container.endpoints.values() if e.ifname == route["dev"]), None) if container \
            else None  # fmt: skip
        if endpoint is None:
            return route["src"]
        network = self.registry.networks.get(endpoint.network_id)
        if network is None:
            return route["src"]
        self.path_network = network
        driver = drivers.of(network)
        result.steps.append(f"{driver.describe_endpoint(network, endpoint)} (container {container.name}, network "
                            f"{network.name})")  # fmt: skip
        if not driver.capabilities.subnet_on_host:
            return route["src"]  # the host's routing table is not on this path
        bridge = network.bridge
        onward = _route_get(dst)
        if onward is not None:
            if onward["dev"] == bridge:
                result.steps.append(f"bridge {bridge}: {dst} is on the same bridge (switched, not routed)")
            else:
                via = f" via {onward['gateway']}" if onward["gateway"] else ""
                result.steps.append(f"route on the host: {dst}{via} dev {onward['dev']}")
        return route["src"]

    def _internal_only(self, src: Endpoint) -> bool:
        container = self._container_of(src.namespace) if src.namespace else None
        networks = [self.registry.networks.get(e.network_id) for e in container.endpoints.values()] if container \
            else []  # fmt: skip
        return bool(networks) and all(n is not None and n.internal for n in networks)

    # ---- the probe ---------------------------------------------------------------------------------------
    def _probe(self, result: TraceResult, src: Endpoint, dst: str, port: int, protocol: str) -> None:
        if protocol in ("tcp", "udp"):  # a port free in the source's namespace (a random one may be taken there)
            pick = _free_port if src.namespace is None else (lambda *a: netns.run_in(src.namespace, _free_port, *a))
            marker = pick(protocol, ":" in dst)
        else:
            marker = random.randint(20000, 60000)
        far = self._far_side(dst)
        watch = TraceWatch(src.address, protocol, marker, self.view.trace_records)
        watch.start()
        try:
            remote = far.begin(src.address, protocol, marker) if far is not None else None
            send = _send_probe if src.namespace is None else (lambda *a: netns.run_in(src.namespace, _send_probe, *a))
            outcome, answered = send(dst, port, protocol, marker)
            time.sleep(0.2)
        finally:
            lines = watch.finish()
        chains, verdict, dropper = parse_trace(lines)
        result.chains = chains
        result.probe = outcome
        for line in chains:
            result.steps.append(f"nftables {line}")
        if far is not None and remote is not None:
            backend = self._answering(src, dst, marker, protocol)
            network = self.path_network
            tunnel = drivers.of(network).tunnel_step(network, backend) if network is not None else None
            far.report(result, remote, dst, backend, tunnel)
        result.steps.append(f"probe: {outcome}")
        if answered is True or (answered is None and verdict != "drop"):
            result.delivered = True
            result.reason = "delivered"
        else:
            result.delivered = False
            if dropper:
                result.reason = f"dropped at {dropper}: {reason_for(dropper)}"
            elif not result.reason:  # set already when there was no route at all
                result.reason = "no answer, and no rule of boxnet's dropped it (dropped elsewhere, or lost)"

    def _far_side(self, dst: str) -> Any:
        """What another node of the swarm reports of this probe, when the destination is there (or is a VIP)."""
        return self.remote.far_side(dst) if self.remote is not None else None

    @staticmethod
    def _answering(src: Endpoint, dst: str, marker: int, protocol: str) -> str:
        """The address that answered the probe's flow in the source's conntrack (a VIP's chosen backend)."""
        look = (lambda *a: conntrack.reply_source(*a)) if src.namespace is None else \
            (lambda *a: netns.run_in(src.namespace, conntrack.reply_source, *a))  # fmt: skip
        try:
            return look(src.address, dst, marker, protocol) or dst
        except OSError:
            return dst


class TraceWatch:
    """nftrace set on one probe (by its source address and source port, or echo id) in this namespace, and
    `nft monitor trace` reading every chain it meets. The table (`boxnet_trace_<marker>`) is its own: two
    traces at once do not remove each other's."""

    def __init__(self, source: str, protocol: str, marker: int, record_dir: str) -> None:
        """record_dir: where the table's name is written before it exists (and removed after it is gone), so
        that a daemon killed mid-trace removes it when it starts again (end_recorded_traces)."""
        if "%" in source:  # a scope id is free text: it never goes into a rule
            raise InvalidArgument(f"bad trace source {source!r}")
        address = ipaddress.ip_address(source)  # what goes into the rule is checked first
        if protocol not in ("tcp", "udp", "icmp") or not 0 < int(marker) < 65536:
            raise InvalidArgument(f"bad trace selector {protocol} {marker}")
        family = "ip6" if address.version == 6 else "ip"
        match = {"tcp": f"tcp sport {marker}", "udp": f"udp sport {marker}"}.get(protocol) or (
            f"icmp{'v6' if family == 'ip6' else ''} id {marker}")
        selector = f"{family} saddr {address} {match}"
        self.table = f"{TRACE_TABLE}_{int(marker)}"
        self.record = os.path.join(record_dir, self.table)
        table = self.table
        self.commands = [
            f"add table inet {table}",
            f"add chain inet {table} pre {{ type filter hook prerouting priority -350; }}",
            f"add chain inet {table} out {{ type filter hook output priority -350; }}",
            f"add rule inet {table} pre {selector} meta nftrace set 1",
            f"add rule inet {table} out {selector} meta nftrace set 1",
            f"add table bridge {table}",
            f"add chain bridge {table} pre {{ type filter hook prerouting priority -350; }}",
            f"add rule bridge {table} pre {selector} meta nftrace set 1",
        ]
        self.monitor: subprocess.Popen | None = None

    def start(self) -> None:
        self.monitor = subprocess.Popen(dies_with_its_thread(["nft", "monitor", "trace"]), stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            os.makedirs(os.path.dirname(self.record), exist_ok=True)
            with open(self.record, "w"):
                pass
            nft.run(self.commands)
        except BaseException:
            self.finish()
            raise
        time.sleep(0.1)  # the monitor subscribes before the probe leaves

    def finish(self) -> list[str]:
        _delete_trace_tables(self.table)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.record)
        if self.monitor is None:
            return []
        self.monitor.terminate()
        output, _ = self.monitor.communicate(timeout=5)
        self.monitor = None
        return output.decode(errors="replace").splitlines()

    def reached(self, lines: list[str]) -> bool:
        """Whether the probe passed here at all (its own trace rule saw it)."""
        return any(f" {self.table} " in line for line in lines)


def _delete_trace_tables(table: str) -> None:
    for family in ("inet", "bridge"):  # one at a time: either may be missing (a trace cut short)
        with contextlib.suppress(nft.NftError):
            nft.run([f"delete table {family} {table}"])


def end_recorded_traces(record_dir: str) -> list[str]:
    """At start-up: the tables of traces that a killed daemon left, as it recorded them (names checked)."""
    ended = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(record_dir):
            if re.fullmatch(rf"{TRACE_TABLE}_\d{{1,5}}", name):
                _delete_trace_tables(name)
                ended.append(name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(record_dir, name))
    return ended


def _route_get(destination: str) -> dict[str, Any] | None:
    with IPRoute() as ipr:
        try:
            found = ipr.route("get", dst=destination)
        except Exception:  # pyroute2 raises NetlinkError for an unreachable destination
            return None
        if not found:
            return None
        route = found[0]
        index = route.get_attr("RTA_OIF")
        names = ipr.get_links(index) if index else []
        return {"dev": names[0].get_attr("IFLA_IFNAME") if names else "?", "gateway": route.get_attr("RTA_GATEWAY"),
                "src": route.get_attr("RTA_PREFSRC") or ""}  # fmt: skip


def _free_port(protocol: str, ipv6: bool) -> int:
    """A source port nothing in this namespace holds, as the kernel picks one."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, kind) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _send_probe(destination: str, port: int, protocol: str, marker: int) -> tuple[str, bool | None]:
    """One packet from this namespace. (what happened, True answered / False silence / None can't tell)."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    if protocol == "tcp":
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", marker))
            sock.settimeout(PROBE_SECONDS)
            try:
                sock.connect((destination, port))
                return f"TCP connection to {destination}:{port} established", True
            except ConnectionRefusedError:
                return f"TCP SYN delivered; {destination}:{port} refused it (nothing listening)", True
            except TimeoutError:
                return f"no answer to a TCP SYN within {PROBE_SECONDS}s", False
            except OSError as exc:
                return f"TCP connect failed: {exc.strerror}", False
    if protocol == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind(("", marker))
            sock.settimeout(PROBE_SECONDS)
            try:
                sock.connect((destination, port))
                sock.send(b"boxnet trace probe")
                sock.recv(2048)
                return f"UDP datagram answered by {destination}:{port}", True
            except ConnectionRefusedError:
                return f"UDP datagram delivered; {destination}:{port} is closed (ICMP port unreachable)", True
            except TimeoutError:
                return "UDP datagram sent; no answer (UDP need not answer)", None
            except OSError as exc:
                return f"UDP send failed: {exc.strerror}", False
    icmp = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    with socket.socket(family, socket.SOCK_RAW, icmp) as sock:
        kind = 128 if family == socket.AF_INET6 else 8
        header = struct.pack("!BBHHH", kind, 0, 0, marker, 1)
        payload = b"boxnet trace"
        checksum = 0 if family == socket.AF_INET6 else internet_checksum(header + payload)
        sock.sendto(struct.pack("!BBHHH", kind, 0, checksum, marker, 1) + payload, (destination, 0))
        deadline = time.monotonic() + PROBE_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            ready = readable([sock], remaining)
            if not ready:
                break
            data = sock.recv(2048)
            offset = 0 if family == socket.AF_INET6 else (data[0] & 0x0F) * 4
            reply = 129 if family == socket.AF_INET6 else 0
            if len(data) >= offset + 8 and data[offset] == reply and struct.unpack_from("!H", data, offset + 4)[0] \
                    == marker:  # fmt: skip
                return f"ICMP echo answered by {destination}", True
        return f"no answer to an ICMP echo within {PROBE_SECONDS}s", False


