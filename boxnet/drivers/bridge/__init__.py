"""The bridge driver: a Linux bridge per network, a veth pair per endpoint, nftables for NAT and isolation."""

from boxnet.drivers.bridge.driver import BridgeDriver

__all__ = ["BridgeDriver"]
