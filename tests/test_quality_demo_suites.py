"""The demo suites are meaningful: clean data passes them, and every expectation can fail.

Each expectation gets a partition of its own holding clean rows with one violation made for it;
one validation run over all those partitions then shows which expectations caught what.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from fabric.quality import ExpectationSpec, Suite, gate_decisions, load_suite, validate_partitions
from fabric.warehouse import Warehouse

SUITES = Path(__file__).resolve().parents[1] / "expectations"
CLEAN_DAY = date(2026, 1, 1)
ROWS = 6


def clean_customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fabric_customer_id": [f"FC-{i:012x}" for i in range(ROWS)],
            "crm_customer_id": list(range(1, ROWS + 1)),
            "first_name": ["Anna"] * ROWS,
            "last_name": ["Müller"] * ROWS,
            "email": [f"anna{i}@example.de" for i in range(ROWS)],
            "phone": ["030123456"] * ROWS,
            "street": ["Hauptstraße 1"] * ROWS,
            "postal_code": ["10115"] * ROWS,
            "city": ["Berlin"] * ROWS,
            "country_code": ["DE", "AT", "CH", "DE", "AT", "CH"],
            "plan": ["basic", "plus", "pro", "basic", "plus", "pro"],
            "monthly_fee": [29.99, 44.99, 84.90, 29.99, 44.99, 64.99],
            "signup_date": [date(2024, 5, 1)] * ROWS,
            "systems": ["crm", "crm,erp", "crm,erp,web", "crm,support", "crm,web", "crm"],
        }
    )


def clean_features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fabric_customer_id": [f"FC-{i:012x}" for i in range(ROWS)],
            "crm_customer_id": list(range(1, ROWS + 1)),
            "tenure_days": [10, 200, 400, 900, 1000, 30],
            "monthly_fee": [29.99, 44.99, 84.90, 29.99, 44.99, 64.99],
            "invoices_90d": [1, 3, 3, 3, 3, 1],
            "late_payments_90d": [0, 1, 0, 0, 2, 0],
            "days_since_last_payment": [5, 20, 3, 40, 1, 10],
            "open_balance": [0.0, 44.99, 0.0, 10.0, 89.98, 0.0],
            "tickets_30d": [0, 1, 0, 2, 0, 0],
            "low_satisfaction_tickets_90d": [0, 1, 0, 0, 0, 0],
            "logins_7d": [0, 2, 5, 1, 0, 3],
            "logins_30d": [4, 8, 20, 1, 0, 9],
            "days_since_last_login": [9, 1, 0, 2, 31, 1],
            "cancel_page_views_30d": [0, 0, 1, 0, 2, 0],
        }
    )


CLEAN = {"integrated.customers": clean_customers, "features.customer_features": clean_features}


def violate(frame: pd.DataFrame, spec: ExpectationSpec) -> pd.DataFrame:
    """`frame` with one change that `spec` must catch (no rows for the row-count expectation)."""
    bad = frame.copy()
    kind, kwargs = spec.type, spec.kwargs
    column = kwargs.get("column")
    if kind == "expect_table_row_count_to_be_between":
        return bad.iloc[0:0]
    if kind == "expect_column_values_to_not_be_null":
        bad[column] = bad[column].astype(object)
        bad.loc[0, column] = None
    elif kind == "expect_column_values_to_be_unique":
        bad.loc[1, column] = bad.loc[0, column]
    elif kind == "expect_compound_columns_to_be_unique":
        for name in kwargs["column_list"]:
            if name in bad.columns:
                bad.loc[1, name] = bad.loc[0, name]
    elif kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_match_regex"):
        bad.loc[0, column] = "Atlantis 99"  # e.g. the generator's unmappable country text
    elif kind == "expect_column_proportion_of_non_null_values_to_be_between":
        bad[column] = None
    elif kind == "expect_column_values_to_be_between":
        bad[column] = bad[column].astype(float)
        if "min_value" in kwargs:
            bad.loc[0, column] = kwargs["min_value"] - 1
        else:
            bad.loc[0, column] = kwargs["max_value"] + 1
    elif kind == "expect_column_pair_values_a_to_be_greater_than_b":
        bad.loc[0, kwargs["column_B"]] = bad.loc[0, kwargs["column_A"]] + 1
    else:
        raise AssertionError(f"no violation defined for {kind}: add one to this test")
    return bad


def load_table(
    con: duckdb.DuckDBPyConnection, suite: Suite, frames: dict[date, pd.DataFrame]
) -> None:
    partitioned = [
        frame.assign(**{suite.partition_column: day}) for day, frame in frames.items() if len(frame)
    ]
    staged = pd.concat(partitioned, ignore_index=True)
    con.register("staged", staged)
    con.execute(f"CREATE TABLE {suite.table} AS SELECT * FROM staged")


@pytest.mark.parametrize("table", sorted(CLEAN))
def test_clean_data_passes_and_every_expectation_can_fail(tmp_path: Path, table: str) -> None:
    suite = load_suite(SUITES / f"{table}.json")
    frames = {CLEAN_DAY: CLEAN[table]()}
    targets: dict[date, ExpectationSpec] = {}
    for offset, spec in enumerate(suite.expectations, start=1):
        day = CLEAN_DAY + timedelta(days=offset)
        frames[day] = violate(CLEAN[table](), spec)
        targets[day] = spec

    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        load_table(con, suite, frames)
        validations = validate_partitions(con, suite, sorted(frames), "run-1")
        decisions = gate_decisions(con, sorted(frames), [table])

    by_day = {v.partition: v for v in validations}
    assert by_day[CLEAN_DAY].failures == (), "clean data must pass every expectation"
    assert decisions[CLEAN_DAY].open
    not_caught = [
        spec.label
        for day, spec in targets.items()
        if spec.expectation_id not in {f.expectation_id for f in by_day[day].failures}
    ]
    assert not_caught == []
    for day, spec in targets.items():  # critical violations close exactly their own day
        assert decisions[day].open == (spec.severity != "critical"), spec.label


def test_bad_country_closes_the_gate_for_that_day_only(tmp_path: Path) -> None:
    """The generator's `bad_country` fault: unmappable text leaves country_code NULL."""
    suite = load_suite(SUITES / "integrated.customers.json")
    good, bad_day = CLEAN_DAY, CLEAN_DAY + timedelta(days=1)
    broken = clean_customers()
    broken["country_code"] = None
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        load_table(con, suite, {good: clean_customers(), bad_day: broken})
        validate_partitions(con, suite, [good, bad_day], "run-1")
        decisions = gate_decisions(con, [good, bad_day], [suite.table])
    assert decisions[good].open
    assert not decisions[bad_day].open
    assert [f.label for f in decisions[bad_day].failures] == [
        "expect_column_values_to_not_be_null(country_code)"
    ]
    assert decisions[bad_day].failures[0].describe() == f"{ROWS} unexpected (100.00%)"
