"""The overlay driver: a network across the swarm's nodes, VXLAN between them, a bridge on each."""

from boxnet.drivers.overlay.driver import OverlayDriver

__all__ = ["OverlayDriver"]
