"""Read-only tools over the engine's read API (engine/view.py): topology, trace, capture targets."""
