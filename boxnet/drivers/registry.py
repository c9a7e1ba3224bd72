"""Drivers by name: the only place that knows which drivers exist."""

from __future__ import annotations

from boxnet.drivers.api import NetworkDriver
from boxnet.drivers.bridge import BridgeDriver
from boxnet.drivers.host import HostDriver
from boxnet.drivers.macvlan import MacvlanDriver
from boxnet.drivers.null import NullDriver
from boxnet.drivers.overlay import OverlayDriver
from boxnet.errors import InvalidArgument
from boxnet.model.network import Network

_DRIVERS: dict[str, NetworkDriver] = {
    d.name: d for d in (BridgeDriver(), HostDriver(), NullDriver(), MacvlanDriver(), OverlayDriver())
}


def names() -> list[str]:
    return list(_DRIVERS)


def get(name: str) -> NetworkDriver:
    driver = _DRIVERS.get(name)
    if driver is None:
        creatable = ", ".join(n for n, d in _DRIVERS.items() if d.capabilities.user_created)
        raise InvalidArgument(f"unknown network driver {name!r}; known: {creatable}")
    return driver


def for_creation(name: str) -> NetworkDriver:
    driver = get(name)
    if not driver.capabilities.user_created:
        raise InvalidArgument(f"only one instance of the {name!r} network is allowed; use --driver bridge")
    return driver


def of(network: Network) -> NetworkDriver:
    return get(network.driver)
