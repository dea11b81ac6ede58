"""The daily partitions every Fabric asset shares, and the window a run covers."""

from __future__ import annotations

import dagster as dg

from fabric.config import FabricConfig
from fabric.partitions import Window

# Every asset that writes the DuckDB warehouse runs in this pool; the project's dagster.yaml
# limits every pool to one slot, so two runs never write the single-writer file at once.
WAREHOUSE_POOL = "duckdb_warehouse"


def daily_partitions(config: FabricConfig) -> dg.DailyPartitionsDefinition:
    """Daily partitions on business date, UTC, from the configured start date to yesterday."""
    return dg.DailyPartitionsDefinition(start_date=config.partitions.start_date.isoformat())


def run_window(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> Window:
    """The inclusive partition window of the current step (one day or a backfill range)."""
    key_range = context.partition_key_range
    return Window.parse(key_range.start, key_range.end)
