"""SQLite ingest: partitioned and snapshot modes, per-value quarantine, missing table or file."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import SourceError
from fabric.ingest import ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

WINDOW = Window(date(2026, 3, 1), date(2026, 3, 3))
ROWS = [
    (1, "Anna", 29.99, "2026-03-01 08:00:00"),
    (2, "Ben", 44.99, "2026-03-01 23:59:59"),
    (3, "Cem", "abc", "2026-03-02 10:00:00"),  # fee is not a number
    (4, None, 64.99, "2026-03-02 11:00:00"),
    (5, "Dora", 29.99, "2026-02-28 10:00:00"),  # before the window
    (6, "Eve", 29.999, "2026-03-02 12:00:00"),  # more decimals than declared
    (7, "Finn", 29.99, "not a date"),  # in no partition
    (8, "Gus", 29.99, "2026-03-01T09:00:00"),  # another format: its day, quarantined there
]


def make_db(path: Path, rows: list[tuple[Any, ...]] = ROWS) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (crm_id INTEGER PRIMARY KEY, name TEXT, fee REAL, updated_at TEXT)"
        )
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", rows)
    db.close()


def make_config(
    tmp_path: Path, mode: str = "partitioned", table: str = "customers"
) -> FabricConfig:
    entity: dict[str, Any] = {
        "table": table,
        "mode": mode,
        "primary_key": ["crm_id"],
        "columns": [
            {"name": "crm_id", "type": "bigint", "nullable": False},
            {"name": "name", "nullable": False},
            {"name": "fee", "type": "decimal", "precision": 10, "scale": 2},
            {"name": "updated_at", "type": "timestamp", "format": "%Y-%m-%d %H:%M:%S"},
        ],
    }
    if mode == "partitioned":
        entity["date_column"] = "updated_at"
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "crm": {"kind": "sqlite", "path": "crm.sqlite", "entities": {"customers": entity}}
            },
        },
        tmp_path,
    )


def ingest(config: FabricConfig, window: Window = WINDOW) -> list[Any]:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return ingest_entity(config, "crm", "customers", window, "run-1", warehouse)


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_partitioned_rows_are_typed_and_bad_values_quarantined(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.sqlite")
    config = make_config(tmp_path)
    source = f"sqlite:{tmp_path / 'crm.sqlite'}#customers"

    results = ingest(config)

    assert [(r.partition, r.status, r.rows_read, r.rows_loaded, r.rows_quarantined)
            for r in results] == [
        (date(2026, 3, 1), "warning", 3, 2, 1),
        (date(2026, 3, 2), "warning", 3, 0, 3),
        (date(2026, 3, 3), "ok", 0, 0, 0),
    ]  # fmt: skip
    assert all(r.source_path == source for r in results)
    assert rows(
        config,
        "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM raw.crm__customers ORDER BY 1",
    ) == [
        (1, "Anna", Decimal("29.99"), datetime(2026, 3, 1, 8), date(2026, 3, 1), source, "crm_id=1"),
        (2, "Ben", Decimal("44.99"), datetime(2026, 3, 1, 23, 59, 59), date(2026, 3, 1), source,
         "crm_id=2"),
    ]  # fmt: skip
    quarantined = rows(
        config,
        "SELECT _fabric_position, reason_code, reason, raw_record FROM quarantine.crm__customers ORDER BY 1",
    )
    assert [(p, code) for p, code, _, _ in quarantined] == [
        ("crm_id=3", "type_cast"),
        ("crm_id=4", "null_value"),
        ("crm_id=6", "type_cast"),
        ("crm_id=8", "type_cast"),
    ]
    assert quarantined[0][2] == (
        f"{source} crm_id=3: field fee: 'abc' is not a valid decimal(10,2)"
    )
    assert json.loads(quarantined[0][3]) == {
        "crm_id": "3", "name": "Cem", "fee": "abc", "updated_at": "2026-03-02 10:00:00"
    }  # fmt: skip


def test_rerun_gives_identical_tables(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.sqlite")
    config = make_config(tmp_path)
    query = "SELECT * EXCLUDE (_fabric_load_id, _fabric_loaded_at) FROM {} ORDER BY ALL"
    tables = ("raw.crm__customers", "quarantine.crm__customers")

    ingest(config)
    before = [rows(config, query.format(t)) for t in tables]
    ingest(config)

    assert [rows(config, query.format(t)) for t in tables] == before
    assert rows(config, "SELECT count(*), count(DISTINCT load_id) FROM meta.loads") == [(6, 6)]


def test_snapshot_mode_loads_the_whole_table_on_the_last_day(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.sqlite")
    config = make_config(tmp_path, mode="snapshot")

    [result] = ingest(config)

    assert (result.partition, result.rows_read, result.rows_loaded) == (date(2026, 3, 3), 8, 3)
    assert rows(config, "SELECT DISTINCT _fabric_partition FROM raw.crm__customers") == [
        (date(2026, 3, 3),)
    ]


def test_a_missing_table_or_database_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"crm\.sqlite: SQLite database not found"):
        ingest(make_config(tmp_path))
    make_db(tmp_path / "crm.sqlite")
    with pytest.raises(SourceError, match=r"crm\.sqlite: table 'clients' not found"):
        ingest(make_config(tmp_path, table="clients"))
    # Each refusal is recorded: a `failed` load per day of the window, naming the reason.
    failed = rows(
        make_config(tmp_path),
        "SELECT status, rows_read, message FROM meta.loads WHERE status = 'failed' ORDER BY started_at",
    )
    assert len(failed) == 2 * len(WINDOW)
    assert all(status == "failed" and read == 0 for status, read, _ in failed)
    assert "table 'clients' not found" in failed[-1][2]
