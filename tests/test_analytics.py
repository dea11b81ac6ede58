"""The analytics snapshot: PII masked, atomic swap under an open reader, read-only access."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from fabric.analytics import open_snapshot, refresh_snapshot
from fabric.config import FabricConfig
from fabric.errors import WarehouseError
from fabric.partitions import Window
from fabric.scoring.score import score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse

END = date(2026, 3, 31)
CUSTOMERS = 200


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def _warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


@pytest.fixture
def estate(config: FabricConfig) -> FabricConfig:
    """Two days of features, the first day scored, one load recorded in meta.loads."""
    write_synthetic_estate(_warehouse(config), CUSTOMERS, END - timedelta(days=1), END, seed=2)
    first_day = END - timedelta(days=1)
    score_window(config, _warehouse(config), Window(first_day, first_day), "run-1", _open)
    with _warehouse(config).connect() as con:
        con.execute(
            "INSERT INTO meta.loads VALUES ('l1', 'crm', 'customers', ?, 'crm.sqlite', 10, 9, 1, "
            "'warning', NULL, 'run-0', TIMESTAMP '2026-03-31 02:00', TIMESTAMP '2026-03-31 02:01')",
            [END],
        )
    return config


def test_snapshot_masks_pii_and_copies_tables(estate: FabricConfig) -> None:
    info = refresh_snapshot(estate, _warehouse(estate))

    assert info.path == estate.resolve(estate.warehouse.analytics_path)
    assert info.tables == {
        "scores.churn_scores": CUSTOMERS,
        "integrated.customers": CUSTOMERS,
        "features.customer_features": 2 * CUSTOMERS,
        "meta.loads": 1,
    }
    assert info.missing == ["publish.sync_log"]
    assert info.masked == {
        "integrated.customers": ["first_name", "last_name", "email", "phone", "street"]
    }
    assert [p.name for p in info.path.parent.iterdir() if p.name.startswith(".")] == []

    with open_snapshot(estate) as con:
        row = con.execute(
            "SELECT first_name, last_name, email, phone, street, city FROM integrated.customers "
            "WHERE crm_customer_id = 100000"
        ).fetchone()
        assert row is not None
        first, last, email, phone, street, city = row
        assert (first[1:], last[1:], street, city) == ("***", "***", "***", "Berlin")
        assert (email, phone) == (f"{first[0].lower()}***@***.de", "***00")
        # short names in the default schema, and the two meta views
        assert con.execute("SELECT count(*) FROM customers").fetchone() == (CUSTOMERS,)
        assert con.execute(
            "SELECT source, latest_partition, rows_quarantined FROM meta.load_summary"
        ).fetchall() == [("crm", END, 1)]
        assert con.execute("SELECT count(*) FROM meta.snapshot").fetchone() == (4,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM scores.churn_scores")


def test_open_reader_keeps_old_snapshot_while_refresh_swaps_in_new(estate: FabricConfig) -> None:
    path = refresh_snapshot(estate, _warehouse(estate)).path
    old_reader = open_snapshot(estate)
    plain_reader = duckdb.connect(str(path), read_only=True)  # e.g. a SQL client
    query = "SELECT count(*), count(DISTINCT partition_date) FROM scores.churn_scores"
    assert old_reader.execute(query).fetchone() == (CUSTOMERS, 1)

    score_window(estate, _warehouse(estate), Window(END, END), "run-2", _open)
    refresh_snapshot(estate, _warehouse(estate))

    # the old reader still reads the old file, whole; a new reader sees the new rows
    assert old_reader.execute(query).fetchone() == (CUSTOMERS, 1)
    assert old_reader.execute("SELECT count(*) FROM customers").fetchone() == (CUSTOMERS,)
    assert plain_reader.execute(query).fetchone() == (CUSTOMERS, 1)
    with open_snapshot(estate) as new_reader:
        assert new_reader.execute(query).fetchone() == (2 * CUSTOMERS, 2)
    old_reader.close()
    plain_reader.close()
    snapshot_dir = estate.resolve(estate.warehouse.analytics_path).parent
    assert not [p for p in snapshot_dir.iterdir() if p.name.startswith(".")]


def test_open_snapshot_before_any_refresh_says_what_to_do(config: FabricConfig) -> None:
    with pytest.raises(WarehouseError, match="no analytics snapshot yet"):
        open_snapshot(config)
