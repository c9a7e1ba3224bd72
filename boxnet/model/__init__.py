"""Typed desired state and its validation. No I/O happens here."""
