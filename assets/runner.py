"""Running Fabric's jobs in-process against the project's Dagster instance (CLI, demo, tests).

Runs launched here are recorded in the same instance `dagster dev` reads, so they appear in the
UI's run history next to scheduled runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assets.definitions import build_definitions
from assets.instance import project_instance
from assets.lineage import emit_run
from assets.schedules import DAILY_JOB, INTEGRATE_JOB, partition_range_tags
from fabric.config import FabricConfig
from fabric.errors import FabricError
from fabric.partitions import Window
from fabric.scoring.registry import ModelRegistry
from fabric.warehouse import Warehouse, table_exists


@dataclass
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str


@dataclass
class FlowResult:
    """What the demo flow did, for the summary."""

    window: Window
    succeeded: bool
    run_ids: dict[str, str] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)


def run_job(
    config: FabricConfig,
    fabric_home: Path,
    job_name: str,
    window: Window,
    raise_on_error: bool = False,
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """Execute `job_name` for every partition of `window` in one in-process run."""
    instance = project_instance(fabric_home)
    job = build_definitions(config).resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=instance,
        tags=partition_range_tags(window),
        raise_on_error=raise_on_error,
        # Step-level events are DEBUG: in a terminal, show what steps log, not the event stream.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    # The run's own START/COMPLETE (the asset runs' parent): a daemon's catch-up sensor would
    # emit them, but an in-process run has no daemon.
    emit_run(config, instance, result.run_id, logging.getLogger(__name__))
    return result


def check_outcomes(result: dg.ExecuteInProcessResult) -> list[CheckOutcome]:
    """Every asset check evaluated in a run, passed or not."""
    outcomes = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        assert isinstance(evaluation, dg.AssetCheckEvaluation)
        outcomes.append(
            CheckOutcome(
                asset="/".join(evaluation.asset_key.path),
                check=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
            )
        )
    return outcomes


def failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key or "?" for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def _history_loaded(config: FabricConfig, history: Window) -> bool:
    """Whether every source entity has a load recorded for every day of `history`."""
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    if not warehouse.path.exists():
        return False
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, "meta.loads"):
            return False
        row = con.execute(
            'SELECT count(DISTINCT (source, entity, "partition")) FROM meta.loads '
            'WHERE "partition" BETWEEN ? AND ?',
            [history.start, history.end],
        ).fetchone()
    return row is not None and row[0] >= len(config.source_entities()) * len(history)


def demo_flow(
    config: FabricConfig,
    fabric_home: Path,
    days: int | None,
    stage: Callable[[str], AbstractContextManager[None]],
) -> FlowResult:
    """Backfill history and train once, then run every asset for the demo window."""
    if config.demo is None:
        raise FabricError("fabric.yaml has no `demo` section: `fabric demo run` needs one")
    manifest_file = config.resolve(config.demo.root) / "manifest.json"
    if not manifest_file.is_file():
        raise FabricError(f"{manifest_file}: no demo estate. Run `fabric demo generate` first.")
    manifest = json.loads(manifest_file.read_text())
    end = date.fromisoformat(manifest["end_date"])
    window = Window(end - timedelta(days=(days or config.demo.days) - 1), end)
    history = Window(date.fromisoformat(manifest["history_start"]), window.start - timedelta(days=1))
    flow = FlowResult(window=window, succeeded=True)

    if not _history_loaded(config, history):
        with stage(f"backfill history {history} (ingest + integrate, one run)"):
            result = run_job(config, fabric_home, INTEGRATE_JOB, history)
            flow.run_ids["history"] = result.run_id
            if not result.success:
                flow.succeeded = False
                flow.failed_steps = failed_steps(result)
                return flow

    registry = ModelRegistry(config.resolve(config.scoring.registry_dir))
    if not registry.has_alias(config.scoring.model_name, "champion"):
        from fabric.scoring.train import train

        with stage("train the champion model on labelled history (time split)"):
            train(config, Warehouse(config.resolve(config.warehouse.path)), f"train-{end}")

    with stage(f"materialize every asset for {window} (one run)"):
        result = run_job(config, fabric_home, DAILY_JOB, window)
    flow.run_ids["window"] = result.run_id
    flow.checks = check_outcomes(result)
    flow.failed_steps = failed_steps(result)
    flow.succeeded = result.success
    return flow
