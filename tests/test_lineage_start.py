"""OpenLineage START is sent when a step starts, COMPLETE/FAIL when it ends (real in-process runs).

Small probe assets call `emit_step_start` as every Fabric asset body does and look at the file
transport from inside their body, i.e. while the step runs. The Fabric assets themselves are
covered in tests/test_lineage_flow.py.
"""

# No `from __future__ import annotations`: Dagster reads the context annotations at definition time.
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from test_lineage_events import validate_event

from assets.lineage import catch_up_sensors, emit_step_start, lineage_hooks
from fabric.config import FabricConfig, LineageConfig
from fabric.lineage.events import iso
from fabric.lineage.transport import read_events

PROBE = dg.AssetKey(["probe", "table"])
PAIR = [dg.AssetKey(["probe", "left"]), dg.AssetKey(["probe", "right"])]


class Probe:
    """The assets of one test and what their bodies saw in the lineage directory."""

    def __init__(self, config: FabricConfig, fail: bool = False) -> None:
        self.config = config
        self.seen: dict[str, list[tuple[str, str]]] = {}
        directory = config.resolve(config.lineage.directory)

        def look(context: dg.AssetExecutionContext) -> None:
            step = context.get_step_execution_context().step.key
            self.seen[step] = [(e["eventType"], e["job"]["name"]) for e in read_events(directory)]

        @dg.asset(key=PROBE)
        def _single(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            emit_step_start(config, context)
            look(context)
            if fail:
                raise RuntimeError("probe failed after its start")
            return dg.MaterializeResult()

        @dg.multi_asset(specs=[dg.AssetSpec(k) for k in PAIR], can_subset=True)
        def _pair(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
            emit_step_start(config, context)
            look(context)
            for key in sorted(context.selected_asset_keys):
                yield dg.MaterializeResult(asset_key=key)

        self.assets = [_single, _pair]

    def run(
        self, instance: dg.DagsterInstance, selection: list[dg.AssetKey], hooked: bool = True
    ) -> dg.ExecuteInProcessResult:
        if not hooked:  # Dagster's implicit asset job, as a UI "Materialize" runs it
            return dg.materialize(self.assets, instance=instance, selection=selection, raise_on_error=False)
        job = dg.define_asset_job("probe_job", selection=selection, hooks=lineage_hooks(self.config))
        return (
            dg.Definitions(assets=self.assets, jobs=[job])
            .resolve_job_def("probe_job")
            .execute_in_process(instance=instance, raise_on_error=False)
        )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _events(config: FabricConfig) -> list[dict[str, Any]]:
    events = list(read_events(config.resolve(config.lineage.directory)))
    for event in events:
        validate_event(event)
    return events


def _step_starts(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.step_key or "": r.event_log_entry.timestamp for r in records}


def test_start_is_in_the_file_while_the_step_runs(config: FabricConfig, instance: dg.DagsterInstance) -> None:
    probe = Probe(config)
    result = probe.run(instance, [PROBE, *PAIR])
    assert result.success
    # Inside each body: its own START(s), and no end event of its own yet.
    step_of = {"probe/table": "probe__table", "probe/left": "_pair", "probe/right": "_pair"}
    for job, step in step_of.items():
        assert ("START", job) in probe.seen[step]
        assert ("COMPLETE", job) not in probe.seen[step]
    # The multi-asset step (as dbt's): one START per asset, both sent when it started.
    pair = [e for e in probe.seen["_pair"] if e[1] in ("probe/left", "probe/right")]
    assert sorted(pair) == [("START", "probe/left"), ("START", "probe/right")]

    events = _events(config)
    started = _step_starts(instance, result.run_id)
    for job, step in step_of.items():
        own = [e for e in events if e["job"]["name"] == job]
        assert [e["eventType"] for e in own] == ["START", "COMPLETE"], job  # one START, then the end
        assert own[0]["eventTime"] == iso(started[step])
        assert own[0]["run"]["runId"] == own[1]["run"]["runId"]
        assert own[0]["run"]["facets"]["parent"]["run"]["runId"] == result.run_id
        assert own[1]["outputs"] and not own[0]["outputs"]  # datasets come with the end event


def test_a_subset_of_a_multi_asset_starts_only_the_selected_assets(
    config: FabricConfig, instance: dg.DagsterInstance
) -> None:
    probe = Probe(config)
    assert probe.run(instance, [PAIR[1]]).success
    assert [(e["eventType"], e["job"]["name"]) for e in _events(config)] == [
        ("START", "probe/right"),
        ("COMPLETE", "probe/right"),
    ]


def test_a_failed_step_ends_its_start_with_fail(config: FabricConfig, instance: dg.DagsterInstance) -> None:
    probe = Probe(config, fail=True)
    result = probe.run(instance, [PROBE])
    assert not result.success
    assert probe.seen["probe__table"] == [("START", "probe/table")]
    events = _events(config)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert "probe failed after its start" in events[1]["run"]["facets"]["errorMessage"]["message"]


def test_runs_without_the_hooks_are_left_to_the_catch_up_sensor(
    config: FabricConfig, instance: dg.DagsterInstance
) -> None:
    probe = Probe(config)
    result = probe.run(instance, [PROBE], hooked=False)
    assert result.success
    assert probe.seen["probe__table"] == []
    assert _events(config) == []  # nothing at step start nor at its end: no hooks
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    success = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
    event = success[0].event_log_entry.dagster_event
    assert event is not None
    sensor = catch_up_sensors(config, hooked_jobs=["probe_job"])[0]
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run
    )
    sensor(context)  # type: ignore[call-arg]
    events = _events(config)
    assert [(e["eventType"], e["job"]["name"]) for e in events if e["job"]["name"] == "probe/table"] == [
        ("START", "probe/table"),
        ("COMPLETE", "probe/table"),
    ]
    start = next(e for e in events if e["job"]["name"] == "probe/table")
    assert start["eventTime"] == iso(_step_starts(instance, result.run_id)["probe__table"])


def test_an_emission_error_is_a_warning(
    config: FabricConfig, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    blocked = tmp_path / "not_a_directory"
    blocked.write_text("a file where the lineage directory should be")
    unwritable = config.model_copy(update={"lineage": LineageConfig(directory=blocked)})
    probe = Probe(unwritable)
    result = probe.run(instance, [PROBE])
    assert result.success
    warnings = [
        r.event_log_entry.user_message
        for r in instance.get_records_for_run(result.run_id).records
        if r.event_log_entry.level >= 30 and "OpenLineage" in r.event_log_entry.user_message
    ]
    assert any(w.startswith("OpenLineage START events not emitted") for w in warnings), warnings
    assert any(w.startswith("OpenLineage events not emitted") for w in warnings), warnings
