"""Test fixtures: a sandbox host with its own daemon, a simulated outside, and an attacker."""
