"""Validation outcomes and `meta.validation_results`, whichever engine produced them.

Every expectation of every validated partition becomes one row. `engine` says who computed it:
`sql` (Fabric's DuckDB SQL, see `fabric.quality.sql_engine`), `ge-pandas` (Great Expectations'
pandas engine, for types or arguments Fabric does not translate) or `dbt` (a dbt test result,
see `fabric.quality.dbt`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import duckdb

from fabric.quality.suites import SEVERITIES, ExpectationSpec, Severity

Engine = Literal["sql", "ge-pandas", "dbt"]
SQL: Engine = "sql"
GE_PANDAS: Engine = "ge-pandas"
DBT: Engine = "dbt"

VALIDATION_RESULTS_DDL = """CREATE TABLE IF NOT EXISTS meta.validation_results (
    run_id VARCHAR, "partition" DATE, suite VARCHAR, table_name VARCHAR, expectation_id VARCHAR,
    expectation_type VARCHAR, column_name VARCHAR, severity VARCHAR, success BOOLEAN,
    observed_value JSON, unexpected_count BIGINT, unexpected_percent DOUBLE,
    validated_at TIMESTAMP, engine VARCHAR)"""
# Warehouses created before the engine column existed get it on the next write.
_ADD_ENGINE = "ALTER TABLE meta.validation_results ADD COLUMN IF NOT EXISTS engine VARCHAR"
_COLUMNS = (
    'run_id, "partition", suite, table_name, expectation_id, expectation_type, column_name, '
    "severity, success, observed_value, unexpected_count, unexpected_percent, validated_at, engine"
)
WITHHELD = "withheld (PII column)"
_INSERT_BATCH = 500  # result rows per INSERT statement


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation on one partition.

    `observed_value` is JSON-compatible: GE's observed value for aggregate expectations, counts
    and example unexpected values for row-wise ones, or `{"error": ...}` when it could not run.
    `engine_note` says why a type Fabric computes in SQL went to GE for this suite.
    """

    expectation_id: str
    expectation_type: str
    label: str
    column_name: str | None
    severity: Severity
    success: bool
    observed_value: Any
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    engine: Engine = SQL
    engine_note: str | None = None

    @property
    def error(self) -> str | None:
        """Why the expectation could not be evaluated (missing column, GE error), if so."""
        if isinstance(self.observed_value, dict):
            message = self.observed_value.get("error")
            return str(message) if message is not None else None
        return None


@dataclass(frozen=True)
class PartitionValidation:
    """One suite validated on one partition of its table in one run."""

    partition: date
    table: str
    suite: str
    run_id: str
    row_count: int
    validated_at: datetime
    outcomes: tuple[ExpectationOutcome, ...]
    quarantined_rows: int = 0  # rows copied to the quality quarantine (one per failed check)

    @property
    def success_critical(self) -> bool:
        """No critical expectation failed: this table does not close the gate for the day."""
        return not any(o.severity == "critical" and not o.success for o in self.outcomes)

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        """Failed expectations of every severity, in suite order."""
        return tuple(o for o in self.outcomes if not o.success)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """`{severity: {"evaluated": n, "failed": k}}` for critical, warning and info."""
        counts: dict[str, dict[str, int]] = {s: {"evaluated": 0, "failed": 0} for s in SEVERITIES}
        for outcome in self.outcomes:
            counts[outcome.severity]["evaluated"] += 1
            counts[outcome.severity]["failed"] += int(not outcome.success)
        return counts

    @property
    def engines(self) -> dict[str, int]:
        """How many expectations each engine evaluated, e.g. `{"sql": 31, "ge-pandas": 1}`."""
        return dict(Counter(o.engine for o in self.outcomes))


def not_evaluated(spec: ExpectationSpec, message: str, engine: Engine) -> ExpectationOutcome:
    """A failed outcome for an expectation that could not run (missing column or table)."""
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        label=spec.label,
        column_name=spec.column_name,
        severity=spec.severity,
        success=False,
        observed_value={"error": message},
        engine=engine,
    )


def ensure_results_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create `meta.validation_results`, or add the `engine` column to an older one."""
    con.execute(VALIDATION_RESULTS_DDL)
    con.execute(_ADD_ENGINE)


def record_validations(con: duckdb.DuckDBPyConnection, validations: Sequence[PartitionValidation]) -> None:
    """Append one `meta.validation_results` row per expectation per partition (one transaction).

    Rows this run already wrote for the same suite, table and partitions are replaced, so a
    retried step converges instead of duplicating.
    """
    ensure_results_table(con)
    rows = [
        [
            v.run_id,
            v.partition,
            v.suite,
            v.table,
            o.expectation_id,
            o.expectation_type,
            o.column_name,
            o.severity,
            o.success,
            json.dumps(o.observed_value),
            o.unexpected_count,
            o.unexpected_percent,
            v.validated_at,
            o.engine,
        ]
        for v in validations
        for o in v.outcomes
    ]
    con.execute("BEGIN TRANSACTION")
    try:
        for v in validations:
            con.execute(
                "DELETE FROM meta.validation_results WHERE run_id = ? AND suite = ? "
                'AND table_name = ? AND "partition" = ?',
                [v.run_id, v.suite, v.table, v.partition],
            )
        for start in range(0, len(rows), _INSERT_BATCH):  # executemany is slow in DuckDB
            batch = rows[start : start + _INSERT_BATCH]
            placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(batch))
            con.execute(
                f"INSERT INTO meta.validation_results ({_COLUMNS}) VALUES {placeholders}",
                [value for row in batch for value in row],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def finite(value: Any) -> float | None:
    """`value` as a float, or None for None, NaN and infinities (JSON has no such numbers)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def jsonable(value: Any) -> Any:
    """Plain JSON types from DuckDB, GE, pandas or numpy values (NaN, NaT and NA become null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if type(value).__name__ in ("NaTType", "NAType"):  # pandas' missing-value singletons
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return finite(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    return str(value)
