"""Address management: pure allocation logic, no I/O."""
