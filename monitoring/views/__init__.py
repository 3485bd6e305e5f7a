"""Ratchet's own pages. Views are thin: they read through the engine's history functions and
the monitoring read modules, and change state only through engine functions."""
