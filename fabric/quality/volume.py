"""Row-count anomalies: each partition's volume against a trailing window of earlier partitions.

For partition D the baseline is the row counts of the partitions present in the
`trailing_days` before D. The expected band is the baseline's median plus or minus the larger
of `mad_factor` robust standard deviations (1.4826 x the median absolute deviation) and
`tolerance` x the median, so a steady source tolerates a relative swing and a noisy one its
usual noise. Below the band is a `drop` (a partition with no rows at all is one), above it a
`spike`. With fewer than `min_history` earlier partitions there is nothing to compare with:
status `no_history`, which passes. One `GROUP BY` query counts the window and its history.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import duckdb

from fabric.identifiers import qualified, quote, split_qualified
from fabric.quality.sql_engine import as_date, table_columns

VolumeStatus = Literal["ok", "spike", "drop", "no_history"]
_MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class VolumeCheck:
    """One partition's row count judged against its trailing window."""

    partition: date
    rows: int
    history: int  # earlier partitions the baseline was computed from
    median: float | None
    low: float | None
    high: float | None
    status: VolumeStatus

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "no_history")

    def describe(self) -> str:
        """e.g. `2026-01-05: 12 rows, expected 950..1,050 (median 1,000 of 14 days): drop`."""
        if self.median is None or self.low is None or self.high is None:
            return f"{self.partition}: {self.rows:,} rows, {self.history} earlier partitions: no_history"
        return (
            f"{self.partition}: {self.rows:,} rows, expected {max(self.low, 0):,.0f}..{self.high:,.0f} "
            f"(median {self.median:,.0f} of {self.history} partitions): {self.status}"
        )

    def metadata(self) -> dict[str, Any]:
        """JSON-compatible fields for Dagster metadata."""
        return {
            "rows": self.rows,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "history": self.history,
            "status": self.status,
        }


def volume_anomalies(
    con: duckdb.DuckDBPyConnection,
    table: str,
    partition_column: str,
    partitions: Sequence[date],
    *,
    trailing_days: int = 14,
    min_history: int = 5,
    tolerance: float = 0.3,
    mad_factor: float = 5.0,
) -> list[VolumeCheck]:
    """Judge each of `partitions` of `table`; a missing table counts as zero rows everywhere."""
    days = sorted(set(partitions))
    if not days:
        return []
    counts: dict[date, int] = {}
    columns = table_columns(con, table)
    if columns is not None and partition_column in columns:
        column = quote(partition_column)
        rows = con.execute(
            f"SELECT {column}, count(*) FROM {qualified(*split_qualified(table))} "
            f"WHERE {column} BETWEEN ? AND ? GROUP BY 1",
            [days[0] - timedelta(days=trailing_days), days[-1]],
        ).fetchall()
        counts = {as_date(day): int(n) for day, n in rows if day is not None}
    return [_judge(day, counts, trailing_days, min_history, tolerance, mad_factor) for day in days]


def _judge(
    day: date,
    counts: dict[date, int],
    trailing_days: int,
    min_history: int,
    tolerance: float,
    mad_factor: float,
) -> VolumeCheck:
    rows = counts.get(day, 0)
    history = [
        counts[d] for offset in range(1, trailing_days + 1) if (d := day - timedelta(days=offset)) in counts
    ]
    if len(history) < min_history:
        return VolumeCheck(day, rows, len(history), None, None, None, "no_history")
    median = float(statistics.median(history))
    mad = float(statistics.median(abs(n - median) for n in history))
    spread = max(mad_factor * _MAD_TO_SIGMA * mad, tolerance * median)
    low, high = median - spread, median + spread
    status: VolumeStatus = "drop" if rows < low else "spike" if rows > high else "ok"
    return VolumeCheck(day, rows, len(history), median, low, high, status)
