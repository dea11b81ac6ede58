"""The quality gate: may a partition be scored and published?

A partition is open only when, for every governed table, the latest validation run of that
partition exists and none of its critical expectations failed, and no critical dbt test
recorded for it failed. "Latest" is per table and partition (the run with the newest
`validated_at`), separately for GE suites and for dbt tests (suite `dbt`, recorded by
`fabric.quality.dbt`, critical only for models scoring depends on), so fixing the data and
re-validating opens the gate, and a bad day blocks only itself. The decision is read from
`meta.validation_results` every time, which is why a separately started scoring or publishing
run cannot bypass it. Without recorded dbt results only the suites decide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from fabric.errors import QualityGateClosed
from fabric.meta import utcnow
from fabric.quality.suites import DBT_SUITE
from fabric.warehouse import table_exists

QUALITY_GATE_DDL = """CREATE TABLE IF NOT EXISTS meta.quality_gate (
    run_id VARCHAR, "partition" DATE, is_open BOOLEAN, reason VARCHAR, decided_at TIMESTAMP)"""

_EXAMPLES = 3  # unexpected values quoted in a failure description


@dataclass(frozen=True)
class RecordedResult:
    """One row of `meta.validation_results`, with `observed_value` parsed from JSON."""

    run_id: str
    partition: date
    suite: str
    table: str
    expectation_id: str
    expectation_type: str
    column_name: str | None
    severity: str
    success: bool
    observed_value: Any
    unexpected_count: int | None
    unexpected_percent: float | None
    validated_at: datetime
    engine: str | None = None  # 'sql', 'ge-pandas' or 'dbt'; None for rows older than the column

    @property
    def label(self) -> str:
        """e.g. `expect_column_values_to_be_in_set(country_code)`."""
        if not self.column_name:
            return self.expectation_type
        return f"{self.expectation_type}({self.column_name.replace(',', ', ')})"

    def describe(self) -> str:
        """What was observed, in a few words: error, unexpected count with examples, or value."""
        observed = self.observed_value
        if isinstance(observed, Mapping) and "error" in observed:
            return str(observed["error"])
        if self.unexpected_count is not None:
            text = f"{self.unexpected_count} unexpected"
            if self.unexpected_percent is not None:
                text += f" ({self.unexpected_percent:.2f}%)"
            examples = observed.get("unexpected_values") if isinstance(observed, Mapping) else None
            if isinstance(examples, list) and examples:
                shown = ", ".join(_example(e) for e in examples[:_EXAMPLES])
                text += f", e.g. {shown}"
            return text
        text = json.dumps(observed)
        return f"observed {text if len(text) <= 80 else text[:77] + '...'}"


@dataclass(frozen=True)
class GateDecision:
    """The gate for one partition, with what keeps it closed."""

    partition: date
    not_validated: tuple[str, ...] = ()
    failures: tuple[RecordedResult, ...] = ()

    @property
    def open(self) -> bool:
        """Every governed table validated and no critical expectation failed."""
        return not self.not_validated and not self.failures

    @property
    def problems(self) -> list[str]:
        """What keeps the gate closed, one entry per failed expectation or unvalidated table."""
        problems = [f"{f.table}: {f.label} failed ({f.describe()})" for f in self.failures]
        return problems + [f"{table}: not validated" for table in self.not_validated]

    @property
    def reason(self) -> str:
        """`open`, or `closed: <table>: <expectation> failed (<observed>); <table>: not validated`."""
        return "open" if self.open else "closed: " + "; ".join(self.problems)


def latest_results(
    con: duckdb.DuckDBPyConnection,
    partitions: Iterable[date],
    tables: Sequence[str] | None = None,
) -> list[RecordedResult]:
    """The rows of the latest validation run per (table, partition), in a stable order.

    dbt test results (suite `dbt`) are included whatever `tables` says, with their own "latest"
    per model and partition.
    """
    days = sorted(set(partitions))
    if not days or not table_exists(con, "meta.validation_results"):
        return []
    table_filter = (
        f"AND (table_name IN (SELECT unnest(?::VARCHAR[])) OR suite = '{DBT_SUITE}')"
        if tables is not None
        else ""
    )
    params: list[Any] = [days] + ([list(tables)] if tables is not None else [])
    engine = "s.engine" if _has_engine_column(con) else "NULL"
    rows = con.execute(
        f"""
        WITH scope AS (
            SELECT *, suite = '{DBT_SUITE}' AS _dbt FROM meta.validation_results
            WHERE "partition" IN (SELECT unnest(?::DATE[])) {table_filter}
        ), latest AS (
            SELECT _dbt, table_name, "partition", arg_max(run_id, validated_at) AS run_id
            FROM scope GROUP BY _dbt, table_name, "partition"
        )
        SELECT s.run_id, s."partition", s.suite, s.table_name, s.expectation_id,
               s.expectation_type, s.column_name, s.severity, s.success, s.observed_value,
               s.unexpected_count, s.unexpected_percent, s.validated_at, {engine}
        FROM scope s JOIN latest l USING (_dbt, table_name, "partition", run_id)
        ORDER BY s."partition", s._dbt, s.table_name, s.expectation_type, s.column_name
        """,
        params,
    ).fetchall()
    return [
        RecordedResult(
            run_id=row[0],
            partition=row[1],
            suite=row[2],
            table=row[3],
            expectation_id=row[4],
            expectation_type=row[5],
            column_name=row[6],
            severity=row[7],
            success=bool(row[8]),
            observed_value=json.loads(row[9]) if row[9] is not None else None,
            unexpected_count=row[10],
            unexpected_percent=row[11],
            validated_at=row[12],
            engine=row[13],
        )
        for row in rows
    ]


def _has_engine_column(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'meta' "
        "AND table_name = 'validation_results' AND column_name = 'engine'"
    ).fetchone()
    return bool(row and row[0])


def gate_decisions(
    con: duckdb.DuckDBPyConnection, partitions: Iterable[date], tables: Sequence[str]
) -> dict[date, GateDecision]:
    """The gate for each partition over the governed `tables` (missing validation = closed).

    Critical failures of recorded dbt tests close it too (see the module docstring).
    """
    days = sorted(set(partitions))
    results = latest_results(con, days, tables)
    validated = {(r.table, r.partition) for r in results if r.suite != DBT_SUITE}
    return {
        day: GateDecision(
            partition=day,
            not_validated=tuple(t for t in tables if (t, day) not in validated),
            failures=tuple(
                r
                for r in results
                if r.partition == day and r.severity == "critical" and not r.success
            ),
        )
        for day in days
    }


def require_open(
    con: duckdb.DuckDBPyConnection, partition: date, tables: Sequence[str]
) -> GateDecision:
    """Return the open decision for `partition`, or raise QualityGateClosed saying why not."""
    decision = gate_decisions(con, [partition], tables)[partition]
    if not decision.open:
        raise QualityGateClosed(
            f"quality gate closed for partition {partition}: {'; '.join(decision.problems)}. "
            "Scoring and publishing refuse this partition until a new validation of the failing "
            "table(s) passes every critical expectation (fix the data, re-run the quality check "
            "for this day)."
        )
    return decision


def record_gate(
    con: duckdb.DuckDBPyConnection, decisions: Mapping[date, GateDecision], run_id: str
) -> None:
    """Append the decisions to `meta.quality_gate` (for operators; enforcement re-reads results)."""
    con.execute(QUALITY_GATE_DDL)
    decided_at = utcnow()
    rows = [
        [run_id, day, decision.open, decision.reason, decided_at]
        for day, decision in sorted(decisions.items())
    ]
    if rows:
        con.executemany("INSERT INTO meta.quality_gate VALUES (?, ?, ?, ?, ?)", rows)


def _example(entry: Any) -> str:
    if isinstance(entry, Mapping) and "value" in entry:
        return f"{json.dumps(entry['value'])} x{entry.get('count', '?')}"
    return json.dumps(entry)
