"""The macvlan driver: containers get their own MAC on a host interface (the parent), straight on its LAN."""

from boxnet.drivers.macvlan.driver import MacvlanDriver

__all__ = ["MacvlanDriver"]
