"""boxnetd: the daemon. Runs as root in whatever network namespace it is started in."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import sys
import threading

from boxnet import paths
from boxnet.api.access import AccessPolicy
from boxnet.api.routes import build_router
from boxnet.api.server import UnixHTTPServer
from boxnet.cluster.swarm import ExternalStore
from boxnet.dns.upstream import parse_upstream
from boxnet.engine.context import EngineConfig
from boxnet.engine.controller import Engine
from boxnet.images.registry_access import check_insecure_registry
from boxnet.store.etcd import Credentials

log = logging.getLogger("boxnetd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="boxnetd", description="boxnet's daemon")
    parser.add_argument("--root", default=paths.state_root(), help="state directory (BOXNET_ROOT)")
    parser.add_argument("--socket", default=None, help="API socket (default: from BOXNET_HOST/BOXNET_ROOT)")
    parser.add_argument(
        "--netns-registry", default="/run/netns", help="where container namespaces are registered for `ip netns exec`"
    )
    parser.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        help="the resolv.conf whose nameservers the default bridge's containers get",
    )
    parser.add_argument(
        "--dns-upstream",
        action="append",
        default=[],
        metavar="IP[#PORT]",
        help="where the embedded DNS forwards other names (default: --resolv-conf's nameservers)",
    )
    parser.add_argument("--bridge-name", default="boxnet0", help="the default network's bridge")
    parser.add_argument(
        "--no-connect-redirect",
        dest="connect_redirect",
        action="store_false",
        help="send the host's own connections to published ports through NAT, not straight to the container",
    )
    parser.add_argument(
        "-G", "--group", default=None, metavar="NAME",
        help="a group whose members may use the API socket besides root (as dockerd's -G)",
    )
    parser.add_argument("--node-ttl", type=int, default=10, metavar="SECONDS",
                        help="in a swarm, how long peers wait before a silent node counts as gone (at least 2)")
    parser.add_argument("--cluster-store", default="", metavar="etcd://HOST:PORT[,HOST:PORT...]",
                        help="an etcd cluster you run, instead of the members swarm managers run: every daemon "
                             "pointed at it is a node of one swarm")  # fmt: skip
    parser.add_argument("--cluster-advertise", default="", metavar="ADDR|IFACE",
                        help="with --cluster-store: the address other nodes reach this one at")
    parser.add_argument("--cluster-store-ca", default="", help="with --cluster-store over TLS: the etcd CA")
    parser.add_argument("--cluster-store-cert", default="", help="with --cluster-store over TLS: a client cert")
    parser.add_argument("--cluster-store-key", default="", help="with --cluster-store over TLS: its key")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT|CIDR",
                        help="a registry pulled from over plain HTTP (as dockerd's; loopback ones always are)")
    parser.add_argument("--log-level", default=os.environ.get("BOXNET_LOG", "info"))
    args = parser.parse_args(argv)
    for registry in args.insecure_registry:
        try:
            check_insecure_registry(registry)
        except ValueError as exc:
            parser.error(f"--insecure-registry {registry!r}: {exc}")
    args.external_store = _external_store(parser, args)
    if args.node_ttl < 2:
        parser.error("--node-ttl: at least 2 seconds (etcd's shortest lease)")
    return args


def _external_store(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ExternalStore | None:
    tls = [args.cluster_store_ca, args.cluster_store_cert, args.cluster_store_key]
    if not args.cluster_store:
        if any(tls) or args.cluster_advertise:
            parser.error("--cluster-advertise and --cluster-store-* go with --cluster-store")
        return None
    if any(tls) and not all(tls):
        parser.error("--cluster-store over TLS needs all of --cluster-store-ca, -cert and -key")
    scheme, _, hosts = args.cluster_store.partition("://")
    if scheme != "etcd" or not hosts:
        parser.error("--cluster-store: expected etcd://HOST:PORT[,HOST:PORT...]")
    endpoints = [f"{'https' if any(tls) else 'http'}://{h}" for h in hosts.split(",") if h]
    credentials = Credentials(*tls) if any(tls) else None
    return ExternalStore(endpoints, credentials, args.cluster_advertise)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("boxnetd: must run as root", file=sys.stderr)
        return 1
    socket_path = args.socket or (
        os.path.join(args.root, "boxnet.sock") if args.root != paths.DEFAULT_ROOT else paths.socket_path()
    )
    config = EngineConfig(root=args.root, netns_registry=args.netns_registry, resolv_conf=args.resolv_conf,
                          default_bridge=args.bridge_name, dns_upstreams=args.dns_upstream,
                          connect_redirect=args.connect_redirect, node_ttl=args.node_ttl,
                          cluster_store=args.external_store,
                          insecure_registries=args.insecure_registry)  # fmt: skip
    for upstream in args.dns_upstream:
        try:
            parse_upstream(upstream)
        except ValueError as exc:
            print(f"boxnetd: bad --dns-upstream {upstream!r}: {exc}", file=sys.stderr)
            return 2
    try:
        policy = AccessPolicy(args.group)
    except ValueError as exc:
        print(f"boxnetd: bad --group: {exc}", file=sys.stderr)
        return 2
    # A socket held per published port (kernel/port_reservations.py), a pidfd per container: the soft limit
    # of open files (often 1024) would otherwise cap the ports that can be published.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    engine = Engine(config)
    engine.start()
    server = UnixHTTPServer(socket_path, build_router(engine), policy)
    stopping = threading.Event()

    def shutdown(signum: int, frame: object) -> None:
        # Live restore: containers keep running; the next boxnetd adopts them.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("boxnetd %s listening on %s (state in %s)", os.getpid(), socket_path, args.root)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
