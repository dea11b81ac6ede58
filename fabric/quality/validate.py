"""Validate a suite on partitions of its DuckDB table; record results and quarantine bad rows.

Expectations whose type and arguments Fabric translates (`fabric.quality.sql_expectations`)
are computed in the database, one scan for every partition of the window grouped by
partition (`fabric.quality.sql_engine`). The others run through GE's pandas engine on each
partition slice (`fabric.quality.ge_engine`), labelled `ge-pandas` with the reason. Great
Expectations is imported only when something falls back.

Every expectation of every partition becomes one row of `meta.validation_results`; the gate
(`fabric.quality.gate`) reads them back, so the decision survives across runs. Rows failing a
row-level expectation computed in SQL are copied to the table's quality quarantine
(`fabric.quality.quarantine`).

An expectation on a column the table does not have is not run: it fails on its own with a
message naming the column, table and partition. A missing table or partition column fails
every expectation the same way. Neither crashes the run. A partition without rows is
validated like any other: map expectations pass vacuously (as in GE) and the suite's
row-count expectation decides.

Values from PII columns (`pii` in fabric.yaml) are withheld: counts and ratios are kept, the
offending values themselves are not copied into `meta`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING

import duckdb

from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.quality.ge_engine import GeRunner
from fabric.quality.quarantine import failed_row_checks, quarantine_failures, quarantined_rows
from fabric.quality.results import (
    GE_PANDAS,
    SQL,
    Engine,
    ExpectationOutcome,
    PartitionValidation,
    not_evaluated,
    record_validations,
)
from fabric.quality.sql_engine import add_examples, run_checks, table_columns
from fabric.quality.sql_expectations import (
    Column,
    RowCheck,
    SqlCheck,
    Unsupported,
    compile_expectation,
    sql_supported_types,
)
from fabric.quality.suites import ExpectationSpec, Suite, suite_for
from fabric.warehouse import Warehouse

if TYPE_CHECKING:
    from fabric.config import FabricConfig


@dataclass(frozen=True)
class SuitePlan:
    """How each expectation of a suite will be evaluated against the table as it is now."""

    suite: Suite
    columns: dict[str, Column]
    unavailable: str | None = None  # table or partition column missing: nothing can run
    sql: tuple[SqlCheck, ...] = ()
    fallback: tuple[tuple[ExpectationSpec, str], ...] = ()  # (expectation, reason)
    missing_columns: tuple[tuple[ExpectationSpec, str], ...] = ()  # (expectation, columns)

    @property
    def row_checks(self) -> tuple[RowCheck, ...]:
        """The row-level checks computed in SQL (their failing rows can be quarantined)."""
        return tuple(c for c in self.sql if isinstance(c, RowCheck))


def plan_suite(con: duckdb.DuckDBPyConnection, suite: Suite) -> SuitePlan:
    """Route every expectation: SQL, GE fallback (with the reason), or missing column."""
    columns = table_columns(con, suite.table)
    if columns is None:
        return SuitePlan(suite, {}, unavailable=f"table {suite.table} does not exist")
    if suite.partition_column not in columns:
        return SuitePlan(
            suite,
            columns,
            unavailable=f"partition column {suite.partition_column} not in table {suite.table}",
        )
    sql: list[SqlCheck] = []
    fallback: list[tuple[ExpectationSpec, str]] = []
    missing: list[tuple[ExpectationSpec, str]] = []
    for spec in suite.expectations:
        absent = [c for c in spec.columns if c not in columns]
        if absent:
            missing.append((spec, ", ".join(absent)))
            continue
        compiled = compile_expectation(spec, columns)
        if isinstance(compiled, Unsupported):
            fallback.append((spec, compiled.reason))
        else:
            sql.append(compiled)
    return SuitePlan(suite, columns, None, tuple(sql), tuple(fallback), tuple(missing))


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
    quarantine: bool = True,
) -> list[PartitionValidation]:
    """Validate `suite` on each partition of its table and write `meta.validation_results`.

    Results of all partitions are written in one transaction at the end, replacing any rows this
    run already wrote for them (a retried step converges instead of duplicating). With
    `quarantine`, the failing rows of row-level SQL checks replace the partitions' previous
    quarantine rows.
    """
    days = sorted(set(partitions))
    pii = frozenset(pii_columns)
    plan = plan_suite(con, suite)
    validations = evaluate(con, plan, days, run_id, pii, examples=not quarantine)
    if quarantine and plan.unavailable is None:
        counts = quarantine_failures(con, suite, plan.row_checks, validations, run_id)
        validations = [replace(v, quarantined_rows=counts.get(v.partition, 0)) for v in validations]
        held = failed_row_checks(plan.row_checks, validations)  # read their examples from there
        quarantined = {key: (quarantined_rows(suite.table, key), set(days)) for key, days in held.items()}
        validations = _with_examples(con, plan, validations, pii, quarantined)
    record_validations(con, validations)
    return validations


def evaluate(
    con: duckdb.DuckDBPyConnection,
    plan: SuitePlan,
    partitions: Sequence[date],
    run_id: str,
    pii: frozenset[str] = frozenset(),
    *,
    examples: bool = True,
) -> list[PartitionValidation]:
    """Outcomes of every expectation on every partition, in suite order (nothing written).

    Without `examples`, SQL outcomes carry counts only (`validate_partitions` adds the example
    values after quarantining, reading them from the few quarantined rows).
    """
    suite = plan.suite
    if not partitions:
        return []
    if plan.unavailable is not None:
        return [
            _validation(
                suite,
                day,
                run_id,
                0,
                [
                    not_evaluated(s, f"{plan.unavailable} (partition {day})", _route(s))
                    for s in suite.expectations
                ],
            )
            for day in partitions
        ]
    sql, fallback = list(plan.sql), list(plan.fallback)
    try:
        rows, sql_outcomes = run_checks(con, suite.table, suite.partition_column, sql, partitions, pii)
    except duckdb.Error as exc:  # never expected; GE still gives an answer
        reason = f"the SQL engine failed ({str(exc).splitlines()[0]})"
        fallback += [(check.spec, reason) for check in sql]
        rows, sql_outcomes = run_checks(con, suite.table, suite.partition_column, [], partitions)
    runner = GeRunner(suite, [spec for spec, _ in fallback]) if fallback else None
    notes = {spec.expectation_id: reason for spec, reason in fallback}
    validations = []
    for day in partitions:
        found: dict[str, ExpectationOutcome] = {o.expectation_id: o for o in sql_outcomes.get(day, [])}
        if runner is not None:
            for key, outcome in runner.validate(con, day, pii).items():
                found[key] = replace(outcome, engine_note=notes[key])
        for spec, columns in plan.missing_columns:
            message = f"column {columns} not in table {suite.table} for partition {day}"
            found[spec.expectation_id] = not_evaluated(spec, message, _route(spec))
        outcomes = [found[spec.expectation_id] for spec in suite.expectations]
        validations.append(_validation(suite, day, run_id, rows.get(day, 0), outcomes))
    return _with_examples(con, plan, validations, pii, {}) if examples else validations


def _with_examples(
    con: duckdb.DuckDBPyConnection,
    plan: SuitePlan,
    validations: Sequence[PartitionValidation],
    pii: frozenset[str],
    quarantined: Mapping[str, tuple[str, Collection[date]]],
) -> list[PartitionValidation]:
    if plan.unavailable is not None or not plan.sql:
        return list(validations)
    suite = plan.suite
    outcomes = {v.partition: v.outcomes for v in validations}
    filled = add_examples(con, suite.table, suite.partition_column, plan.sql, outcomes, pii, quarantined)
    return [replace(v, outcomes=tuple(filled[v.partition])) for v in validations]


def _route(spec: ExpectationSpec) -> Engine:
    """The engine an expectation of this type would have run on."""
    return SQL if spec.type in sql_supported_types() else GE_PANDAS


def _validation(
    suite: Suite,
    partition: date,
    run_id: str,
    row_count: int,
    outcomes: Sequence[ExpectationOutcome],
) -> PartitionValidation:
    return PartitionValidation(
        partition=partition,
        table=suite.table,
        suite=suite.name,
        run_id=run_id,
        row_count=row_count,
        validated_at=utcnow(),
        outcomes=tuple(outcomes),
    )
