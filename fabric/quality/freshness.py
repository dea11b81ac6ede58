"""Source freshness from `meta.loads`: has each source entity delivered data recently enough?

An entity has delivered partition D when a load of D read at least one row (a file that was
there, a table that had rows for the day). For an expected partition E (a run's last day, or
yesterday) the entity is `fresh` when its latest delivered partition on or before E is at most
`max_lag_days` behind E, `stale` when it is further behind, and `never_loaded` when nothing was
ever delivered. The last load time is reported alongside, because a backfill run loads old
partitions today: the partition lag, not the load time, says whether the data is fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import duckdb

from fabric.warehouse import table_exists

FreshnessStatus = Literal["fresh", "stale", "never_loaded"]


@dataclass(frozen=True)
class Freshness:
    """How far behind the expected partition one source entity's data is."""

    source: str
    entity: str
    expected: date
    latest_partition: date | None
    last_loaded_at: datetime | None
    max_lag_days: int

    @property
    def lag_days(self) -> int | None:
        return (self.expected - self.latest_partition).days if self.latest_partition else None

    @property
    def status(self) -> FreshnessStatus:
        if self.lag_days is None:
            return "never_loaded"
        return "fresh" if self.lag_days <= self.max_lag_days else "stale"

    @property
    def passed(self) -> bool:
        return self.status == "fresh"

    def describe(self) -> str:
        """e.g. `erp.payments: latest data 2026-01-03, 2 days behind 2026-01-05 (max 1): stale`."""
        name = f"{self.source}.{self.entity}"
        if self.latest_partition is None:
            return f"{name}: no data delivered on or before {self.expected}: never_loaded"
        return (
            f"{name}: latest data {self.latest_partition}, {self.lag_days} day(s) behind "
            f"{self.expected} (max {self.max_lag_days}): {self.status}"
        )

    def metadata(self) -> dict[str, Any]:
        """JSON-compatible fields for Dagster metadata."""
        return {
            "expected_partition": self.expected.isoformat(),
            "latest_partition": self.latest_partition.isoformat() if self.latest_partition else None,
            "lag_days": self.lag_days,
            "max_lag_days": self.max_lag_days,
            "last_loaded_at": self.last_loaded_at.isoformat() if self.last_loaded_at else None,
            "status": self.status,
        }


def source_freshness(
    con: duckdb.DuckDBPyConnection,
    entities: Sequence[tuple[str, str]],
    expected: date,
    *,
    max_lag_days: int = 1,
) -> list[Freshness]:
    """Freshness of each `(source, entity)` relative to the `expected` partition."""
    latest: dict[tuple[str, str], tuple[date | None, datetime | None]] = {}
    if table_exists(con, "meta.loads"):
        rows = con.execute(
            """SELECT source, entity,
                      max("partition") FILTER (WHERE rows_read > 0 AND status <> 'missing'
                                               AND "partition" <= ?),
                      max(finished_at)
               FROM meta.loads GROUP BY 1, 2""",
            [expected],
        ).fetchall()
        latest = {(str(s), str(e)): (p, loaded) for s, e, p, loaded in rows}
    return [
        Freshness(source, entity, expected, *latest.get((source, entity), (None, None)), max_lag_days)
        for source, entity in entities
    ]
