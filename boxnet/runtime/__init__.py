"""Containers as processes: launch, filesystem view, supervision, logs."""
