"""dbt test results in `meta.validation_results`, so the quality gate sees them.

Dagster shows dbt tests as asset checks, but a failing dbt test does not stop a Python asset
(scoring) that runs later or in another run. `record_dbt_results` closes that gap: after a
`dbt build` of a partition window, every test and model build in dbt's `run_results.json` is
recorded once per partition of the window, with suite `dbt`, engine `dbt` and the model's
relation as `table_name`. The gate (`fabric.quality.gate`) treats a failed critical dbt row
like a failed critical expectation.

Severity: a test, or a model build, counts as `critical` when the node is one scoring depends on
(the scoring input models and everything upstream of them in the dbt graph, seeds included, or
a test with no model at all) and dbt would fail the build on it (`severity: error`). A failed,
errored or skipped (upstream failure) critical node closes the gate for every partition of the
window. `severity: warn` tests, and tests of models scoring does not read, are `warning`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from fabric.meta import utcnow
from fabric.partitions import Window
from fabric.quality.results import DBT, ExpectationOutcome, PartitionValidation, record_validations
from fabric.quality.suites import DBT_SUITE, Severity

_TESTS = ("test.", "unit_test.")
_BUILDS = ("model.", "seed.", "snapshot.")
_FAILED = frozenset({"fail", "error", "skipped", "runtime error"})


def record_dbt_results(
    con: duckdb.DuckDBPyConnection,
    run_results: Mapping[str, Any],
    window: Window,
    run_id: str,
    *,
    manifest: Mapping[str, Any],
    scoring_inputs: Sequence[str],
) -> list[PartitionValidation]:
    """Record dbt's run results for every day of `window`; return them per model and day.

    `manifest` is dbt's `manifest.json` (test -> model, lineage), `scoring_inputs` the
    `schema.table` relations scoring reads (e.g. `features.customer_features`).
    """
    nodes = _nodes(manifest)
    gated = _upstream(manifest, nodes, scoring_inputs)
    validated_at = utcnow()
    by_table: dict[str, list[ExpectationOutcome]] = {}
    for result in run_results.get("results", []):
        unique_id = str(result.get("unique_id", ""))
        node = nodes.get(unique_id)
        if node is None or not unique_id.startswith(_TESTS + _BUILDS):
            continue
        outcome, table = _outcome(unique_id, node, result, nodes, gated)
        by_table.setdefault(table, []).append(outcome)
    validations = [
        PartitionValidation(
            partition=day,
            table=table,
            suite=DBT_SUITE,
            run_id=run_id,
            row_count=0,
            validated_at=validated_at,
            outcomes=tuple(outcomes),
        )
        for table, outcomes in sorted(by_table.items())
        for day in window
    ]
    record_validations(con, validations)
    return validations


def _nodes(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    nodes: dict[str, Mapping[str, Any]] = {}
    for section in ("nodes", "sources", "unit_tests"):
        nodes.update(manifest.get(section) or {})
    return nodes


def _relation(node: Mapping[str, Any]) -> str:
    return f"{node.get('schema')}.{node.get('alias') or node.get('name')}"


def _upstream(
    manifest: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]], tables: Sequence[str]
) -> frozenset[str]:
    """Unique ids of the nodes building `tables` and of everything upstream of them."""
    parents: Mapping[str, Sequence[str]] = manifest.get("parent_map") or {
        key: (node.get("depends_on") or {}).get("nodes", []) for key, node in nodes.items()
    }
    pending = [key for key, node in nodes.items() if key.startswith(_BUILDS) and _relation(node) in tables]
    seen: set[str] = set()
    while pending:
        key = pending.pop()
        if key not in seen:
            seen.add(key)
            pending.extend(parents.get(key, []))
    return frozenset(seen)


def _tested_nodes(node: Mapping[str, Any]) -> list[str]:
    attached = node.get("attached_node")
    if attached:
        return [str(attached)]
    depends = (node.get("depends_on") or {}).get("nodes", [])
    return [str(d) for d in depends if str(d).startswith((*_BUILDS, "source."))]


def _outcome(
    unique_id: str,
    node: Mapping[str, Any],
    result: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    gated: frozenset[str],
) -> tuple[ExpectationOutcome, str]:
    status = str(result.get("status", "")).lower()
    is_test = unique_id.startswith(_TESTS)
    if is_test:
        tested = _tested_nodes(node)
        table = _relation(nodes[tested[0]]) if tested and tested[0] in nodes else _relation(node)
        gates = not tested or any(t in gated for t in tested)
        kind = "dbt." + str((node.get("test_metadata") or {}).get("name") or "singular")
        column = node.get("column_name")
    else:
        table, gates, kind, column = _relation(node), unique_id in gated, "dbt.build", None
    blocking = str((node.get("config") or {}).get("severity", "error")).lower() == "error"
    severity: Severity = "critical" if gates and blocking and status != "warn" else "warning"
    failures = result.get("failures")
    observed: dict[str, Any] = {"status": status, "node": unique_id}
    if failures is not None:
        observed["failures"] = failures
    if result.get("message"):
        observed["message"] = str(result["message"])[:500]
    if status == "skipped":
        observed["error"] = f"dbt skipped {node.get('name')} because an upstream node failed"
    elif status in ("error", "runtime error"):
        observed["error"] = f"dbt could not run {node.get('name')}: {observed.get('message', status)}"
    outcome = ExpectationOutcome(
        expectation_id=unique_id,
        expectation_type=kind,
        label=f"{kind}({column})" if column else f"{kind}({node.get('name')})",
        column_name=str(column) if column else None,
        severity=severity,
        success=status not in _FAILED and status != "warn",
        observed_value=observed,
        unexpected_count=int(failures) if isinstance(failures, int) and is_test else None,
        engine=DBT,
    )
    return outcome, table
