"""The quality gate: GE 1.x suites (`expectations/*.json`), per-partition results, the gate.

- `suites`: load and check suite files (cheap; Great Expectations is imported only to validate)
- `validate`: run a suite on each partition slice, write `meta.validation_results`
- `gate`: open/closed per partition from the latest results; `require_open` for scoring/publish
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
from fabric.quality.suites import (
    ExpectationSpec,
    Suite,
    SuiteError,
    check_suite,
    load_suite,
    load_suites,
    suite_for,
)
from fabric.quality.validate import (
    ExpectationOutcome,
    PartitionValidation,
    record_validations,
    validate_partitions,
    validate_window,
)

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
    "record_gate",
    "record_validations",
    "render_report",
    "require_open",
    "suite_for",
    "summarize",
    "validate_partitions",
    "validate_window",
]
