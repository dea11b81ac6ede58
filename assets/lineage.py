"""OpenLineage events for every asset materialization: step start, job hooks, a catch-up sensor.

Every Fabric asset body begins with `emit_step_start`, which emits START of each asset of the
running step (the dbt multi-asset: one per selected model) at the step's start time, so a
watcher sees a long step as running while it runs. Dagster has no hook at step start (hooks run
after a step), hence the call in the body. Fabric's jobs carry a success hook and a failure
hook: when a step ends they read that step's records from the run's event log (step start,
materializations, check evaluations, the planned assets) and `fabric.lineage` emits, per asset,
COMPLETE or FAIL, and START too when the body did not send it (the step failed before its
body ran, or START could not be sent then). A failed step still yields FAIL for each asset it
did not materialize. Step start and hooks run in the step's own process, in-process runs
(`fabric run`, tests) included, with no daemon.

Runs of jobs without the hooks (a UI "Materialize" of selected assets runs Dagster's implicit
asset job) send nothing at step start: the `openlineage_catch_up` run status sensor emits START
and COMPLETE/FAIL from the event log after the run ends, so no asset run gets two STARTs.

Lineage never fails a run: an emission error is logged as a warning.
"""

import time
from collections.abc import Iterable
from datetime import date
from typing import Any

import dagster as dg
import duckdb
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from fabric.config import FabricConfig
from fabric.errors import FabricError
from fabric.lineage.datasets import DbtArtifacts
from fabric.lineage.runs import (
    CheckOutcome,
    StepOutcome,
    asset_name,
    orchestrator_run_events,
    start_events,
    step_events,
)
from fabric.lineage.transport import transport_for

_ON_SUCCESS = "openlineage_on_success"
_ON_FAILURE = "openlineage_on_failure"
# Steps (run id, step key) whose START events this process sent; their end hook (same process)
# then sends only COMPLETE/FAIL.
_STARTED: set[tuple[str, str]] = set()

_STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}


def step_outcomes(
    instance: dg.DagsterInstance, run_id: str, job_name: str, step_keys: Iterable[str] | None, now: float
) -> list[StepOutcome]:
    """The outcome of `step_keys` (all steps when None) of a run, from its event log."""
    wanted = set(step_keys) if step_keys is not None else None
    steps: dict[str, StepOutcome] = {}
    records = instance.get_records_for_run(run_id, of_type=_STEP_EVENTS, limit=1_000_000).records
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        key = entry.step_key
        if event is None or key is None or (wanted is not None and key not in wanted):
            continue
        step = steps.setdefault(key, StepOutcome(run_id, job_name, key, entry.timestamp, now))
        kind = event.event_type
        data: Any = event.event_specific_data
        if kind == dg.DagsterEventType.STEP_START:
            step.started = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            step.error = _failure_message(getattr(data, "error", None))
            step.finished = entry.timestamp
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            asset = tuple(data.asset_key.path)
            if asset not in step.planned:
                step.planned.append(asset)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            step.materialized[tuple(data.materialization.asset_key.path)] = entry.timestamp
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            step.checks.append(
                CheckOutcome(
                    asset=tuple(data.asset_key.path),
                    check=data.check_name,
                    passed=data.passed,
                    severity=data.severity.value,
                    timestamp=entry.timestamp,
                    description=data.description,
                )
            )
    return list(steps.values())


def _failure_message(error: Any) -> str:
    """The step's own error (the innermost cause), not Dagster's "error while executing op"."""
    if error is None:
        return "step failed"
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return str(error.message).strip()


def _dbt_artifacts(config: FabricConfig, run_id: str) -> DbtArtifacts | None:
    """The dbt invocation of this run (its target dir holds the compiled SQL), else the parse."""
    target = config.resolve(config.dbt.project_dir) / config.dbt.target_path
    invocations = sorted(
        (p for p in target.glob(f"*-{run_id[:7]}-*") if (p / "manifest.json").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    if invocations:
        latest = invocations[-1]
        return DbtArtifacts.load(latest / "manifest.json", latest / "run_results.json")
    parsed = target / "manifest.json"
    return DbtArtifacts.load(parsed) if parsed.is_file() else None


def emit_steps(config: FabricConfig, steps: list[StepOutcome], log: Any, *, with_start: bool = True) -> int:
    """Emit the events of `steps` with the configured transport (START too unless `with_start`
    is False); returns how many were sent."""
    transport = transport_for(config)
    if transport is None or not steps:
        return 0
    warehouse = config.resolve(config.warehouse.path)
    con: duckdb.DuckDBPyConnection | None = None
    try:
        if warehouse.is_file():
            con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:  # another process writes it: emit without warehouse facets
        log.warning(f"OpenLineage: warehouse not readable, events without its facets: {exc}")
    try:
        needs_dbt = any(len(a) == 2 and a[0] not in ("raw", "publish") for s in steps for a in s.planned)
        dbt = _dbt_artifacts(config, steps[0].run_id) if needs_dbt else None
        events = [e for step in steps for e in step_events(config, step, con, dbt, with_start=with_start)]
        transport.emit(events)
        return len(events)
    except (FabricError, OSError, ValueError, duckdb.Error) as exc:
        log.warning(f"OpenLineage events not emitted: {exc}")
        return 0
    finally:
        if con is not None:
            con.close()


_RUN_EVENTS = {
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
}


def _run_window(run: dg.DagsterRun) -> tuple[date, date] | None:
    tags = run.tags
    first = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get(PARTITION_NAME_TAG)
    last = tags.get(ASSET_PARTITION_RANGE_END_TAG) or tags.get(PARTITION_NAME_TAG)
    try:
        return (date.fromisoformat(first), date.fromisoformat(last)) if first and last else None
    except ValueError:
        return None


def emit_run(config: FabricConfig, instance: dg.DagsterInstance, run_id: str, log: Any) -> int:
    """Emit START and COMPLETE/FAIL of the Dagster run itself (the asset runs' parent)."""
    transport = transport_for(config)
    run = instance.get_run_by_id(run_id)
    if transport is None or run is None:
        return 0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    for record in instance.get_records_for_run(run_id, of_type=_RUN_EVENTS, limit=100).records:
        entry = record.event_log_entry
        kind = entry.dagster_event_type
        if kind == dg.DagsterEventType.RUN_START:
            started = entry.timestamp
        else:
            finished = entry.timestamp
            if kind != dg.DagsterEventType.RUN_SUCCESS:
                error = entry.dagster_event.message if entry.dagster_event else None
                error = error or f"run {kind.value.lower() if kind else 'ended'}"
    if started is None:
        return 0
    events = orchestrator_run_events(config, run_id, run.job_name, started, finished, error, _run_window(run))
    try:
        transport.emit(events)
    except (FabricError, OSError) as exc:
        log.warning(f"OpenLineage events of run {run_id} not emitted: {exc}")
        return 0
    return len(events)


def emit_step_start(config: FabricConfig, context: dg.AssetExecutionContext) -> None:
    """Emit START of every asset of the running step, at the step's start time (from the event
    log). Called first in each asset body. Only in jobs carrying the lineage hooks, which then
    send COMPLETE/FAIL in this process; runs of other jobs are left whole to the catch-up sensor.
    Never raises: lineage must not fail a run."""
    try:
        step = context.get_step_execution_context()
        key = (step.run_id, step.step.key)
        hooks = step.job_def.get_all_hooks_for_handle(step.node_handle) or frozenset()
        if key in _STARTED or _ON_SUCCESS not in {h.name for h in hooks}:
            return
        transport = transport_for(config)
        if transport is None:
            return
        steps = step_outcomes(step.instance, step.run_id, step.job_name, [step.step.key], time.time())
        events = [e for outcome in steps for e in start_events(config, outcome)]
        if not events:  # nothing planned yet: the end hook sends START with COMPLETE/FAIL
            return
        transport.emit(events)
        _STARTED.add(key)
        context.log.debug(
            "OpenLineage START sent: " + ", ".join(asset_name(a) for s in steps for a in s.planned)
        )
    except Exception as exc:  # whatever went wrong, the step itself goes on
        context.log.warning(f"OpenLineage START events not emitted: {exc}")


def lineage_hooks(config: FabricConfig) -> set[dg.HookDefinition]:
    """A success and a failure hook emitting the events of the step that just ended."""

    def _emit(context: dg.HookContext) -> None:
        run = context.instance.get_run_by_id(context.run_id)
        job_name = run.job_name if run is not None else context.job_name
        steps = step_outcomes(context.instance, context.run_id, job_name, [context.step_key], time.time())
        if context.op_exception is not None:
            for step in steps:
                step.error = step.error or str(context.op_exception)
        key = (context.run_id, context.step_key)
        started = key in _STARTED
        _STARTED.discard(key)
        emit_steps(config, steps, context.log, with_start=not started)

    @dg.success_hook(name=_ON_SUCCESS)
    def _on_success(context: dg.HookContext) -> None:
        _emit(context)

    @dg.failure_hook(name=_ON_FAILURE)
    def _on_failure(context: dg.HookContext) -> None:
        _emit(context)

    return {_on_success, _on_failure}


def catch_up_sensors(config: FabricConfig, hooked_jobs: Iterable[str]) -> list[dg.SensorDefinition]:
    """After every run: the events of the Dagster run itself, and the asset events of runs of
    jobs that carry no lineage hooks (e.g. UI materializations)."""
    hooked = set(hooked_jobs)

    @dg.run_status_sensor(
        name="openlineage_catch_up",
        run_status=dg.DagsterRunStatus.SUCCESS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="OpenLineage events of finished runs (and their assets when the job has no hooks).",
    )
    def _succeeded(context: dg.RunStatusSensorContext) -> None:
        _catch_up(context.instance, context.dagster_run, context.log)

    @dg.run_failure_sensor(
        name="openlineage_catch_up_failures",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="OpenLineage events of failed runs (and their assets when the job has no hooks).",
    )
    def _failed(context: dg.RunFailureSensorContext) -> None:
        _catch_up(context.instance, context.dagster_run, context.log)

    def _catch_up(instance: dg.DagsterInstance, run: dg.DagsterRun, log: Any) -> None:
        if run.job_name not in hooked:
            emit_steps(config, step_outcomes(instance, run.run_id, run.job_name, None, time.time()), log)
        emit_run(config, instance, run.run_id, log)

    return [_succeeded, _failed]
