"""Many hosts on one machine: an underlay namespace with a bridge, host namespaces each with its own boxnetd,
formed into a swarm. A Python API (`Lab`) for tests and scripts, and `boxnet lab ...` on top of it."""

from boxnet.lab.lab import Lab, LabHost

__all__ = ["Lab", "LabHost"]
