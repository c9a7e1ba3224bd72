"""Firewall rules as data, rendered into nftables JSON transactions. No I/O."""
