"""The embedded DNS at 127.0.0.11: packets, names, the resolver process and its control channel."""
