"""One orchestrator step -> OpenLineage run events for each asset it materialized or checked.

Every asset a step was planned to materialize is one OpenLineage run (job name = the asset key,
`raw/crm__customers`), child of the orchestrator run (the parent facet names the Dagster job and
run): START at the step's start (`start_events`, sent when the step starts), then COMPLETE when
the asset was materialized, or FAIL with the step's error. START names the job and its parent
only; the datasets come with COMPLETE (inputs and outputs) and FAIL (inputs), since what a step
reads and writes (the very files of a load) is known once it has run. Asset checks evaluated in
the step are one run per checked asset (job `<asset>:<check>`; several checks: `<asset>:checks`
in the asset's own step, else `<asset>:<check>+<check>`), whose input carries the
`dataQualityAssertions` facet: the GE expectation results of this run from
`meta.validation_results` for the suite checks, the check outcomes for the others. A check run's
START and COMPLETE/FAIL are both made when the step ends: which checks ran (and so the job name)
is known only then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import duckdb

from fabric.config import FabricConfig
from fabric.lineage.datasets import AssetDatasets, AssetLineage, AssetPath, DbtArtifacts
from fabric.lineage.events import (
    Dataset,
    EventType,
    ParentRun,
    child_run_id,
    facet,
    iso,
    job_type_facet,
    run_event,
)
from fabric.lineage.naming import DatasetName
from fabric.warehouse import table_exists

log = logging.getLogger(__name__)

GE_CHECK = "great_expectations"


@dataclass(frozen=True)
class CheckOutcome:
    asset: AssetPath
    check: str
    passed: bool
    severity: str  # 'ERROR' | 'WARN'
    timestamp: float
    description: str | None = None


@dataclass
class StepOutcome:
    """What the orchestrator recorded for one step of one run."""

    run_id: str
    job_name: str
    step_key: str
    started: float
    finished: float
    error: str | None = None
    planned: list[AssetPath] = field(default_factory=list)
    materialized: dict[AssetPath, float] = field(default_factory=dict)  # asset -> last time
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None


def asset_name(asset: AssetPath) -> str:
    return "/".join(asset)


def job_namespace(config: FabricConfig) -> str:
    return config.lineage.namespace or config.project


def _asset_start(config: FabricConfig, step: StepOutcome, asset: AssetPath) -> dict[str, Any]:
    namespace = job_namespace(config)
    name = asset_name(asset)
    return run_event(
        "START",
        step.started,
        namespace,
        name,
        child_run_id(step.run_id, name),
        parent=ParentRun(namespace, step.job_name, step.run_id),
        job_facets={"jobType": job_type_facet("ASSET")},
    )


def start_events(config: FabricConfig, step: StepOutcome) -> list[dict[str, Any]]:
    """START of every asset `step` is planned to materialize, at the step's start time."""
    return [_asset_start(config, step, asset) for asset in step.planned]


def step_events(
    config: FabricConfig,
    step: StepOutcome,
    con: duckdb.DuckDBPyConnection | None,
    dbt: DbtArtifacts | None = None,
    *,
    with_start: bool = True,
) -> list[dict[str, Any]]:
    """COMPLETE/FAIL events of every asset of `step`, each after its START unless `with_start` is
    False (START was sent when the step started), and START and COMPLETE/FAIL of each checked asset."""
    namespace = job_namespace(config)
    parent = ParentRun(namespace, step.job_name, step.run_id)
    datasets = AssetDatasets(config, step.run_id, con, dbt)
    events: list[dict[str, Any]] = []
    for asset in step.planned:
        name = asset_name(asset)
        lineage = _safe_lineage(datasets, asset)
        run_id = child_run_id(step.run_id, name)
        job_facets = {"jobType": job_type_facet("ASSET"), **lineage.job_facets}
        common: dict[str, Any] = {"parent": parent, "job_facets": job_facets}
        if with_start:
            events.append(_asset_start(config, step, asset))
        done = step.materialized.get(asset)
        if done is not None:
            events.append(
                run_event(
                    "COMPLETE",
                    done,
                    namespace,
                    name,
                    run_id,
                    inputs=lineage.inputs,
                    outputs=lineage.outputs,
                    **common,
                )
            )
        else:
            error = step.error or "the step ended without materializing this asset"
            events.append(
                run_event(
                    "FAIL",
                    step.finished,
                    namespace,
                    name,
                    run_id,
                    inputs=lineage.inputs,
                    error=error,
                    **common,
                )
            )
    for asset, checks in _by_asset(step.checks).items():
        events.extend(_check_events(config, datasets, parent, step, asset, checks, con))
    return events


def _safe_lineage(datasets: AssetDatasets, asset: AssetPath) -> AssetLineage:
    """The asset's datasets; lineage must never fail a run, so errors leave them empty."""
    try:
        return datasets.for_asset(asset)
    except (duckdb.Error, OSError, ValueError, KeyError) as exc:
        log.warning("lineage datasets of %s not available: %s", asset_name(asset), exc)
        return AssetLineage()


def _by_asset(checks: Sequence[CheckOutcome]) -> dict[AssetPath, list[CheckOutcome]]:
    grouped: dict[AssetPath, list[CheckOutcome]] = {}
    for check in checks:
        grouped.setdefault(check.asset, []).append(check)
    return grouped


def _ge_assertions(con: duckdb.DuckDBPyConnection | None, run_id: str, table: str) -> list[dict[str, Any]]:
    if con is None or not table_exists(con, "meta.validation_results"):
        return []
    rows = con.execute(
        "SELECT expectation_type, expectation_id, column_name, severity, success, observed_value, "
        '"partition", suite FROM meta.validation_results '
        "WHERE run_id = ? AND table_name = ? AND engine <> 'dbt' ORDER BY \"partition\", expectation_id",
        [run_id, table],
    ).fetchall()
    assertions = []
    for expectation, expectation_id, column, severity, success, observed, partition, suite in rows:
        assertion: dict[str, Any] = {
            "assertion": str(expectation),
            "success": bool(success),
            "severity": str(severity),
            "name": str(expectation_id),
            "params": {"partition": partition.isoformat(), "suite": suite},
        }
        if column:
            assertion["column"] = str(column)
        if observed is not None:
            assertion["actual"] = observed if isinstance(observed, str) else json.dumps(observed)
        assertions.append(assertion)
    return assertions


def _check_events(
    config: FabricConfig,
    datasets: AssetDatasets,
    parent: ParentRun,
    step: StepOutcome,
    asset: AssetPath,
    checks: Sequence[CheckOutcome],
    con: duckdb.DuckDBPyConnection | None,
) -> list[dict[str, Any]]:
    names = sorted({c.check for c in checks})
    # One check, or the checks evaluated with the asset's own step, or several in a step of checks.
    label = names[0] if len(names) == 1 else ("checks" if step.planned else "+".join(names))
    job = f"{asset_name(asset)}:{label}"
    run_id = child_run_id(step.run_id, job)
    assertions: list[dict[str, Any]] = []
    for check in checks:
        detailed = _ge_assertions(con, step.run_id, ".".join(asset)) if check.check == GE_CHECK else []
        assertions.extend(detailed)
        if not detailed:
            outcome: dict[str, Any] = {
                "assertion": check.check,
                "success": check.passed,
                "severity": "error" if check.severity == "ERROR" else "warn",
                "name": check.check,
            }
            if check.description:
                outcome["description"] = check.description
            assertions.append(outcome)
    checked = (
        datasets.table((asset[0], asset[1]))
        if len(asset) == 2
        else Dataset(DatasetName(f"dagster://{job_namespace(config)}", asset_name(asset)))
    )
    checked.io_facets["dataQualityAssertions"] = facet("dataQualityAssertions", assertions=assertions)
    namespace = job_namespace(config)
    common: dict[str, Any] = {"parent": parent, "job_facets": {"jobType": job_type_facet("ASSET_CHECK")}}
    end = max(c.timestamp for c in checks)
    finish = (
        run_event("FAIL", end, namespace, job, run_id, inputs=[checked], error=step.error, **common)
        if step.failed and not step.planned
        else run_event("COMPLETE", end, namespace, job, run_id, inputs=[checked], **common)
    )
    return [run_event("START", step.started, namespace, job, run_id, **common), finish]


def orchestrator_run_events(
    config: FabricConfig,
    run_id: str,
    job_name: str,
    started: float,
    finished: float | None,
    error: str | None = None,
    window: tuple[date, date] | None = None,
) -> list[dict[str, Any]]:
    """START and (when `finished`) COMPLETE/FAIL of the orchestrator run itself: the parent the
    asset runs name. Its run id is the orchestrator's; `nominalTime` spans the partition window."""
    namespace = job_namespace(config)
    facets: dict[str, Any] = {}
    if window is not None:
        first, last = window
        facets["nominalTime"] = facet(
            "nominalTime",
            nominalStartTime=iso(datetime.combine(first, time.min, UTC)),
            nominalEndTime=iso(datetime.combine(last + timedelta(days=1), time.min, UTC)),
        )
    common: dict[str, Any] = {
        "job_facets": {"jobType": job_type_facet("JOB", integration="DAGSTER")},
        "run_facets": facets,
    }
    events = [run_event("START", started, namespace, job_name, run_id, **common)]
    if finished is not None:
        kind: EventType = "FAIL" if error is not None else "COMPLETE"
        events.append(run_event(kind, finished, namespace, job_name, run_id, error=error, **common))
    return events
