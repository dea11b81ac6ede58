"""Run a suite on each partition of a DuckDB table with GE's pandas engine; record the results.

GE's SQL engine does not work on DuckDB yet, so each partition slice (`partition_column = D`) is
read with DuckDB into pandas and validated there in an ephemeral GE context (nothing written to
disk). Every expectation of every partition becomes one row of `meta.validation_results`; the
gate (`fabric.quality.gate`) reads them back, so the decision survives across runs.

An expectation on a column the slice does not have is not handed to GE: it fails on its own
with a message naming the column, table and partition. A missing table or partition column fails
every expectation the same way. Neither crashes the run.

Values from PII columns (`pii` in fabric.yaml) are withheld: counts and ratios are kept, the
offending values themselves are not copied into `meta`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from fabric.identifiers import qualified, quote, split_qualified
from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.quality.suites import (
    SEVERITIES,
    ExpectationSpec,
    Severity,
    Suite,
    check_suite,
    suite_for,
)
from fabric.warehouse import Warehouse, table_exists

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    from fabric.config import FabricConfig

VALIDATION_RESULTS_DDL = """CREATE TABLE IF NOT EXISTS meta.validation_results (
    run_id VARCHAR, "partition" DATE, suite VARCHAR, table_name VARCHAR, expectation_id VARCHAR,
    expectation_type VARCHAR, column_name VARCHAR, severity VARCHAR, success BOOLEAN,
    observed_value JSON, unexpected_count BIGINT, unexpected_percent DOUBLE,
    validated_at TIMESTAMP)"""

# SUMMARY gives counts plus a few example values, enough to say what went wrong.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
_WITHHELD = "withheld (PII column)"


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation on one partition.

    `observed_value` is JSON-compatible: GE's observed value for aggregate expectations, counts
    and example unexpected values for row-wise ones, or `{"error": ...}` when it could not run.
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


def validate_window(
    config: FabricConfig, warehouse: Warehouse, table: str, window: Window, run_id: str
) -> list[PartitionValidation]:
    """Validate every day of `window` of `table` with its suite and record the results."""
    suite = suite_for(config, table)
    pii = frozenset(config.pii.get(table, []))
    with warehouse.connect() as con:
        return validate_partitions(con, suite, window.days(), run_id, pii_columns=pii)


def validate_partitions(
    con: duckdb.DuckDBPyConnection,
    suite: Suite,
    partitions: Sequence[date],
    run_id: str,
    *,
    pii_columns: Iterable[str] = (),
) -> list[PartitionValidation]:
    """Validate `suite` on each partition of its table and write `meta.validation_results`.

    Results of all partitions are written in one transaction at the end, replacing any rows this
    run already wrote for them (a retried step converges instead of duplicating).
    """
    runner = _GeRunner(suite)
    pii = frozenset(pii_columns)
    validations = [runner.validate(con, day, run_id, pii) for day in partitions]
    record_validations(con, validations)
    return validations


def record_validations(
    con: duckdb.DuckDBPyConnection, validations: Sequence[PartitionValidation]
) -> None:
    """Append one `meta.validation_results` row per expectation per partition (one transaction)."""
    con.execute(VALIDATION_RESULTS_DDL)
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
        ]
        for v in validations
        for o in v.outcomes
    ]
    con.execute("BEGIN TRANSACTION")
    try:
        for v in validations:
            con.execute(
                'DELETE FROM meta.validation_results WHERE run_id = ? AND table_name = ? '
                'AND "partition" = ?',
                [v.run_id, v.table, v.partition],
            )
        if rows:
            con.executemany(
                "INSERT INTO meta.validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


class _SliceUnavailable(Exception):
    """The partition slice cannot be read at all (table or partition column missing)."""


class _GeRunner:
    """An ephemeral GE context with one pandas dataframe asset, reused for every partition."""

    def __init__(self, suite: Suite) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.suite = suite
        self._configurations: dict[str, ExpectationConfiguration] = {
            spec.expectation_id: built
            for spec, built in zip(suite.expectations, check_suite(suite), strict=True)
        }
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        asset = context.data_sources.add_pandas("fabric").add_dataframe_asset(suite.table)
        self._batch_definition: BatchDefinition = asset.add_batch_definition_whole_dataframe(
            "partition"
        )

    def validate(
        self,
        con: duckdb.DuckDBPyConnection,
        partition: date,
        run_id: str,
        pii: frozenset[str],
    ) -> PartitionValidation:
        suite = self.suite
        try:
            frame = _read_slice(con, suite, partition)
        except _SliceUnavailable as exc:
            unavailable = tuple(_not_evaluated(spec, str(exc)) for spec in suite.expectations)
            return self._validation(partition, run_id, 0, unavailable)
        runnable = [s for s in suite.expectations if set(s.columns) <= set(frame.columns)]
        results = self._run(frame, runnable)
        outcomes: list[ExpectationOutcome] = []
        for spec in suite.expectations:
            result = results.get(spec.expectation_id)
            if result is not None:
                outcomes.append(_outcome(spec, result, bool(pii & set(spec.columns))))
                continue
            missing = ", ".join(c for c in spec.columns if c not in frame.columns)
            message = (
                f"column {missing} not in table {suite.table} for partition {partition}"
                if missing
                else "Great Expectations returned no result for it"
            )
            outcomes.append(_not_evaluated(spec, message))
        return self._validation(partition, run_id, len(frame), tuple(outcomes))

    def _run(
        self, frame: pd.DataFrame, specs: Sequence[ExpectationSpec]
    ) -> dict[str, ExpectationValidationResult]:
        from great_expectations.core.expectation_suite import ExpectationSuite

        if not specs:
            return {}
        ge_suite = ExpectationSuite(
            name=self.suite.name,
            expectations=[self._configurations[s.expectation_id] for s in specs],
        )
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(ge_suite, result_format=_RESULT_FORMAT)
        return {
            str(r.expectation_config.id): r for r in result.results if r.expectation_config
        }

    def _validation(
        self,
        partition: date,
        run_id: str,
        row_count: int,
        outcomes: tuple[ExpectationOutcome, ...],
    ) -> PartitionValidation:
        return PartitionValidation(
            partition=partition,
            table=self.suite.table,
            suite=self.suite.name,
            run_id=run_id,
            row_count=row_count,
            validated_at=utcnow(),
            outcomes=outcomes,
        )


def _read_slice(con: duckdb.DuckDBPyConnection, suite: Suite, partition: date) -> pd.DataFrame:
    if not table_exists(con, suite.table):
        raise _SliceUnavailable(f"table {suite.table} does not exist (partition {partition})")
    schema, name = split_qualified(suite.table)
    columns = {
        str(row[0])
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    }
    if suite.partition_column not in columns:
        raise _SliceUnavailable(
            f"partition column {suite.partition_column} not in table {suite.table} "
            f"(partition {partition})"
        )
    sql = f"SELECT * FROM {qualified(schema, name)} WHERE {quote(suite.partition_column)} = ?"
    return con.execute(sql, [partition]).df()


def _not_evaluated(spec: ExpectationSpec, message: str) -> ExpectationOutcome:
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        label=spec.label,
        column_name=spec.column_name,
        severity=spec.severity,
        success=False,
        observed_value={"error": message},
    )


def _outcome(
    spec: ExpectationSpec, result: ExpectationValidationResult, pii: bool
) -> ExpectationOutcome:
    details: Mapping[str, Any] = result.result or {}
    error = _exception_message(result.exception_info)
    unexpected = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    observed: Any
    if error is not None:
        observed = {"error": f"Great Expectations could not evaluate it: {error}"}
    elif "observed_value" in details:
        value = _jsonable(details["observed_value"])
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        observed = _WITHHELD if pii and not numeric else value  # a ratio or count is no PII
    else:
        observed = {
            key: _jsonable(details[key])
            for key in ("element_count", "unexpected_count", "missing_count")
            if key in details
        }
        examples = [  # (value, count) of up to 10 offenders; nulls say nothing more
            e
            for e in _jsonable(details.get("partial_unexpected_counts") or [])
            if isinstance(e, dict) and e.get("value") is not None
        ]
        if examples:
            observed["unexpected_values"] = _WITHHELD if pii else examples
    return ExpectationOutcome(
        expectation_id=spec.expectation_id,
        expectation_type=spec.type,
        label=spec.label,
        column_name=spec.column_name,
        severity=spec.severity,
        success=bool(result.success) and error is None,
        observed_value=observed,
        unexpected_count=int(unexpected) if unexpected is not None else None,
        unexpected_percent=_finite(percent),
    )


def _exception_message(info: Any) -> str | None:
    """GE's exception_info is either one record or a dict of records keyed by metric."""
    if not isinstance(info, dict):
        return None
    records = [info] if "raised_exception" in info else list(info.values())
    for record in records:
        if isinstance(record, dict) and (
            record.get("raised_exception") or record.get("exception_message")
        ):
            return str(record.get("exception_message") or "unknown error").splitlines()[0]
    return None


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """Plain JSON types from GE/pandas/numpy values (NaN, NaT and NA become null)."""
    import pandas as pd  # loaded already: values only come from a GE validation

    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _finite(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    return str(value)
