"""Landing-zone sensors: one per file source with a `landing:` folder (`fabric.ingest.landing`).

Each tick first settles the files whose runs have finished (processed, or failed and moved aside
with the run's failure as the reason), then handles the new drops: a new file requests a run of
its entity's ingest asset for the file's day, with run key `<name>:<sha256 prefix>`; duplicates
and refused files are logged as warnings (they are in `meta.landing_files` too). A tick that
finds the warehouse busy (a run is writing it) skips and retries next time.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import duckdb

from fabric.config import FabricConfig
from fabric.errors import WarehouseError
from fabric.ingest import landing
from fabric.warehouse import Warehouse

RUN_KEY_TAG = "dagster/run_key"
_FINISHED = {
    dg.DagsterRunStatus.SUCCESS: True,
    dg.DagsterRunStatus.FAILURE: False,
    dg.DagsterRunStatus.CANCELED: False,
}


def landing_sensors(config: FabricConfig) -> list[dg.SensorDefinition]:
    """A sensor per source that declares a landing folder, in declaration order."""
    return [
        _landing_sensor(config, source)
        for source, declared in config.sources.items()
        if getattr(declared, "landing", None) is not None
    ]


def _landing_sensor(config: FabricConfig, source: str) -> dg.SensorDefinition:
    declared = config.sources[source]
    keys = [dg.AssetKey(["raw", f"{source}__{entity}"]) for entity in declared.entities]
    interval = declared.landing.interval_seconds  # type: ignore[union-attr]

    @dg.sensor(
        name=f"landing_{source}",
        minimum_interval_seconds=interval,
        asset_selection=keys,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests each new file dropped into the landing folder of source {source}.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        warehouse = Warehouse(config.resolve(config.warehouse.path))
        try:
            with warehouse.connect() as con:
                for run_key, name, _ in landing.queued(con, source):
                    _settle(context, con, run_key, name)
                outcomes = landing.scan(con, config, source)
        except WarehouseError as exc:
            yield dg.SkipReason(f"warehouse busy, retrying next tick: {exc}")
            return
        requested = 0
        for outcome in outcomes:
            if outcome.status != "queued":
                context.log.warning(f"landing {source}: {outcome.name} {outcome.status}: {outcome.reason}")
                continue
            context.log.info(f"landing {source}: {outcome.name} queued: {outcome.reason}")
            assert outcome.day is not None and outcome.run_key is not None
            requested += 1
            yield dg.RunRequest(
                run_key=outcome.run_key,
                partition_key=outcome.day.isoformat(),
                asset_selection=[dg.AssetKey(["raw", f"{source}__{outcome.entity}"])],
                tags={"fabric/landing_file": outcome.name, "fabric/sha256": outcome.sha256 or ""},
            )
        if not requested:
            yield dg.SkipReason(f"no new file in the landing folder of {source}")

    def _settle(
        context: dg.SensorEvaluationContext, con: duckdb.DuckDBPyConnection, run_key: str, name: str
    ) -> None:
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
        if not runs or runs[0].status not in _FINISHED:
            return  # not launched yet, or still running
        run = runs[0]
        succeeded = _FINISHED[run.status]
        reason = f"run {run.run_id} {run.status.value.lower()}"
        if not succeeded:
            failure = _failure_message(context.instance, run.run_id)
            reason += f": {failure}" if failure else ""
            context.log.warning(f"landing {source}: {name} failed ({reason})")
        landing.settle(con, config, source, run_key, run.run_id, succeeded, reason)

    return _sensor


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step failure of a run, as text (the ingest's own error message)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        error = getattr(data, "error", None)
        if error is not None:
            return str(error.message).strip()
    return ""
