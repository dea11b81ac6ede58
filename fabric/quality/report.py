"""Validation results for people: a compact summary for Dagster metadata, a report for the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fabric.quality.gate import GateDecision, RecordedResult, gate_decisions, latest_results
from fabric.quality.results import ExpectationOutcome, PartitionValidation
from fabric.quality.suites import DBT_SUITE

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def summarize(validations: Sequence[PartitionValidation]) -> dict[str, Any]:
    """A JSON-compatible summary: overall pass/fail, then per partition what failed and why.

    `{"passed": bool, "partitions": n, "failed_partitions": ["YYYY-MM-DD", ...],
      "engines": {"sql": n, "ge-pandas": k}, "fallbacks": {label: reason},
      "by_partition": {"YYYY-MM-DD": {"passed": bool, "rows": n, "quarantined_rows": n,
                                      "counts": {...}, "critical_failed": [...],
                                      "warning_failed": [...]}}}`
    where each failed entry is `{"expectation": label, "observed": ..., "unexpected_count": n}`;
    `engines` counts expectation evaluations and `fallbacks` says why a type Fabric computes in
    SQL ran through GE's pandas engine.
    """
    by_partition: dict[str, Any] = {}
    engines: Counter[str] = Counter()
    fallbacks: dict[str, str] = {}
    for v in sorted(validations, key=lambda v: v.partition):
        engines.update(v.engines)
        fallbacks.update({o.label: o.engine_note for o in v.outcomes if o.engine_note})
        entry: dict[str, Any] = {
            "passed": v.success_critical,
            "rows": v.row_count,
            "quarantined_rows": v.quarantined_rows,
            "counts": v.counts,
        }
        for severity in ("critical", "warning"):
            failed = [_failure(o) for o in v.failures if o.severity == severity]
            if failed:
                entry[f"{severity}_failed"] = failed
        by_partition[v.partition.isoformat()] = entry
    failed_partitions = [day for day, entry in by_partition.items() if not entry["passed"]]
    return {
        "passed": not failed_partitions,
        "partitions": len(by_partition),
        "failed_partitions": failed_partitions,
        "engines": dict(engines),
        "fallbacks": fallbacks,
        "by_partition": by_partition,
    }


def render_report(
    con: duckdb.DuckDBPyConnection, partition: date, tables: Sequence[str] | None = None
) -> RenderableType:
    """The latest validation of each table for `partition`, and the gate decision.

    With `tables` (the governed tables) the gate line also names tables never validated;
    without, it covers the tables that have results for the partition. Recorded dbt test
    results are listed too (engine `dbt`).
    """
    results = latest_results(con, [partition], tables)
    validated = {r.table for r in results if r.suite != DBT_SUITE}
    scope = list(tables) if tables is not None else sorted(validated)
    decision = gate_decisions(con, [partition], scope)[partition]
    return Group(_gate_line(decision), _results_table(partition, results))


def _failure(outcome: ExpectationOutcome) -> dict[str, Any]:
    failure: dict[str, Any] = {"expectation": outcome.label, "observed": outcome.observed_value}
    if outcome.unexpected_count is not None:
        failure["unexpected_count"] = outcome.unexpected_count
    return failure


def _gate_line(decision: GateDecision) -> Text:
    if decision.open:
        return Text(f"Quality gate for {decision.partition}: OPEN", style="bold green")
    text = Text(f"Quality gate for {decision.partition}: CLOSED", style="bold red")
    for problem in decision.problems:
        text.append(f"\n  - {problem}", style="red")
    return text


def _results_table(partition: date, results: Sequence[RecordedResult]) -> Table:
    table = Table(title=f"Latest validation results, partition {partition}", show_lines=False)
    for name in ("table", "severity", "expectation", "result", "engine", "observed"):
        table.add_column(name, overflow="fold")
    ordered = sorted(
        results, key=lambda r: (r.table, r.success, _SEVERITY_ORDER.get(r.severity, 3), r.label)
    )
    for r in ordered:
        table.add_row(
            r.table,
            r.severity,
            r.label,
            Text("pass", style="green") if r.success else _fail_text(r.severity),
            r.engine or "-",
            r.describe(),
        )
    if not results:
        table.add_row("-", "-", "no validation results for this partition", "-", "-", "-")
    return table


def _fail_text(severity: str) -> Text:
    return Text("FAIL", style="bold red" if severity == "critical" else "yellow")
