"""File drops: one file per day (CSV or Parquet) with a manifest, atomic, deterministic; a changed
record rewrites only its day's file; a failed write keeps the previous file."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from fabric.config import CsvDropPublisher, FabricConfig
from fabric.errors import QualityGateClosed
from fabric.partitions import Window
from fabric.publish import publish
from fabric.publish.targets.files import FILE_COLUMNS, write_atomically
from fabric.scoring.score import Gate, score_window
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
    publish(config, warehouse, "score_files", WINDOW, run_id, gate)


def _names(day: date, ext: str = "csv") -> list[str]:
    return [f"churn_scores_{day}.{ext}", f"churn_scores_{day}.manifest.json"]


def test_one_file_per_day_with_manifest_deterministic_and_no_temp_files(scored: FabricConfig) -> None:
    _publish(scored, "run-1")
    directory = _directory(scored)
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(n for d in WINDOW for n in _names(d))
    first = {name: (directory / name).read_bytes() for name in names}

    with (directory / f"churn_scores_{END}.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(FILE_COLUMNS)
    assert len(rows) == CUSTOMERS and {r["partition_date"] for r in rows} == {END.isoformat()}
    ids = [int(r["crm_customer_id"]) for r in rows]
    assert ids == sorted(ids)
    manifest = json.loads((directory / f"churn_scores_{END}.manifest.json").read_text())
    assert manifest["rows"] == CUSTOMERS and manifest["file"] == f"churn_scores_{END}.csv"
    assert manifest["sha256"] == hashlib.sha256(first[f"churn_scores_{END}.csv"]).hexdigest()
    assert manifest["message_ids"] == [r["message_id"] for r in rows]

    _publish(scored, "run-2")  # nothing changed: nothing rewritten
    assert sorted(p.name for p in directory.iterdir()) == names
    assert {name: (directory / name).read_bytes() for name in names} == first


def test_a_changed_record_rewrites_only_its_day(scored: FabricConfig) -> None:
    _publish(scored, "run-1")
    directory = _directory(scored)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    with warehouse.connect() as con:
        crm_id = con.execute(
            "SELECT min(crm_customer_id) FROM scores.churn_scores WHERE partition_date = ?", [END]
        ).fetchone()[0]
        con.execute(
            "UPDATE scores.churn_scores_rows SET score = 0.123 "
            "WHERE partition_date = ? AND crm_customer_id = ?",
            [END, crm_id],
        )
    _publish(scored, "run-2")
    after = {p.name: p.read_bytes() for p in directory.iterdir()}
    start = WINDOW.start
    assert [after[n] for n in _names(start)] == [before[n] for n in _names(start)]
    with (directory / f"churn_scores_{END}.csv").open(newline="") as handle:
        rows = {int(r["crm_customer_id"]): r for r in csv.DictReader(handle)}
    assert len(rows) == CUSTOMERS and float(rows[crm_id]["score"]) == pytest.approx(0.123)


def test_parquet_drop(scored: FabricConfig, tmp_path: Path) -> None:
    parquet = CsvDropPublisher(kind="parquet_drop", directory=tmp_path / "parquet")
    config = scored.model_copy(update={"publishers": {"score_files": parquet}})
    _publish(config, "run-1")
    names = sorted(p.name for p in (tmp_path / "parquet").iterdir())
    assert names == sorted(n for d in WINDOW for n in _names(d, "parquet"))
    table = pq.read_table(tmp_path / "parquet" / f"churn_scores_{END}.parquet")
    assert table.num_rows == CUSTOMERS and table.column_names == list(FILE_COLUMNS)


def test_closed_gate_writes_no_file_for_that_day(scored: FabricConfig) -> None:
    def gate(_con: duckdb.DuckDBPyConnection, day: date) -> None:
        if day == WINDOW.start:
            raise QualityGateClosed("closed")

    _publish(scored, "run-gated", gate)
    assert sorted(p.name for p in _directory(scored).iterdir()) == sorted(_names(END))


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "drop" / "file.csv"
    write_atomically(target, lambda handle: handle.write(b"old"))

    def broken(handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise ValueError("the batch broke while writing")

    with pytest.raises(ValueError, match="broke"):
        write_atomically(target, broken)
    assert [p.name for p in target.parent.iterdir()] == ["file.csv"]  # no temporary file left
    assert target.read_bytes() == b"old"
