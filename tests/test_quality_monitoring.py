"""Volume anomalies, source freshness, dbt test results in the gate, and the Data Docs site."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from fabric.errors import QualityGateClosed
from fabric.partitions import Window
from fabric.quality import gate_decisions, load_suite, render_report, require_open, validate_partitions
from fabric.quality.cli import app as quality_app
from fabric.quality.dbt import record_dbt_results
from fabric.quality.docs import build_data_docs, docs_name
from fabric.quality.freshness import source_freshness
from fabric.quality.volume import volume_anomalies
from fabric.warehouse import Warehouse

START = date(2026, 1, 1)
GOVERNED = "features.toy"


def day(n: int) -> date:
    return START + timedelta(days=n)


@pytest.fixture
def con(tmp_path: Path) -> Any:
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as connection:
        yield connection


def test_volume_flags_a_spike_and_a_drop_against_the_trailing_window(con: duckdb.DuckDBPyConnection) -> None:
    # 20 ordinary days of 1000 +/- 40 rows, then 3000 rows, then 300, then a day without rows
    counts = {day(n): 1000 + (n * 37) % 81 - 40 for n in range(20)}
    counts.update({day(20): 3000, day(21): 300})
    con.execute("CREATE TABLE raw.toy (_fabric_partition DATE, v INTEGER)")
    for d, n in counts.items():
        con.execute("INSERT INTO raw.toy SELECT ?, range FROM range(?)", [d, n])
    judged = {
        v.partition: v
        for v in volume_anomalies(con, "raw.toy", "_fabric_partition", [day(n) for n in range(23)])
    }

    assert judged[day(2)].status == "no_history" and judged[day(2)].passed  # 2 earlier days only
    assert all(judged[day(n)].status == "ok" for n in range(5, 20))
    assert judged[day(20)].status == "spike" and not judged[day(20)].passed
    assert judged[day(21)].status == "drop"  # the spike stays in the window; the median does not move
    assert judged[day(22)].status == "drop" and judged[day(22)].rows == 0
    low = judged[day(19)].low
    assert low is not None and 600 <= low < 960  # median 995.5 -30%: a swing of 30% is tolerated
    assert "3,000 rows" in judged[day(20)].describe() and judged[day(20)].describe().endswith("spike")
    assert json.dumps(judged[day(20)].metadata())
    # a missing table is zero rows everywhere, without history: nothing to judge yet
    assert [v.status for v in volume_anomalies(con, "raw.none", "_fabric_partition", [day(1)])] == [
        "no_history"
    ]


def test_freshness_per_source_entity_from_meta_loads(con: duckdb.DuckDBPyConnection) -> None:
    loaded_at = datetime(2026, 1, 10, 3, 0)
    loads = [  # (source, entity, partition, rows_read, status)
        ("crm", "customers", day(9), 120, "ok"),
        ("erp", "payments", day(6), 40, "ok"),
        ("erp", "payments", day(7), 0, "missing"),  # the file never came
        ("erp", "payments", day(8), 0, "ok"),  # an empty file: nothing delivered either
        ("web", "events", day(8), 500, "warning"),  # some rows quarantined, still delivered
        ("crm", "customers", day(12), 90, "ok"),  # a later day does not count for day 9
    ]
    for i, (source, entity, partition, rows, status) in enumerate(loads):
        con.execute(
            "INSERT INTO meta.loads VALUES (?, ?, ?, ?, NULL, ?, ?, 0, ?, NULL, 'run-1', ?, ?)",
            [f"load-{i}", source, entity, partition, rows, rows, status, loaded_at, loaded_at],
        )
    entities = [("crm", "customers"), ("erp", "payments"), ("web", "events"), ("support", "tickets")]
    found = {f"{f.source}.{f.entity}": f for f in source_freshness(con, entities, day(9))}

    assert found["crm.customers"].status == "fresh" and found["crm.customers"].lag_days == 0
    assert found["web.events"].status == "fresh" and found["web.events"].lag_days == 1
    assert found["erp.payments"].status == "stale" and found["erp.payments"].lag_days == 3
    assert not found["erp.payments"].passed
    assert found["erp.payments"].describe() == (
        "erp.payments: latest data 2026-01-07, 3 day(s) behind 2026-01-10 (max 1): stale"
    )
    assert found["support.tickets"].status == "never_loaded"
    assert found["crm.customers"].metadata()["last_loaded_at"] == loaded_at.isoformat()


def manifest() -> dict[str, Any]:
    """The parts of dbt's manifest.json `record_dbt_results` reads."""

    def model(name: str, schema: str, parents: list[str]) -> dict[str, Any]:
        return {"name": name, "schema": schema, "alias": name, "depends_on": {"nodes": parents}}

    def test(name: str, model_id: str, column: str | None, severity: str = "ERROR") -> dict[str, Any]:
        return {
            "name": name,
            "schema": "dbt_test__audit",
            "attached_node": model_id,
            "column_name": column,
            "test_metadata": {"name": name.split("_")[0]},
            "config": {"severity": severity},
            "depends_on": {"nodes": [model_id]},
        }

    return {
        "nodes": {
            "model.fabric.customers": model("customers", "integrated", []),
            "model.fabric.customer_features": model(
                "customer_features", "features", ["model.fabric.customers"]
            ),
            "model.fabric.churn_labels": model("churn_labels", "features", ["model.fabric.customers"]),
            "test.fabric.unique_customers_id": test("unique_customers_id", "model.fabric.customers", "id"),
            "test.fabric.notnull_customers_country": test(
                "notnull_customers_country", "model.fabric.customers", "country", severity="warn"
            ),
            "test.fabric.notnull_labels_known": test(
                "notnull_labels_known", "model.fabric.churn_labels", "known"
            ),
        }
    }


def run_results(statuses: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"generated_at": "2026-01-10T03:00:00Z"},
        "results": [
            {
                "unique_id": unique_id,
                "status": status,
                "failures": 3 if status in ("fail", "warn") else 0,
                "message": f"Got 3 results, configured to {status}" if status != "pass" else None,
            }
            for unique_id, status in statuses.items()
        ],
    }


PASSING = {
    "model.fabric.customers": "success",
    "model.fabric.customer_features": "success",
    "model.fabric.churn_labels": "success",
    "test.fabric.unique_customers_id": "pass",
    "test.fabric.notnull_customers_country": "pass",
    "test.fabric.notnull_labels_known": "pass",
}


def test_dbt_test_failure_on_a_scoring_input_closes_the_gate(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    suite = _toy_suite(tmp_path)
    window = Window(day(0), day(1))
    validate_partitions(con, suite, window.days(), "run-1")
    assert all(d.open for d in gate_decisions(con, window.days(), [GOVERNED]).values())

    def record(statuses: dict[str, str], run_id: str) -> None:
        record_dbt_results(
            con,
            run_results({**PASSING, **statuses}),
            window,
            run_id,
            manifest=manifest(),
            scoring_inputs=["features.customer_features"],
        )

    # failures that do not close it: a warn-severity test, a model scoring does not read
    record(
        {"test.fabric.notnull_customers_country": "warn", "test.fabric.notnull_labels_known": "fail"}, "run-2"
    )
    assert all(d.open for d in gate_decisions(con, window.days(), [GOVERNED]).values())

    record({"test.fabric.unique_customers_id": "fail"}, "run-3")  # customers feeds the features
    decisions = gate_decisions(con, window.days(), [GOVERNED])
    assert not decisions[day(0)].open and not decisions[day(1)].open
    assert decisions[day(0)].not_validated == ()  # dbt models are no governed tables
    with pytest.raises(QualityGateClosed, match=r"integrated\.customers: dbt\.unique\(id\) failed"):
        require_open(con, day(1), [GOVERNED])
    assert gate_decisions(con, [day(2)], [GOVERNED])[day(2)].not_validated == (GOVERNED,)

    # the GE validation of the same run keeps the dbt rows, and the report lists both
    validate_partitions(con, suite, [day(0)], "run-3")
    from rich.console import Console

    console = Console(record=True, width=220)
    console.print(render_report(con, day(0), [GOVERNED]))
    text = console.export_text()
    assert "CLOSED" in text and "dbt.unique(id)" in text and "3 unexpected" in text

    record({"model.fabric.customers": "error", "test.fabric.unique_customers_id": "skipped"}, "run-4")
    failed = gate_decisions(con, [day(0)], [GOVERNED])[day(0)].failures
    assert {f.expectation_type for f in failed} == {"dbt.build", "dbt.unique"}
    assert any("skipped" in f.describe() for f in failed)

    record({}, "run-5")  # fixed and rebuilt
    assert all(d.open for d in gate_decisions(con, window.days(), [GOVERNED]).values())
    engines = con.execute(
        "SELECT DISTINCT suite, engine FROM meta.validation_results WHERE run_id = 'run-5'"
    ).fetchall()
    assert engines == [("dbt", "dbt")]


def test_data_docs_site_from_stored_results(tmp_path: Path) -> None:
    suite = _toy_suite(tmp_path)
    warehouse_path = tmp_path / "warehouse.duckdb"
    with Warehouse(warehouse_path).connect() as con:
        validate_partitions(con, suite, [day(0), day(1)], "run-1")
        site = tmp_path / "home" / "quality_docs"
        index = build_data_docs(con, {GOVERNED: suite}, site, [day(0), day(1)])
    assert index == site / "index.html" and index.is_file()
    html = index.read_text()
    assert docs_name(GOVERNED) in html and "2026-01-02" in html
    pages = sorted((site / "validations" / docs_name(GOVERNED)).rglob("*.html"))
    assert [p.name for p in pages] == ["2026-01-01.html", "2026-01-02.html"]
    first_day = " ".join(re.sub(r"<[^>]+>", " ", pages[0].read_text()).split())
    assert "Status: Failed" in first_day  # the NULL id (a warning) on 2026-01-01
    assert "values must never be null. 1 unexpected values found. 50% of 2 total rows." in first_day

    config = {
        "project": "toy",
        "partitions": {"start_date": "2026-01-01"},
        "warehouse": {"path": str(warehouse_path)},
        "sources": {
            "crm": {"kind": "jsonl", "root": "crm", "entities": {"e": {"pattern": "e_{date:%Y%m%d}.jsonl"}}}
        },
        "quality": {"suites_dir": str(tmp_path), "governed_tables": [GOVERNED]},
    }
    (tmp_path / "fabric.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(
        quality_app,
        ["docs", "--config", str(tmp_path / "fabric.yaml"), "--partition", "2026-01-02"],
        env={"FABRIC_HOME": str(tmp_path / "cli_home")},
    )
    assert result.exit_code == 0, result.output
    written = tmp_path / "cli_home" / "quality_docs" / "index.html"
    assert written.is_file() and written.as_uri() in result.output.replace("\n", "")


def _toy_suite(directory: Path) -> Any:
    path = directory / f"{GOVERNED}.json"
    expectations = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "warning"},
    ]
    binding = {"fabric": {"table": GOVERNED, "partition_column": "as_of_date"}}
    path.write_text(json.dumps({"name": GOVERNED, "meta": binding, "expectations": expectations}))
    suite = load_suite(path)
    with Warehouse(directory / "warehouse.duckdb").connect() as con:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {GOVERNED} AS SELECT * FROM (VALUES "
            "(DATE '2026-01-01', 'a', 1.0), (DATE '2026-01-01', NULL, 2.0), (DATE '2026-01-02', 'c', 3.0)) "
            "t(as_of_date, id, amount)"
        )
    return suite
