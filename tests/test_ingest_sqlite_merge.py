"""SQLite in merge mode: upserts by key from a cursor, quarantine per key, repeated keys refused."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import LoadResult, ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)


def make_db(path: Path, key: bool = True) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            f"CREATE TABLE customers (crm_id INTEGER {'PRIMARY KEY' if key else ''}, "
            "name TEXT, fee TEXT, updated_at TEXT)"
        )
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [(1, "Anna", "29.99", "2026-03-01 08:00:00"), (2, "Ben", "abc", "2026-03-01 09:00:00")],
        )
    db.close()


def change(path: Path, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with sqlite3.connect(path) as db:
        db.executemany(sql, rows) if rows else db.execute(sql)
    db.close()


def make_config(tmp_path: Path) -> FabricConfig:
    entity = {
        "table": "customers",
        "mode": "merge",
        "primary_key": ["crm_id"],
        "cursor_column": "updated_at",
        "lookback": "1 minute",
        "columns": [
            {"name": "crm_id", "type": "bigint", "nullable": False},
            {"name": "name"},
            {"name": "fee", "type": "decimal", "precision": 10, "scale": 2},
            {"name": "updated_at", "type": "timestamp", "format": "%Y-%m-%d %H:%M:%S"},
        ],
    }
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {"crm": {"kind": "sqlite", "path": "crm.sqlite", "entities": {"customers": entity}}},
        },
        tmp_path,
    )


def ingest(config: FabricConfig, day: date) -> list[LoadResult]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "crm", "customers", Window(day, day), "run", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_merge_upserts_changes_and_resolves_quarantined_keys(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite"
    make_db(db)
    config = make_config(tmp_path)

    [first] = ingest(config, DAY1)
    assert (first.rows_read, first.rows_loaded, first.rows_quarantined) == (2, 1, 1)
    assert rows(config, "SELECT cursor_value, cursor_type FROM meta.cursors") == [
        ("2026-03-01 09:00:00", "TIMESTAMP")
    ]
    change(db, "UPDATE customers SET fee = '44.99', updated_at = '2026-03-02 10:00:00' WHERE crm_id = 2")
    change(db, "INSERT INTO customers VALUES (?, ?, ?, ?)", [(3, "Cem", "1", "2026-03-02 10:00:00")])

    [second] = ingest(config, DAY2)

    assert (second.rows_read, second.rows_loaded, second.rows_quarantined) == (2, 2, 0)
    assert rows(config, "SELECT crm_id, fee, _fabric_partition FROM raw.crm__customers ORDER BY 1") == [
        (1, Decimal("29.99"), DAY1), (2, Decimal("44.99"), DAY2), (3, Decimal("1.00"), DAY2)
    ]  # fmt: skip
    assert rows(config, "SELECT count(*) FROM quarantine.crm__customers") == [(0,)]
    assert rows(config, "SELECT max(updated_at) FROM raw.crm__customers") == [(datetime(2026, 3, 2, 10),)]


def test_a_repeated_key_refuses_the_merge(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite"
    make_db(db, key=False)
    change(db, "INSERT INTO customers VALUES (1, 'Anna', '1', '2026-03-01 10:00:00')")
    config = make_config(tmp_path)

    with pytest.raises(SourceError, match=r"crm\.sqlite#customers: merge refused.*crm_id=1 \(2 rows\)"):
        ingest(config, DAY1)

    assert rows(config, "SELECT status FROM meta.loads") == [("failed",)]
    assert rows(config, "SELECT count(*) FROM meta.cursors") == [(0,)]
