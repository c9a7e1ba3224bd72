"""Network drivers: what a network of each kind means in kernel objects."""
