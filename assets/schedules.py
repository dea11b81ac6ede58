"""The nightly schedule: yesterday's partition plus a trailing window for late-arriving data."""

from datetime import date, timedelta

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fabric.config import FabricConfig
from fabric.partitions import Window

DAILY_JOB = "fabric_daily"
INTEGRATE_JOB = "fabric_integrate"


def nightly_window(run_day: date, trailing_days: int, first_partition: date) -> Window:
    """The window a nightly run on `run_day` covers: yesterday and the `trailing_days` before.

    Re-materializing the trailing days absorbs source data that arrived late; every step
    replaces partitions atomically, so the re-run converges instead of duplicating.
    """
    end = run_day - timedelta(days=1)
    return Window(max(first_partition, end - timedelta(days=trailing_days)), end)


def partition_range_tags(window: Window) -> dict[str, str]:
    """Run tags that make one run cover a partition range (single-run backfill)."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: window.start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: window.end.isoformat(),
    }


def nightly_schedule(config: FabricConfig) -> dg.ScheduleDefinition:
    trailing = config.partitions.trailing_window_days
    first = config.partitions.start_date

    @dg.schedule(
        name="nightly",
        cron_schedule=config.partitions.schedule,
        job_name=DAILY_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every night: yesterday's partition and the {trailing} days before it, in one run."
        ),
    )
    def _nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        window = nightly_window(context.scheduled_execution_time.date(), trailing, first)
        return dg.RunRequest(
            run_key=f"nightly-{window.end.isoformat()}",
            tags=partition_range_tags(window),
        )

    return _nightly
