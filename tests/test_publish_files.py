"""CSV file drop: one file per day, atomic replace, deterministic bytes, gate per day."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from fabric.config import CsvDropPublisher, FabricConfig
from fabric.errors import QualityGateClosed
from fabric.partitions import Window
from fabric.publish import publish_files
from fabric.publish.files import CSV_COLUMNS, drop_file
from fabric.scoring.score import Gate, read_scores, score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse

END = date(2026, 3, 31)
WINDOW = Window(END - timedelta(days=1), END)
CUSTOMERS = 300


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def _directory(config: FabricConfig) -> Path:
    publisher = config.publishers["score_files"]
    assert isinstance(publisher, CsvDropPublisher)
    return config.resolve(publisher.directory)


@pytest.fixture
def scored(config: FabricConfig) -> FabricConfig:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    write_synthetic_estate(warehouse, CUSTOMERS, WINDOW.start, WINDOW.end, seed=9)
    score_window(config, warehouse, WINDOW, "run-score", _open)
    return config


def _publish(config: FabricConfig, run_id: str, gate: Gate = _open) -> None:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    publish_files(config, warehouse, "score_files", WINDOW, run_id, gate)


def test_one_file_per_day_deterministic_and_no_temp_files(scored: FabricConfig) -> None:
    _publish(scored, "run-1")
    directory = _directory(scored)
    names = sorted(p.name for p in directory.iterdir())
    assert names == [f"churn_scores_{d.isoformat()}.csv" for d in WINDOW]
    first = {name: (directory / name).read_bytes() for name in names}

    with (directory / names[-1]).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == CUSTOMERS and {r["partition_date"] for r in rows} == {END.isoformat()}
    ids = [r["fabric_customer_id"] for r in rows]
    assert ids == sorted(ids)

    _publish(scored, "run-2")
    assert sorted(p.name for p in directory.iterdir()) == names  # hidden temp files gone too
    assert {name: (directory / name).read_bytes() for name in names} == first


def test_closed_gate_writes_no_file_for_that_day(scored: FabricConfig) -> None:
    def gate(_con: duckdb.DuckDBPyConnection, day: date) -> None:
        if day == WINDOW.start:
            raise QualityGateClosed("closed")

    _publish(scored, "run-gated", gate)
    assert [p.name for p in _directory(scored).iterdir()] == [f"churn_scores_{END}.csv"]


def test_failed_write_keeps_the_previous_file(scored: FabricConfig, tmp_path: Path) -> None:
    path = str(scored.resolve(scored.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        scores = read_scores(con, END)
    target = tmp_path / "drop"
    drop_file(target, END, scores)
    before = (target / f"churn_scores_{END}.csv").read_bytes()

    with pytest.raises(KeyError):  # a broken batch fails while writing the temporary file
        drop_file(target, END, scores.drop_columns(["lineage_id"]))

    assert [p.name for p in target.iterdir()] == [f"churn_scores_{END}.csv"]
    assert (target / f"churn_scores_{END}.csv").read_bytes() == before
