"""The whole graph, materialized for real: ingest -> dbt -> GE gate -> scoring -> publish -> snapshot.

Small estates keep this quick; each test gets its own FABRIC_HOME, warehouse and Dagster instance.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from assets.definitions import build_definitions
from assets.runner import check_outcomes, run_job
from assets.schedules import DAILY_JOB, INTEGRATE_JOB
from fabric.config import FabricConfig
from fabric.demo.generate import EstateSpec, generate_estate
from fabric.partitions import Window

END = date(2026, 3, 10)
REPO = Path(__file__).resolve().parents[1]

# Columns that legitimately differ between two runs of the same partition.
RUN_COLUMNS = {"_fabric_load_id", "_fabric_loaded_at", "run_id", "scored_at", "lineage_id", "published_at"}


def _estate(config: FabricConfig, **spec: object) -> dict:
    assert config.demo is not None
    params: dict = {"customers": 600, "days": 2, "history_days": 14, "seed": 7, "end_date": END}
    params.update(spec)
    return generate_estate(config.resolve(config.demo.root), EstateSpec(**params))


def _window(days: int = 2) -> Window:
    return Window(END - timedelta(days=days - 1), END)


def _snapshot(config: FabricConfig, tables: list[str]) -> dict[str, list[tuple]]:
    """Full, ordered contents of `tables` without run-specific columns."""
    out = {}
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        for table in tables:
            columns = [
                c for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema || '.' || table_name = ? ORDER BY ordinal_position",
                    [table],
                ).fetchall()
                if c not in RUN_COLUMNS
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            out[table] = con.execute(f"SELECT {select} FROM {table} ORDER BY ALL").fetchall()
    return out


def test_definitions_load(config: FabricConfig, dbt_manifest: Path) -> None:
    defs = build_definitions(config)
    repo = defs.get_repository_def()
    keys = {"/".join(k.path) for k in repo.asset_graph.get_all_asset_keys()}
    for expected in (
        "raw/crm__customers", "raw/erp__invoices", "raw/support__tickets", "raw/web__events",
        "integrated/customers", "features/customer_features", "quality/gate",
        "scores/churn_scores", "publish/crm", "publish/score_files", "analytics/snapshot",
    ):
        assert expected in keys, expected
    groups = {
        "/".join(k.path): repo.asset_graph.get(k).group_name
        for k in repo.asset_graph.get_all_asset_keys()
        if repo.asset_graph.get(k).is_materializable
    }
    assert {"raw", "integrated", "features", "quality", "scoring", "publish", "analytics"} <= set(
        groups.values()
    )
    checks = {f"{'/'.join(c.asset_key.path)}:{c.name}" for c in repo.asset_graph.asset_check_keys}
    assert "integrated/customers:great_expectations" in checks
    assert "features/customer_features:great_expectations" in checks
    assert any(c.startswith("integrated/customers:") and "unique" in c for c in checks)  # dbt tests
    assert defs.resolve_job_def(DAILY_JOB) is not None
    assert [s.name for s in defs.schedules or []] == ["nightly"]


def test_full_graph_twice_is_identical(config: FabricConfig, dbt_manifest: Path, fabric_home: Path) -> None:
    _estate(config)
    window = _window()
    first = run_job(config, fabric_home, DAILY_JOB, window)
    assert first.success
    # Fabric's own log lines reach the run's event log (assets/dagster.yaml, python_logs)
    logged = [e.user_message for e in dg.DagsterInstance.get().all_logs(first.run_id)]
    assert sum("feature rows scored," in m for m in logged) == 2  # one per scored day
    committed = [m for m in logged if m.startswith("ingest support.tickets ") and " committed (" in m]
    assert [m.split(" committed ")[1].split(":")[0] for m in committed] == ["(1 of 2 days)", "(2 of 2 days)"]
    assert any(m.startswith("publishers.crm (") and " delivered: " in m for m in logged)
    outcomes = check_outcomes(first)
    assert outcomes and all(c.passed for c in outcomes if c.check == "great_expectations")

    tables = [
        "raw.crm__customers", "raw.support__tickets", "raw.web__events", "quarantine.support__tickets",
        "integrated.customers", "integrated.customer_xref", "features.customer_features",
        "scores.churn_scores",
    ]
    before = _snapshot(config, tables)
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        scored_days = con.execute(
            "SELECT count(DISTINCT partition_date), count(*) FROM scores.churn_scores"
        ).fetchone()
        steps = {s for (s,) in con.execute("SELECT DISTINCT step FROM meta.runs").fetchall()}
    assert scored_days is not None and scored_days[0] == 2 and scored_days[1] > 0
    assert {"dbt_build", "quality_gate"} <= steps

    second = run_job(config, fabric_home, DAILY_JOB, window)
    assert second.success
    assert _snapshot(config, tables) == before

    crm = sqlite3.connect(config.resolve(config.publishers["crm"].path))  # type: ignore[union-attr]
    total, distinct = crm.execute("SELECT count(*), count(DISTINCT crm_id) FROM crm_scores").fetchone()
    crm.close()
    assert total == distinct > 0
    snapshot = config.resolve(config.warehouse.analytics_path)
    with duckdb.connect(str(snapshot), read_only=True) as con:
        emails = [e for (e,) in con.execute("SELECT email FROM customers LIMIT 50").fetchall()]
    assert emails and all(e is None or "***" in e for e in emails)


def test_quarantine_reconciles(config: FabricConfig, dbt_manifest: Path, fabric_home: Path) -> None:
    manifest = _estate(config, faults=("malformed_rows",))
    window = _window(1)
    result = run_job(config, fabric_home, INTEGRATE_JOB, window)
    assert result.success
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        loads = con.execute(
            "SELECT source || '.' || entity, rows_read, rows_loaded, rows_quarantined "
            "FROM meta.loads WHERE \"partition\" = ?",
            [END],
        ).fetchall()
        reasons = dict(
            con.execute(
                "SELECT reason_code, count(*) FROM quarantine.support__tickets "
                "WHERE _fabric_partition = ? GROUP BY 1",
                [END],
            ).fetchall()
        )
    assert len(loads) == len(config.source_entities())
    for name, read, loaded, quarantined in loads:
        assert read == loaded + quarantined, name
    by_name = {name: quarantined for name, _, _, quarantined in loads}
    assert by_name["support.tickets"] > 0 and by_name["web.events"] > 0
    assert sum(reasons.values()) == by_name["support.tickets"]
    assert json.dumps(manifest)  # the manifest documents what was injected


def test_bad_day_blocks_only_that_day(config: FabricConfig, dbt_manifest: Path, fabric_home: Path) -> None:
    _estate(config, faults=("bad_country",))
    window = _window()
    result = run_job(config, fabric_home, DAILY_JOB, window)
    ge = [
        c
        for c in check_outcomes(result)
        if c.asset == "integrated/customers" and c.check == "great_expectations"
    ]
    assert ge and not ge[0].passed
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        days = {
            d for (d,) in con.execute("SELECT DISTINCT partition_date FROM scores.churn_scores").fetchall()
        }
        published = {
            d
            for (d,) in con.execute(
                "SELECT DISTINCT \"partition\" FROM publish.published"
            ).fetchall()
        }
    assert days == {window.start}
    assert END not in published

    # A run of scoring alone for the bad day, started separately, cannot bypass the gate.
    defs = build_definitions(config)
    job = defs.resolve_job_def(DAILY_JOB)
    alone = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=END.isoformat(),
        asset_selection=[dg.AssetKey(["scores", "churn_scores"])],
        raise_on_error=False,
    )
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        row = con.execute(
            "SELECT count(*) FROM scores.churn_scores WHERE partition_date = ?", [END]
        ).fetchone()
    assert row == (0,)
    assert alone.run_id


def test_backfill_from_the_dagster_cli(config: FabricConfig, dbt_manifest: Path, fabric_home: Path) -> None:
    """`dagster asset materialize --partition-range` works because every asset is single-run.

    Two raw assets of different kinds (a SQLite table, a CSV file) stand for the group: each
    step runs in a process of its own, so more assets would repeat the same check, slowly."""
    _estate(config, customers=300)
    window = _window()
    from assets.instance import ensure_dagster_home

    ensure_dagster_home(fabric_home)
    completed = subprocess.run(
        [
            sys.executable, "-m", "dagster", "asset", "materialize",
            "-m", "assets.definitions",
            "--select", "raw/crm__customers,raw/support__tickets",
            "--partition-range", f"{window.start}...{window.end}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        days = con.execute(
            'SELECT source, entity, count(DISTINCT "partition") FROM meta.loads GROUP BY ALL ORDER BY ALL'
        ).fetchall()
    assert days == [("crm", "customers", 2), ("support", "tickets", 2)]


def test_nightly_window() -> None:
    from assets.schedules import nightly_window

    first = date(2026, 1, 1)
    assert nightly_window(date(2026, 3, 11), 3, first) == Window(date(2026, 3, 7), date(2026, 3, 10))
    # Clipped at the first partition.
    assert nightly_window(date(2026, 1, 2), 3, first) == Window(first, first)


def test_project_instance_gives_the_warehouse_pool_one_slot(fabric_home: Path) -> None:
    """DuckDB has one writer: the instance `make`, the CLI and `dagster dev` use enforces it."""
    from assets.instance import project_instance

    instance = project_instance(fabric_home)
    assert Path(instance.root_directory) == (fabric_home / "dagster_home").resolve()
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_nightly_schedule_requests_one_range_run(config: FabricConfig, dbt_manifest: Path) -> None:
    from datetime import datetime

    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    defs = build_definitions(config)
    schedule = defs.resolve_schedule_def("nightly")
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 11, 2)) as context:
        result = schedule.evaluate_tick(context)
    assert result.run_requests is not None and len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2026-03-07"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-03-10"
    assert defs.resolve_job_def(schedule.job_name).partitions_def is not None
