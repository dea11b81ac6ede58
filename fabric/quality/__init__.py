"""The quality gate: GE 1.x suites (`expectations/*.json`), per-partition results, the gate.

- `suites`: load and check suite files (cheap; Great Expectations is imported only to validate)
- `validate`: run a suite on the partitions of a window, write `meta.validation_results`
  - `sql_expectations` + `sql_engine`: supported types computed in DuckDB, one scan per window
  - `ge_engine`: GE's pandas engine for the rest (labelled `ge-pandas`)
  - `quarantine`: every row failing a row-level expectation, in `quarantine.<schema>_<table>`
- `gate`: open/closed per partition from the latest results (GE suites and dbt tests)
- `dbt`: dbt test results from `run_results.json` into `meta.validation_results`
- `volume`, `freshness`: row-count anomalies against a trailing window, source freshness
- `docs`: a Great Expectations Data Docs site rendered from the stored results
- `report`: a summary for Dagster metadata and a rich report for the CLI
"""

from fabric.quality.gate import (
    GateDecision,
    RecordedResult,
    gate_decisions,
    latest_results,
    record_gate,
    require_open,
)
from fabric.quality.report import render_report, summarize
from fabric.quality.results import ExpectationOutcome, PartitionValidation, record_validations
from fabric.quality.suites import (
    ExpectationSpec,
    Suite,
    SuiteError,
    check_suite,
    load_suite,
    load_suites,
    suite_for,
)
from fabric.quality.validate import plan_suite, validate_partitions, validate_window

__all__ = [
    "ExpectationOutcome",
    "ExpectationSpec",
    "GateDecision",
    "PartitionValidation",
    "RecordedResult",
    "Suite",
    "SuiteError",
    "check_suite",
    "gate_decisions",
    "latest_results",
    "load_suite",
    "load_suites",
    "plan_suite",
    "record_gate",
    "record_validations",
    "render_report",
    "require_open",
    "suite_for",
    "summarize",
    "validate_partitions",
    "validate_window",
]
