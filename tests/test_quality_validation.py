"""Validating partitions with GE, recording results, and the gate that reads them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from fabric.config import parse_config
from fabric.errors import QualityGateClosed
from fabric.partitions import Window
from fabric.quality import (
    Suite,
    gate_decisions,
    load_suite,
    record_gate,
    render_report,
    require_open,
    summarize,
    validate_partitions,
    validate_window,
)
from fabric.warehouse import Warehouse, replace_partitions

TABLE = "features.toy"
D1, D2, D3, D4, D5 = (date(2026, 1, day) for day in range(1, 6))

EXPECTATIONS: list[dict[str, Any]] = [
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "amount", "min_value": 0},
        "severity": "critical",
    },
    {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "email", "regex": "^[^@]+@[^@]+$"},
        "severity": "warning",
    },
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "amount", "max_value": 1000},
        "severity": "info",
    },
]

# D1 good; D2 only a warning fails (bad email); D3 critical failures (negative amount, duplicate
# id); D4 has no rows; D5 is never validated.
ROWS = [
    (D1, "c1", 10.0, "a@x.de"),
    (D1, "c2", 20.0, "b@x.de"),
    (D1, "c3", 30.0, "c@x.de"),
    (D2, "c1", 10.0, "a@x.de"),
    (D2, "c2", 20.0, "not an email"),
    (D3, "c1", -5.0, "a@x.de"),
    (D3, "c1", 20.0, "b@x.de"),
    (D3, "c3", 2000.0, "c@x.de"),
]


def write_suite(directory: Path, expectations: list[dict[str, Any]] = EXPECTATIONS) -> Suite:
    path = directory / f"{TABLE}.json"
    path.write_text(
        json.dumps(
            {
                "name": "toy",
                "meta": {"fabric": {"table": TABLE, "partition_column": "as_of_date"}},
                "expectations": expectations,
            }
        )
    )
    return load_suite(path)


def load_rows(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """Replace the partitions present in `rows` of the toy table with `rows`."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE staged "
        "(as_of_date DATE, customer_id VARCHAR, amount DOUBLE, email VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?)", rows)
    replace_partitions(con, TABLE, "as_of_date", sorted({r[0] for r in rows}), "staged")


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.connect() as con:
        load_rows(con, ROWS)
    return warehouse


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return write_suite(tmp_path)


def result_rows(con: duckdb.DuckDBPyConnection, where: str = "true") -> list[dict[str, Any]]:
    cursor = con.execute(f"SELECT * FROM meta.validation_results WHERE {where}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_results_per_partition_are_recorded(warehouse: Warehouse, suite: Suite) -> None:
    with warehouse.connect() as con:
        validations = validate_partitions(con, suite, [D1, D2, D3, D4], "run-1")
        rows = result_rows(con)

    assert [v.partition for v in validations] == [D1, D2, D3, D4]
    assert [v.success_critical for v in validations] == [True, True, False, False]
    assert [v.row_count for v in validations] == [3, 2, 3, 0]
    d2, d3 = validations[1], validations[2]
    assert d2.counts["warning"] == {"evaluated": 1, "failed": 1}
    assert d2.counts["critical"] == {"evaluated": 4, "failed": 0}
    assert d3.counts == {
        "critical": {"evaluated": 4, "failed": 2},
        "warning": {"evaluated": 1, "failed": 0},
        "info": {"evaluated": 1, "failed": 1},
    }
    assert {f.label for f in d3.failures} == {
        "expect_column_values_to_be_unique(customer_id)",
        "expect_column_values_to_be_between(amount)",
    }

    assert len(rows) == 4 * len(EXPECTATIONS)
    by_key = {(r["partition"], r["expectation_id"]): r for r in rows}
    negative = by_key[(D3, suite.expectations[3].expectation_id)]
    assert negative["severity"] == "critical" and negative["success"] is False
    assert negative["table_name"] == TABLE and negative["suite"] == "toy"
    assert negative["column_name"] == "amount"
    assert negative["unexpected_count"] == 1
    assert negative["unexpected_percent"] == pytest.approx(100 / 3)
    assert json.loads(negative["observed_value"])["unexpected_values"] == [
        {"value": -5.0, "count": 1}
    ]
    email = by_key[(D2, suite.expectations[4].expectation_id)]
    assert (email["severity"], email["success"], email["unexpected_count"]) == ("warning", False, 1)
    assert by_key[(D1, suite.expectations[4].expectation_id)]["success"] is True


def test_zero_row_partition_fails_only_the_row_count(warehouse: Warehouse, suite: Suite) -> None:
    with warehouse.connect() as con:
        (empty,) = validate_partitions(con, suite, [D4], "run-1")
    assert [f.expectation_type for f in empty.failures] == ["expect_table_row_count_to_be_between"]
    assert empty.failures[0].observed_value == 0


def test_gate_warning_stays_open_and_critical_closes_only_that_day(
    warehouse: Warehouse, suite: Suite
) -> None:
    with warehouse.connect() as con:
        validate_partitions(con, suite, [D1, D2, D3, D4], "run-1")
        decisions = gate_decisions(con, [D1, D2, D3, D4, D5], [TABLE])

    assert {day: d.open for day, d in decisions.items()} == {
        D1: True,
        D2: True,  # warning-only failure
        D3: False,
        D4: False,  # zero rows: the row-count expectation is critical
        D5: False,  # never validated
    }
    assert decisions[D1].reason == "open"
    assert {f.label for f in decisions[D3].failures} == {
        "expect_column_values_to_be_unique(customer_id)",
        "expect_column_values_to_be_between(amount)",
    }
    assert "1 unexpected" in decisions[D3].reason
    assert decisions[D5].not_validated == (TABLE,)
    assert decisions[D5].reason == f"closed: {TABLE}: not validated"


def test_gate_needs_every_governed_table(warehouse: Warehouse, suite: Suite) -> None:
    with warehouse.connect() as con:
        assert not gate_decisions(con, [D1], [TABLE])[D1].open  # no results table at all yet
        validate_partitions(con, suite, [D1], "run-1")
        decision = gate_decisions(con, [D1], [TABLE, "integrated.customers"])[D1]
    assert not decision.open
    assert decision.reason == "closed: integrated.customers: not validated"


def test_require_open_names_partition_table_and_expectation(
    warehouse: Warehouse, suite: Suite
) -> None:
    with warehouse.connect() as con:
        validate_partitions(con, suite, [D1, D3], "run-1")
        assert require_open(con, D1, [TABLE]).open
        with pytest.raises(QualityGateClosed) as err:
            require_open(con, D3, [TABLE])
        with pytest.raises(QualityGateClosed, match="not validated"):
            require_open(con, D5, [TABLE])
    message = str(err.value)
    assert "partition 2026-01-03" in message
    assert f"{TABLE}: expect_column_values_to_be_between(amount) failed" in message
    assert "expect_column_values_to_be_unique(customer_id)" in message


def test_gate_follows_the_latest_validation(warehouse: Warehouse, suite: Suite) -> None:
    with warehouse.connect() as con:
        validate_partitions(con, suite, [D3], "run-1")
        assert not gate_decisions(con, [D3], [TABLE])[D3].open

        load_rows(con, [(D3, "c1", 5.0, "a@x.de"), (D3, "c2", 20.0, "b@x.de")])  # fixed
        validate_partitions(con, suite, [D3], "run-2")
        assert gate_decisions(con, [D3], [TABLE])[D3].open

        load_rows(con, [(D3, "c1", -1.0, "a@x.de")])  # broken again
        validate_partitions(con, suite, [D3], "run-3")
        assert not gate_decisions(con, [D3], [TABLE])[D3].open

        validate_partitions(con, suite, [D3], "run-3")  # a retried step replaces its rows
        runs = con.execute(
            "SELECT run_id, count(*) FROM meta.validation_results GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert runs == [(f"run-{i}", len(EXPECTATIONS)) for i in (1, 2, 3)]


def test_missing_column_fails_that_expectation_with_a_clear_message(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    suite = write_suite(
        tmp_path,
        [
            *EXPECTATIONS,
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "churn_flag"}},
            {  # GE itself fails comparing text with a number: recorded as a failure, no crash
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "email", "min_value": 0},
                "severity": "warning",
            },
        ],
    )
    with warehouse.connect() as con:
        (validation,) = validate_partitions(con, suite, [D1], "run-1")
        with pytest.raises(QualityGateClosed, match="churn_flag not in table"):
            require_open(con, D1, [TABLE])

    missing, between = validation.outcomes[-2:]
    assert not missing.success
    assert missing.error == f"column churn_flag not in table {TABLE} for partition {D1}"
    assert not between.success
    assert between.error is not None and "could not evaluate" in between.error
    assert all(o.success for o in validation.outcomes[:-2])


def test_missing_table_fails_every_expectation(tmp_path: Path, suite: Suite) -> None:
    with Warehouse(tmp_path / "empty.duckdb").connect() as con:
        (validation,) = validate_partitions(con, suite, [D1], "run-1")
    assert validation.row_count == 0
    assert all(o.error == f"table {TABLE} does not exist (partition {D1})" for o in validation.outcomes)


def test_validate_window_from_config_withholds_pii_values(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ratio = {
        "type": "expect_column_proportion_of_non_null_values_to_be_between",
        "kwargs": {"column": "email", "min_value": 0.5},
        "severity": "warning",
    }
    write_suite(tmp_path, [*EXPECTATIONS, ratio])
    config = parse_config(
        {
            "project": "toy",
            "partitions": {"start_date": "2026-01-01"},
            "warehouse": {"path": str(warehouse.path)},
            "sources": {
                "crm": {
                    "kind": "sqlite",
                    "path": "crm.sqlite",
                    "entities": {
                        "customers": {
                            "table": "customers",
                            "mode": "snapshot",
                            "primary_key": ["id"],
                            "columns": [{"name": "id"}],
                        }
                    },
                }
            },
            "quality": {"suites_dir": str(tmp_path), "governed_tables": [TABLE]},
            "pii": {TABLE: ["email"]},
        },
        tmp_path,
    )
    validations = validate_window(config, warehouse, TABLE, Window(D1, D3), "run-1")
    assert [v.partition for v in validations] == [D1, D2, D3]
    email = next(f for f in validations[1].failures if f.column_name == "email")
    assert email.unexpected_count == 1
    assert email.observed_value["unexpected_values"] == "withheld (PII column)"
    assert "not an email" not in json.dumps(summarize(validations))
    assert validations[1].outcomes[-1].observed_value == 1.0  # a ratio is kept


def test_summary_gate_record_and_report(warehouse: Warehouse, suite: Suite) -> None:
    with warehouse.connect() as con:
        validations = validate_partitions(con, suite, [D1, D2, D3], "run-1")
        summary = summarize(validations)
        record_gate(con, gate_decisions(con, [D1, D2, D3], [TABLE]), "run-1")
        gate_rows = con.execute(
            'SELECT "partition", is_open FROM meta.quality_gate ORDER BY 1'
        ).fetchall()
        console = Console(record=True, width=200)
        console.print(render_report(con, D3, [TABLE, "integrated.customers"]))

    json.dumps(summary)  # usable as Dagster JSON metadata
    assert summary["passed"] is False
    assert summary["failed_partitions"] == ["2026-01-03"]
    day2, day3 = summary["by_partition"]["2026-01-02"], summary["by_partition"]["2026-01-03"]
    assert day2["passed"] is True and "critical_failed" not in day2
    assert day2["warning_failed"][0]["expectation"] == "expect_column_values_to_match_regex(email)"
    assert {f["expectation"] for f in day3["critical_failed"]} == {
        "expect_column_values_to_be_unique(customer_id)",
        "expect_column_values_to_be_between(amount)",
    }
    assert gate_rows == [(D1, True), (D2, True), (D3, False)]
    text = console.export_text()
    assert "Quality gate for 2026-01-03: CLOSED" in text
    assert "integrated.customers: not validated" in text
    assert "expect_column_values_to_be_between(amount)" in text
