"""Committing loads: one transaction per day, refusing drifted tables, progress."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import WarehouseError
from fabric.ingest import ingest_entity
from fabric.ingest.load import single_threaded
from fabric.partitions import Window
from fabric.warehouse import Warehouse

DAY = date(2026, 3, 1)
WINDOW = Window(DAY, date(2026, 3, 2))


def make_config(tmp_path: Path) -> FabricConfig:
    columns = [
        {"name": "event_id", "nullable": False},
        {"name": "clicks", "type": "integer"},
    ]
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "web": {
                    "kind": "jsonl",
                    "root": "web",
                    "entities": {
                        "events": {"pattern": "e_{date:%Y%m%d}.jsonl", "columns": columns}
                    },
                }
            },
        },
        tmp_path,
    )


def write(tmp_path: Path, day: date, events: list[dict[str, Any]]) -> None:
    path = tmp_path / "web" / f"e_{day:%Y%m%d}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with warehouse(config).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_failure_midway_through_a_day_leaves_its_previous_rows(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, [{"event_id": "a", "clicks": 1}, {"event_id": "b", "clicks": 2}])
    write(tmp_path, date(2026, 3, 2), [{"event_id": "c", "clicks": 3}])
    ingest_entity(config, "web", "events", WINDOW, "run-1", warehouse(config))
    before = rows(config, "SELECT * FROM raw.web__events ORDER BY ALL")
    # Make inserting quarantined rows fail, after that day's raw rows were already replaced.
    with warehouse(config).connect() as con:
        con.execute("DROP TABLE quarantine.web__events")
        con.execute(
            """CREATE TABLE quarantine.web__events (
                _fabric_load_id VARCHAR, _fabric_partition DATE, _fabric_source VARCHAR,
                _fabric_position VARCHAR, _fabric_loaded_at TIMESTAMP,
                reason_code VARCHAR CHECK (reason_code <> 'type_cast'), reason VARCHAR,
                raw_record VARCHAR)"""
        )
    write(tmp_path, DAY, [{"event_id": "x", "clicks": 9}, {"event_id": "y", "clicks": "many"}])

    with pytest.raises(duckdb.ConstraintException):
        ingest_entity(config, "web", "events", WINDOW, "run-2", warehouse(config))

    assert rows(config, "SELECT * FROM raw.web__events ORDER BY ALL") == before
    assert rows(config, "SELECT count(*) FROM quarantine.web__events") == [(0,)]
    assert rows(config, "SELECT run_id, partition FROM meta.loads ORDER BY 2") == [
        ("run-1", DAY),
        ("run-1", date(2026, 3, 2)),
    ]


def test_tables_that_drifted_from_the_declaration_are_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, [{"event_id": "a", "clicks": 1}])
    ingest_entity(config, "web", "events", Window(DAY, DAY), "run-1", warehouse(config))
    with warehouse(config).connect() as con:
        con.execute("ALTER TABLE raw.web__events ALTER clicks TYPE BIGINT")

    with pytest.raises(WarehouseError, match=r"raw\.web__events has columns .*clicks BIGINT"):
        ingest_entity(config, "web", "events", Window(DAY, DAY), "run-2", warehouse(config))


def test_progress_is_reported_after_each_committed_day(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    write(tmp_path, DAY, [{"event_id": "a", "clicks": 1}])
    calls: list[tuple[int, int]] = []

    results = ingest_entity(
        config,
        "web",
        "events",
        WINDOW,
        "run-1",
        warehouse(config),
        lambda d, t: calls.append((d, t)),
    )

    assert calls == [(1, 2), (2, 2)]
    assert [r.status for r in results] == ["ok", "missing"]
    assert rows(
        config,
        "SELECT count(*) FROM meta.loads WHERE rows_read <> rows_loaded + rows_quarantined",
    ) == [(0,)]


def test_single_threaded_work_restores_the_thread_count_even_when_it_fails() -> None:
    with duckdb.connect() as con:
        con.execute("SET threads = 3")
        with pytest.raises(duckdb.CatalogException), single_threaded(con):
            assert con.execute("SELECT current_setting('threads')").fetchone() == (1,)
            con.execute("SELECT * FROM no_such_table")
        assert con.execute("SELECT current_setting('threads')").fetchone() == (3,)
