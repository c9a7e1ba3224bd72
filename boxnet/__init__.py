"""boxnet: container networking built from Linux primitives."""

__version__ = "0.1.0"
