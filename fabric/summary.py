"""What a run over a window produced, read back from the warehouse (for the CLI's summary)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fabric.partitions import Window
from fabric.warehouse import Warehouse, table_exists


@dataclass
class WindowSummary:
    ingested: list[tuple[str, int, int]] = field(default_factory=list)  # entity, loaded, quarantined
    missing_files: int = 0
    customers_scored: int = 0
    scores_by_scorer: dict[str, int] = field(default_factory=dict)
    days_scored: int = 0
    days_blocked: list[str] = field(default_factory=list)
    published: list[tuple[str, int]] = field(default_factory=list)  # target, rows


def window_summary(warehouse: Warehouse, window: Window) -> WindowSummary:
    """Latest load per entity and day, scores and publications for `window`."""
    summary = WindowSummary()
    bounds = [window.start, window.end]
    with warehouse.connect(read_only=True) as con:
        if table_exists(con, "meta.loads"):
            # One pass over the latest load per entity and day: per-entity totals and how many
            # expected files were missing.
            per_entity = con.execute(
                """
                WITH latest AS (
                    SELECT * FROM meta.loads
                    WHERE "partition" BETWEEN ? AND ?
                    QUALIFY row_number() OVER (
                        PARTITION BY source, entity, "partition" ORDER BY finished_at DESC) = 1
                )
                SELECT source || '.' || entity, sum(rows_loaded), sum(rows_quarantined),
                       count(*) FILTER (WHERE status = 'missing')
                FROM latest GROUP BY 1 ORDER BY 1
                """,
                bounds,
            ).fetchall()
            summary.ingested = [
                (str(name), int(loaded), int(quarantined)) for name, loaded, quarantined, _ in per_entity
            ]
            summary.missing_files = sum(int(missing) for *_, missing in per_entity)
        if table_exists(con, "scores.churn_scores"):
            row = con.execute(
                "SELECT count(DISTINCT fabric_customer_id), count(DISTINCT partition_date) "
                "FROM scores.churn_scores WHERE partition_date BETWEEN ? AND ?",
                bounds,
            ).fetchone()
            if row:
                summary.customers_scored, summary.days_scored = int(row[0]), int(row[1])
            summary.scores_by_scorer = {
                str(scorer): int(n)
                for scorer, n in con.execute(
                    "SELECT scorer, count(*) FROM scores.churn_scores "
                    "WHERE partition_date BETWEEN ? AND ? AND variant <> 'shadow' GROUP BY 1 ORDER BY 1",
                    bounds,
                ).fetchall()
            }
        if table_exists(con, "meta.quality_gate"):
            summary.days_blocked = [
                str(day)
                for (day,) in con.execute(
                    """SELECT "partition" FROM meta.quality_gate
                       WHERE "partition" BETWEEN ? AND ?
                       QUALIFY row_number() OVER (PARTITION BY "partition" ORDER BY decided_at DESC) = 1
                       AND NOT is_open ORDER BY 1""",
                    bounds,
                ).fetchall()
            ]
        if table_exists(con, "publish.published"):
            # what each target holds (confirmed) for the window's days
            summary.published = [
                (str(target), int(rows))
                for target, rows in con.execute(
                    """SELECT target, count(*) FROM publish.published
                       WHERE "partition" BETWEEN ? AND ? GROUP BY target ORDER BY 1""",
                    bounds,
                ).fetchall()
            ]
    return summary
