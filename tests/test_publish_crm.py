"""CRM write-back: one row per customer, idempotent, newest partition wins, gate per day."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from fabric.config import FabricConfig, SqlitePublisher
from fabric.errors import ConfigError, PublishError, QualityGateClosed
from fabric.partitions import Window
from fabric.publish import PublishResult, publish_crm
from fabric.scoring.score import Gate, score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse

END = date(2026, 3, 31)
WINDOW = Window(END - timedelta(days=2), END)
CUSTOMERS = 400


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def _crm_path(config: FabricConfig) -> Path:
    publisher = config.publishers["crm"]
    assert isinstance(publisher, SqlitePublisher)
    return config.resolve(publisher.path)


def _crm_rows(config: FabricConfig) -> list[tuple]:
    with sqlite3.connect(_crm_path(config)) as con:
        return con.execute("SELECT * FROM crm_scores ORDER BY crm_id").fetchall()


@pytest.fixture
def scored(config: FabricConfig) -> FabricConfig:
    """Rule scores for three days and an existing CRM database without a scores table."""
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    write_synthetic_estate(warehouse, CUSTOMERS, WINDOW.start, WINDOW.end, seed=5)
    score_window(config, warehouse, WINDOW, "run-score", _open)
    crm = _crm_path(config)
    crm.parent.mkdir(parents=True)
    with sqlite3.connect(crm) as con:
        con.execute("CREATE TABLE customers (crm_id INTEGER PRIMARY KEY, first_name TEXT)")
    return config


def _publish(
    config: FabricConfig, window: Window, run_id: str, gate: Gate = _open
) -> PublishResult:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    return publish_crm(config, warehouse, "crm", window, run_id, gate)


def test_publish_twice_leaves_one_identical_row_per_customer(scored: FabricConfig) -> None:
    first = _publish(scored, WINDOW, "run-pub-1")
    assert first.published == {day: CUSTOMERS for day in WINDOW}
    rows = _crm_rows(scored)
    assert len(rows) == CUSTOMERS == len({r[0] for r in rows})
    assert {r[5] for r in rows} == {END.isoformat()}  # scored_for: the newest day won
    _, score, decision, model, version, _, lineage, published_at = rows[0]
    assert (model, version) == ("rules", 0) and decision == int(score >= 0.5)
    assert len(lineage) == 36 and published_at.endswith("+00:00")

    second = _publish(scored, WINDOW, "run-pub-2")
    assert _crm_rows(scored) == rows  # published_at included: nothing changed, nothing written
    assert second.published == first.published
    assert "0 inserted or updated" in second.entries[-1].message

    path = str(scored.resolve(scored.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        log = con.execute(
            'SELECT run_id, target, "partition", rows, status FROM publish.sync_log '
            'ORDER BY run_id, "partition"'
        ).fetchall()
        runs = con.execute(
            "SELECT step, status FROM meta.runs WHERE step LIKE 'publish%'"
        ).fetchall()
    assert log == [
        (run, "crm", day, CUSTOMERS, "ok") for run in ("run-pub-1", "run-pub-2") for day in WINDOW
    ]
    assert runs == [("publish:crm", "ok"), ("publish:crm", "ok")]


def test_an_older_partition_never_overwrites_a_newer_score(scored: FabricConfig) -> None:
    _publish(scored, Window(END, END), "run-newest")
    newest = _crm_rows(scored)
    result = _publish(scored, Window(WINDOW.start, WINDOW.start), "run-backfill")
    assert _crm_rows(scored) == newest
    assert f"0 inserted or updated, {CUSTOMERS} unchanged" in result.entries[0].message

    # a re-score of the newest day (new run, new lineage ids) does update
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    score_window(scored, warehouse, Window(END, END), "run-rescore", _open)
    _publish(scored, Window(END, END), "run-republish")
    updated = _crm_rows(scored)
    assert [r[:6] for r in updated] == [r[:6] for r in newest]
    assert all(u[6] != n[6] for u, n in zip(updated, newest, strict=True))


def test_closed_gate_publishes_nothing_for_that_day(scored: FabricConfig) -> None:
    def gate(_con: duckdb.DuckDBPyConnection, day: date) -> None:
        if day == END:
            raise QualityGateClosed(f"quality gate closed for partition {day}")

    result = _publish(scored, WINDOW, "run-gated", gate)
    assert set(result.blocked) == {END} and set(result.published) == set(WINDOW) - {END}
    assert {r[5] for r in _crm_rows(scored)} == {(END - timedelta(days=1)).isoformat()}
    path = str(scored.resolve(scored.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        blocked = con.execute(
            'SELECT rows, status FROM publish.sync_log WHERE "partition" = ?', [END]
        ).fetchall()
        run = con.execute("SELECT status FROM meta.runs WHERE run_id = 'run-gated'").fetchone()
    assert blocked == [(0, "blocked")] and run == ("warning",)


def test_missing_crm_database_is_refused_and_logged(scored: FabricConfig) -> None:
    _crm_path(scored).unlink()
    with pytest.raises(PublishError, match="CRM database not found"):
        _publish(scored, WINDOW, "run-no-crm")
    assert not _crm_path(scored).exists()
    path = str(scored.resolve(scored.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        log = con.execute("SELECT status FROM publish.sync_log").fetchall()
        run = con.execute("SELECT status FROM meta.runs WHERE run_id = 'run-no-crm'").fetchone()
    assert log == [("failed",)] and run == ("failed",)


def test_publisher_of_the_wrong_kind_is_a_config_error(scored: FabricConfig) -> None:
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    with pytest.raises(ConfigError, match=r"publishers\.score_files is of kind 'csv_drop'"):
        publish_crm(scored, warehouse, "score_files", WINDOW, "run-x", _open)
    with pytest.raises(ConfigError, match=r"publishers\.nope is not defined"):
        publish_crm(scored, warehouse, "nope", WINDOW, "run-x", _open)
