"""Dagster wiring for Fabric. Only wiring lives here; the logic is in the `fabric` package."""
