"""Dagster wiring for Fabric. Only wiring lives here; the logic is in the `fabric` package."""
# No `from __future__ import annotations` here: Dagster reads the context annotations at definition time.
