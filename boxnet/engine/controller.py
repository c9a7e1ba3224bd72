"""The engine: one object that the API, the CLI's Python API and the tests drive."""

from __future__ import annotations

import logging
import os

from boxnet.engine.containers import ContainerService
from boxnet.engine.context import EngineConfig, EngineContext
from boxnet.engine.execs import ExecService
from boxnet.engine.firewall_watch import FirewallWatch
from boxnet.engine.networks import NetworkService
from boxnet.engine.reconcile import Reconciler
from boxnet.engine.registry import Registry
from boxnet.engine.view import EngineView
from boxnet.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        os.makedirs(config.root, mode=0o710, exist_ok=True)
        os.makedirs(config.containers_dir, exist_ok=True)
        self.config = config
        self.store = SqliteStore(os.path.join(config.root, "boxnet.db"))
        self.ctx = EngineContext(config=config, registry=Registry(self.store))
        self.registry = self.ctx.registry
        # What the API and the tools read; changes go through the services below.
        self.view = EngineView(self.ctx)
        self.networks = NetworkService(self.ctx)
        self.containers = ContainerService(self.ctx)
        self.execs = ExecService(self.ctx)
        self.reconciler = Reconciler(self.ctx, self.containers, self.networks)
        self.firewall_watch = FirewallWatch(self.ctx)

    def start(self) -> dict[str, list[str]]:
        """Live restore: adopt what survived, settle what did not, repair the kernel, then serve."""
        self.containers.monitor.start()
        if self.config.connect_redirect:
            self.ctx.firewall.connect_redirect.start()
        # The table's skeleton must exist before a network adds its chain to it. Changes by anyone else
        # from here on are noticed; the reconciler's rebuild below covers what came before.
        self.firewall_watch.start()
        self.ctx.firewall.rebuild(self.registry)
        self.networks.ensure_predefined()
        report = self.reconciler.at_startup()
        # After the reconciler: the resolver gets the settled state (survivors only) in one go.
        self.ctx.dns.start()
        log.info("started: %s", {k: v for k, v in report.items() if v})
        return report

    def close(self) -> None:
        self.containers.restarts.close()
        self.firewall_watch.stop()
        self.ctx.dns.stop()
        self.ctx.firewall.connect_redirect.close()
        self.containers.monitor.stop()
        self.containers.launcher.close()
        self.store.close()
