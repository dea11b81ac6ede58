"""Lineage of a real materialization: OpenLineage events on disk, dbt column lineage, `fabric trace`.

One small demo flow (every asset, two days) runs once for the module in its own FABRIC_HOME and
Dagster instance; the tests read what it left behind.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from test_lineage_events import validate_event

from assets.definitions import build_definitions
from assets.runner import run_job
from assets.schedules import DAILY_JOB
from fabric.config import FabricConfig, load_config
from fabric.demo.generate import EstateSpec, generate_estate
from fabric.lineage.columns import ModelColumnLineage, trace_to_sources
from fabric.lineage.events import iso
from fabric.lineage.transport import read_events
from fabric.partitions import Window

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 3, 10)
WINDOW = Window(END - timedelta(days=1), END)


@dataclass
class Flow:
    config: FabricConfig
    home: Path
    run_id: str
    events: list[dict[str, Any]]

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.config.resolve(self.config.warehouse.path)), read_only=True)


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path) -> Iterator[Flow]:
    home = tmp_path_factory.mktemp("lineage") / "fabric_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FABRIC_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        patch.delenv("FABRIC_CONFIG", raising=False)
        config = load_config(REPO / "fabric.yaml")
        assert config.demo is not None
        spec = EstateSpec(customers=600, days=2, history_days=14, seed=7, end_date=END)
        generate_estate(config.resolve(config.demo.root), spec)
        result = run_job(config, home, DAILY_JOB, WINDOW)
        assert result.success
        events = list(read_events(config.resolve(config.lineage.directory)))
        yield Flow(config, home, result.run_id, events)


def _materialized(flow: Flow) -> set[str]:
    instance = dg.DagsterInstance.from_config(str(flow.home / "dagster_home"))
    records = instance.get_records_for_run(
        flow.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    return {
        "/".join(r.event_log_entry.dagster_event.event_specific_data.materialization.asset_key.path)  # type: ignore[union-attr]
        for r in records
    }


def _complete(flow: Flow, job: str) -> dict[str, Any]:
    found = [e for e in flow.events if e["job"]["name"] == job and e["eventType"] == "COMPLETE"]
    assert len(found) == 1, job
    return found[0]


def test_every_materialization_has_valid_start_and_complete(flow: Flow) -> None:
    assert flow.events
    for event in flow.events:
        validate_event(event)
    runs: dict[str, list[str]] = {}
    # The Dagster run's own events (run_job emits them after an in-process run): the parent.
    own = [e for e in flow.events if e["run"]["runId"] == flow.run_id]
    assert [(e["eventType"], e["job"]["name"]) for e in own] == [
        ("START", DAILY_JOB),
        ("COMPLETE", DAILY_JOB),
    ]
    for event in flow.events:
        if event in own:
            continue
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == flow.run_id
        assert parent["job"] == {"namespace": "brightwave", "name": DAILY_JOB}
    assert all(types == ["START", "COMPLETE"] for types in runs.values()), runs
    completed = {e["job"]["name"] for e in flow.events if e["eventType"] == "COMPLETE"}
    materialized = _materialized(flow)
    assert {"raw/crm__customers", "integrated/customers", "features/customer_features", "quality/gate",
            "scores/churn_scores", "analytics/snapshot"} <= materialized  # fmt: skip
    assert materialized <= completed  # every asset, dbt models one by one


def test_start_is_sent_when_each_step_starts(flow: Flow) -> None:
    """Every Fabric asset body sends its START first: in the run's event log the step's "START
    sent" record precedes its first materialization, and START carries the step's start time."""
    instance = dg.DagsterInstance.from_config(str(flow.home / "dagster_home"))
    records = instance.get_records_for_run(flow.run_id, limit=1_000_000).records
    started: dict[str, float] = {}
    announced: dict[str, tuple[int, str]] = {}  # step -> (storage id, message)
    first_materialization: dict[str, int] = {}
    step_of: dict[str, str] = {}  # asset -> step
    for record in records:
        entry = record.event_log_entry
        step = entry.step_key or ""
        kind = entry.dagster_event_type
        if kind == dg.DagsterEventType.STEP_START:
            started[step] = entry.timestamp
        elif kind is None and entry.user_message.startswith("OpenLineage START sent: "):
            announced[step] = (record.storage_id, entry.user_message)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            first_materialization.setdefault(step, record.storage_id)
            asset = entry.dagster_event.event_specific_data.materialization.asset_key  # type: ignore[union-attr]
            step_of["/".join(asset.path)] = step
    assert "dbt_models" in first_materialization and len(first_materialization) >= 8
    for step, first in first_materialization.items():
        assert step in announced, step
        assert announced[step][0] < first, step
    assert all(asset in announced[step][1] for asset, step in step_of.items())
    for asset, step in step_of.items():
        starts = [e for e in flow.events if e["job"]["name"] == asset and e["eventType"] == "START"]
        complete = _complete(flow, asset)
        assert len(starts) == 1, asset
        assert flow.events.index(starts[0]) < flow.events.index(complete)
        assert starts[0]["eventTime"] == iso(started[step]), asset


def test_ingest_events_name_the_files_and_tables_read(flow: Flow) -> None:
    tickets = _complete(flow, "raw/support__tickets")
    root = flow.config.resolve(flow.config.sources["support"].root)  # type: ignore[union-attr]
    assert [(i["namespace"], i["name"]) for i in tickets["inputs"]] == [
        ("file", str(root / f"tickets_{d:%Y%m%d}.csv")) for d in WINDOW
    ]
    warehouse = flow.config.resolve(flow.config.warehouse.path)
    raw = tickets["outputs"][0]
    assert (raw["namespace"], raw["name"]) == (f"duckdb://{warehouse}", "warehouse.raw.support__tickets")
    fields = [f["name"] for f in raw["facets"]["schema"]["fields"]]
    assert fields[:3] == ["ticket_id", "opened_at", "requester_id"] and "_fabric_position" in fields
    with flow.warehouse() as con:
        loaded = con.execute(
            "SELECT sum(rows_loaded) FROM meta.loads WHERE run_id = ? AND source = 'support'", [flow.run_id]
        ).fetchone()
    assert raw["outputFacets"]["outputStatistics"]["rowCount"] == loaded[0] > 0  # type: ignore[index]
    crm = _complete(flow, "raw/crm__customers")
    crm_path = flow.config.resolve(flow.config.sources["crm"].path)  # type: ignore[union-attr]
    assert [(i["namespace"], i["name"]) for i in crm["inputs"]] == [(f"sqlite://{crm_path}", "customers")]


def _column_lineage(flow: Flow) -> dict[tuple[str, str], ModelColumnLineage]:
    """Column lineage as the events carry it, keyed by relation (schema, table)."""
    models: dict[tuple[str, str], ModelColumnLineage] = {}
    for event in flow.events:
        if event["eventType"] != "COMPLETE":
            continue
        for output in event["outputs"]:
            facet = output.get("facets", {}).get("columnLineage")
            if facet is None:
                continue
            _, schema, table = output["name"].split(".")
            model = ModelColumnLineage((schema, table))
            for column, spec in facet["fields"].items():
                model.columns[column] = [
                    (*f["name"].split(".")[1:3], f["field"]) for f in spec["inputFields"]
                ]
            models[(schema, table)] = model
    return models


def test_dbt_column_lineage_maps_columns_to_their_sources(flow: Flow) -> None:
    models = _column_lineage(flow)
    customers = models[("integrated", "customers")].columns
    assert customers["email"] == [("staging", "stg_crm__customers", "email")]
    assert customers["monthly_fee"] == [("staging", "stg_crm__customers", "monthly_fee")]
    assert customers["country_code"] == [("staging", "country_aliases", "country_code")]
    assert ("integrated", "customer_xref", "fabric_customer_id") in customers["fabric_customer_id"]
    assert trace_to_sources(models, ("integrated", "customers", "email")) == {
        ("raw", "crm__customers", "email")
    }
    assert trace_to_sources(models, ("integrated", "customers", "first_name")) == {
        ("raw", "crm__customers", "first_name")
    }
    # The Fabric id is computed from every system's own key (identity resolution).
    assert {
        ("raw", "crm__customers", "crm_id"), ("raw", "erp__accounts", "account_no"),
        ("raw", "support__tickets", "requester_id"), ("raw", "web__events", "user_id"),
    } <= trace_to_sources(models, ("integrated", "customers", "fabric_customer_id"))  # fmt: skip
    features = ("features", "customer_features")
    assert trace_to_sources(models, (*features, "logins_7d")) == {("raw", "web__events", "event_type")}
    assert ("raw", "crm__customers", "created_at") in trace_to_sources(models, (*features, "tenure_days"))
    assert ("raw", "erp__payments", "amount") in trace_to_sources(models, (*features, "open_balance"))
    customers_event = _complete(flow, "integrated/customers")
    assert "select" in customers_event["job"]["facets"]["sql"]["query"].lower()


def test_quality_checks_carry_assertion_facets(flow: Flow) -> None:
    event = _complete(flow, "integrated/customers:great_expectations")
    facet = event["inputs"][0]["inputFacets"]["dataQualityAssertions"]
    with flow.warehouse() as con:
        expected = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE success) FROM meta.validation_results "
            "WHERE run_id = ? AND table_name = 'integrated.customers' AND engine <> 'dbt'",
            [flow.run_id],
        ).fetchone()
    assert expected is not None and expected[0] > 0
    assert len(facet["assertions"]) == expected[0]
    assert sum(a["success"] for a in facet["assertions"]) == expected[1]
    assert {a["params"]["partition"] for a in facet["assertions"]} == {d.isoformat() for d in WINDOW}
    dbt_tests = _complete(flow, "integrated/customers:checks")
    names = [a["name"] for a in dbt_tests["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]]
    assert any("unique" in n for n in names)


def test_trace_a_published_record_to_its_source_rows(flow: Flow) -> None:
    with flow.warehouse() as con:
        fabric_id, crm_id, lineage_id, day = con.execute(
            "SELECT s.fabric_customer_id, s.crm_customer_id, s.lineage_id, s.partition_date "
            "FROM scores.churn_scores s JOIN integrated.customers c USING (fabric_customer_id) "
            "WHERE s.partition_date = ? ORDER BY length(c.systems) DESC, s.fabric_customer_id LIMIT 1",
            [END],
        ).fetchone()  # type: ignore[misc]
        members = con.execute(
            "SELECT system, source_key FROM integrated.customer_xref "
            "WHERE fabric_customer_id = ? ORDER BY ALL",
            [fabric_id],
        ).fetchall()
        message_id, target_ref = con.execute(
            "SELECT message_id, target_ref FROM publish.published WHERE target = 'crm' AND entity_key = ?",
            [str(crm_id)],
        ).fetchone()  # type: ignore[misc]
    assert len(members) >= 2  # the CRM record and at least one other system's
    env = {**os.environ, "FABRIC_HOME": str(flow.home), "DAGSTER_HOME": str(flow.home / "dagster_home")}
    completed = subprocess.run(
        [sys.executable, "-c", "from fabric.cli import main; main()",
         "trace", "--target", "crm", "--key", str(crm_id)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == f"lineage id {lineage_id}"
    assert lines[1].startswith(
        f"  published (publish.published): target=crm, entity_key={crm_id}, message_id={message_id}, "
        f"target_ref={target_ref}, run_id={flow.run_id}, published_at="
    )
    assert target_ref == f"crm_id={crm_id}"
    assert any(
        line.startswith(f"  published (publish.sync_log): target=crm, entity_key={crm_id}, status=created, ")
        and f"message_id={message_id}" in line
        for line in lines
    )
    assert any(f"for {fabric_id} (CRM {crm_id}) on {day}" in line for line in lines)
    assert any(line.startswith("  quality gate open") for line in lines)
    assert any("integrated.customers" in line and "critical failed" in line for line in lines)
    assert any(line.startswith("  dbt build run") and "integrated.customers" in line for line in lines)
    for system, key in members:
        assert any(line.startswith(f"  system record {system}:{key} ") for line in lines)

    raw_lines = [line.strip() for line in lines if line.startswith("    raw.")]
    assert raw_lines
    assert not [line for line in lines if "raw rows not traced" in line]  # the demo maps every system
    crm_db = flow.config.resolve(flow.config.sources["crm"].path)  # type: ignore[union-attr]
    keys = {key for _, key in members}
    systems_seen = set()
    for line in raw_lines:
        table, _, location, position = line.split(" ", 4)[:4]
        systems_seen.add(table.removeprefix("raw.").split("__")[0])
        if location.startswith("sqlite:"):
            # A CRM table row by its key: it really is this customer's row.
            sqlite_table = location.split("#")[1]
            column, value = position.split("=")
            with sqlite3.connect(crm_db) as crm:
                row = crm.execute(f"SELECT crm_id FROM {sqlite_table} WHERE {column} = ?", [value]).fetchone()
            assert row is not None and row[0] == crm_id, line
        else:
            # A file row by its line number: the line holds one of the customer's system keys.
            number = int(line.split(" line ")[1].split(" ")[0])
            text = Path(location).read_text(encoding="cp1252" if location.endswith(".csv") else "ascii")
            assert any(k in text.splitlines()[number - 1] for k in keys), line
    assert systems_seen == {system for system, _ in members}


def test_a_failed_asset_emits_fail(config: FabricConfig, dbt_manifest: Path, fabric_home: Path) -> None:
    assert config.demo is not None
    spec = EstateSpec(customers=100, days=1, history_days=0, seed=3, end_date=END)
    generate_estate(config.resolve(config.demo.root), spec)
    crm = config.resolve(config.sources["crm"].path)  # type: ignore[union-attr]
    crm.write_bytes(b"this is not a SQLite database")
    job = build_definitions(config).resolve_job_def(DAILY_JOB)
    from assets.instance import project_instance

    result = job.execute_in_process(
        instance=project_instance(fabric_home),
        partition_key=END.isoformat(),
        asset_selection=[dg.AssetKey(["raw", "crm__customers"]), dg.AssetKey(["raw", "web__events"])],
        raise_on_error=False,
    )
    assert not result.success
    events = list(read_events(config.resolve(config.lineage.directory)))
    for event in events:
        validate_event(event)
    outcome = {e["job"]["name"]: e for e in events if e["eventType"] in ("COMPLETE", "FAIL")}
    assert outcome["raw/web__events"]["eventType"] == "COMPLETE"
    failed = outcome["raw/crm__customers"]
    assert failed["eventType"] == "FAIL"
    assert str(crm) in failed["run"]["facets"]["errorMessage"]["message"]
    starts = [e for e in events if e["eventType"] == "START" and e["job"]["name"] == "raw/crm__customers"]
    assert [s["run"]["runId"] for s in starts] == [failed["run"]["runId"]]


def test_catch_up_sensor_emits_the_same_events_after_the_run(flow: Flow, tmp_path: Path) -> None:
    """After a run the sensor emits the run's own events, and replays the asset events of jobs
    without hooks from the event log."""
    from assets.lineage import catch_up_sensors
    from fabric.config import LineageConfig

    replay = flow.config.model_copy(update={"lineage": LineageConfig(directory=tmp_path / "replay")})
    succeeded = catch_up_sensors(replay, hooked_jobs=[])[0]
    instance = dg.DagsterInstance.from_config(str(flow.home / "dagster_home"))
    run = instance.get_run_by_id(flow.run_id)
    assert run is not None
    success = instance.get_records_for_run(
        flow.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS, limit=1
    ).records[0]
    event = success.event_log_entry.dagster_event
    assert event is not None
    context = dg.build_run_status_sensor_context(
        sensor_name=succeeded.name, dagster_event=event, dagster_instance=instance, dagster_run=run
    )
    succeeded(context)  # type: ignore[call-arg]
    replayed = list(read_events(tmp_path / "replay"))
    for item in replayed:
        validate_event(item)

    def key(e: dict[str, Any]) -> tuple[str, str, str]:
        return e["run"]["runId"], e["eventType"], e["job"]["name"]

    parent = [e for e in replayed if e["job"]["name"] == DAILY_JOB]
    assert [(e["eventType"], e["run"]["runId"]) for e in parent] == [
        ("START", flow.run_id), ("COMPLETE", flow.run_id),
    ]  # fmt: skip
    assert parent[0]["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-03-09T00:00:00.000Z"
    assert parent[0]["run"]["facets"]["nominalTime"]["nominalEndTime"] == "2026-03-11T00:00:00.000Z"
    assets = [e for e in flow.events if e["run"]["runId"] != flow.run_id]  # without the run's own
    assert sorted(map(key, [e for e in replayed if e not in parent])) == sorted(map(key, assets))
    # A hooked job's asset events are left to its hooks: only the run's own events are added.
    catch_up_sensors(replay, hooked_jobs=[DAILY_JOB])[0](context)  # type: ignore[call-arg]
    again = list(read_events(tmp_path / "replay"))[len(replayed) :]
    assert [(e["eventType"], e["job"]["name"]) for e in again] == [
        ("START", DAILY_JOB), ("COMPLETE", DAILY_JOB),
    ]  # fmt: skip
